"""`seqlit audit`: every bundled config's splits summarised and passed without training; a planted leak fails
with one error line and exit code 1."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest

from seqlit.cli import main
from seqlit.tasks.classifier import SequenceClassifier
from tests.data.datamodules.test_classification import _series_csv
from tests.recipe_data import own_file_arguments

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))
JV_GRU = REPO / "configs/japanese_vowels_gru.yaml"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The audit must not train or run the model: make both impossible.
    monkeypatch.setattr(pl.Trainer, "fit", lambda *args, **kwargs: pytest.fail("audit called Trainer.fit"))
    monkeypatch.setattr(SequenceClassifier, "forward", lambda *args, **kwargs: pytest.fail("audit ran the model"))


def _audit(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `seqlit audit <arguments>`."""
    try:
        main(["audit", *arguments])
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("config", RECIPES, ids=lambda p: p.name)
def test_every_config_passes_its_audit_with_a_summary(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _audit(["--config", str(config), *own_file_arguments(config, Path.cwd())], capsys)
    assert code == 0, err
    assert out.rstrip().splitlines()[-1].startswith("audit: passed")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip().split()[:1] in
            (["train"], ["val"], ["test"])}
    assert set(rows) == {"train", "val", "test"} and all(int(cells[0].replace(",", "")) > 0 for cells in rows.values())
    assert "padding" in out
    if "g2p" in config.name:  # split by headword: no headword may be on two sides
        assert "train & val 0, train & test 0, val & test 0 (must be 0" in out
    if "m1_yearly" in config.name:  # forecasting: the window origins per split
        assert "origins" in out and "(allowed: every series is split in time)" in out
    if "lm_" in config.name:
        assert "character span" in out and "none: batches are fixed-length chunks" in out
    if "japanese_vowels" in config.name:
        assert "random batching would give" in out


def _long_format(tmp_path: Path, *extra: str) -> list[str]:
    train = _series_csv(tmp_path / "train.csv", n_entities=8)
    return ["--config", str(JV_GRU), "--data.init_args.dataset", "long_format", "--data.init_args.train_path",
            str(train), "--data.init_args.sequence_column", "seq", *extra]


def test_entity_split_shows_times_and_zero_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _audit(_long_format(tmp_path, "--data.init_args.split", "entity",
                                       "--data.init_args.val_fraction", "0.2"), capsys)
    assert code == 0
    assert "time span" in out and "train & val 0, train & test 0, val & test 0 (must be 0: entity split)" in out


def test_a_planted_entity_leak_fails_with_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = _long_format(tmp_path, "--data.init_args.split", "entity")
    # A "held-out" test file that is really two training entities: the tampered split of a careless pipeline.
    frame = pd.read_csv(tmp_path / "train.csv")
    frame[frame["entity"].isin(["e0", "e1"])].to_csv(tmp_path / "test.csv", index=False)
    code, out, err = _audit([*arguments, "--data.init_args.test_path", str(tmp_path / "test.csv")], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("seqlit: error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "entity leakage" in errors[0] and "'e0' (train, test)" in errors[0] and "Fix:" in errors[0]
    assert "audit: passed" not in out


def test_time_travelling_test_file_fails_the_chronological_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = _long_format(tmp_path, "--data.init_args.split", "chronological")
    frame = pd.read_csv(tmp_path / "train.csv")
    frame[frame["entity"] == "e3"].to_csv(tmp_path / "test.csv", index=False)  # the past, posing as the test
    code, _, err = _audit([*arguments, "--data.init_args.test_path", str(tmp_path / "test.csv")], capsys)
    assert code == 1
    assert err.count("seqlit: error:") == 1 and "chronological leakage" in err and "entity 'e3'" in err


def test_bad_data_is_one_error_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _audit(["--config", str(JV_GRU), "--data.init_args.dataset", "long_format",
                           "--data.init_args.train_path", str(tmp_path / "missing.csv")], capsys)
    assert code == 1
    assert err.count("seqlit: error:") == 1 and "missing.csv" in err and "Traceback" not in err
