"""`seqlit init`: a data file in, a config that trains on it out; problems are one `seqlit: error:` line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from seqlit.cli import main
from seqlit.cli.init import inspect_classification


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _write(path: Path, rows: list[tuple]) -> Path:
    pd.DataFrame(rows, columns=["recording", "t", "x", "y", "activity"]).sample(frac=1, random_state=0).to_csv(
        path, index=False)
    return path


def _restarting(path: Path) -> Path:
    """6 recordings, 2 classes, time restarting at 0 in each."""
    return _write(path, [(f"r{i}", step, float(step), float(i + step % 2), "walk" if i % 2 else "run")
                         for i in range(6) for step in range(3 + i)])


def test_init_finds_the_columns_and_writes_a_config_that_parses(capsys: pytest.CaptureFixture[str]) -> None:
    _restarting(Path("walks.csv"))
    main(["init", "--data", "walks.csv", "--task", "classify"])
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "seqlit: wrote walks.yaml: 6 sequences (recording), 2 classes (run 3, walk 3), 2 features, lengths 3-8 steps; "
        "time restarts in every sequence.",
        "seqlit: train with `seqlit fit --config walks.yaml`",
    ]
    config = yaml.safe_load(Path("walks.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "seqlit.tasks.SequenceClassifier"
    assert config["data"]["init_args"] == {
        "dataset": "long_format", "train_path": "walks.csv", "entity_column": "recording", "time_column": "t",
        "label_column": "activity", "feature_columns": ["x", "y"], "split": "stratified",
    }
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "walks.yaml", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "seqlit.tasks.SequenceClassifier"
    assert printed["data"]["init_args"]["feature_columns"] == ["x", "y"]


def test_sequences_on_one_time_axis_get_a_chronological_split(tmp_path: Path) -> None:
    path = _write(tmp_path / "shared.csv", [(f"r{i}", 10 * i + step, 1.0, 2.0, "ab"[i % 2])
                                            for i in range(6) for step in range(4)])
    summary = inspect_classification(path)
    assert not summary.time_restarts and summary.split == "chronological"


@pytest.mark.parametrize(("arguments", "message"), [
    (["--task", "classify"], "init: the following arguments are required: --data"),
    (["--data", "walks.csv", "--task", "regress"], "init: argument --task: invalid choice: 'regress'"),
    (["--data", "walks.csv", "--task", "classify", "--label_column", "kind"],
     "walks.csv: no column 'kind' (--label_column); the file has ['recording', 't', 'x', 'y', 'activity']."),
    (["--data", "missing.csv", "--task", "classify"], "data file not found: missing.csv"),
])
def test_init_problems_are_one_line(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    _restarting(Path("walks.csv"))
    with pytest.raises(SystemExit) as exit_info:
        main(["init", *arguments])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlit: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_init_without_a_recognisable_label_or_with_an_existing_config_says_what_to_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = pd.read_csv(_restarting(Path("walks.csv"))).rename(columns={"activity": "kind"})
    frame.assign(site=frame["recording"].str.upper()).to_csv("kinds.csv", index=False)  # two text columns
    with pytest.raises(SystemExit):
        main(["init", "--data", "kinds.csv", "--task", "classify"])
    assert "could not tell which column is the label" in capsys.readouterr().err
    main(["init", "--data", "kinds.csv", "--task", "classify", "--label_column", "kind", "--out", "k.yaml"])
    with pytest.raises(SystemExit):
        main(["init", "--data", "kinds.csv", "--task", "classify", "--label_column", "kind", "--out", "k.yaml"])
    assert "k.yaml exists; pass --out with another name, or --force" in capsys.readouterr().err


def test_init_for_forecasting_writes_a_config_that_trains(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [(f"store{i}", step, 10.0 + i + step * 0.5 + (step % 4), 1.0 + (step % 3)) for i in range(4)
            for step in range(40)]
    pd.DataFrame(rows, columns=["store", "week", "sales", "price"]).sample(frac=1, random_state=0).to_csv(
        "panel.csv", index=False)
    with pytest.raises(SystemExit):
        main(["init", "--data", "panel.csv", "--task", "forecast"])
    assert "--task forecast needs --horizon N" in capsys.readouterr().err
    main(["init", "--data", "panel.csv", "--task", "forecast", "--horizon", "3", "--id_column", "store"])
    assert capsys.readouterr().out.splitlines()[0] == (
        "seqlit: wrote panel.yaml: 4 series (store), target 'sales', covariates: price, lengths 40-40 steps, horizon 3.")
    config = yaml.safe_load(Path("panel.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "seqlit.tasks.Forecaster"
    assert config["data"]["init_args"] == {
        "dataset": "long_format", "path": "panel.csv", "entity_column": "store", "time_column": "week",
        "target_column": "sales", "covariate_columns": ["price"], "horizon": 3, "split": "chronological",
    }
    main(["fit", "--config", "panel.yaml", "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"])
    assert "test/mase" in capsys.readouterr().out
