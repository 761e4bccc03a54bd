"""A run refused while the trainer sets up (a checkpoint of other classes, found only when Lightning restores
it, after the log folder and its config.yaml were written) leaves no new, empty `runs/<name>/version_N/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqlit.cli import SeqlitCLI, main
from seqlit.cli.trainer_setup import remove_set_up_only_folders
from tests.test_bad_inputs import TINY, labelled_frame, snapshot, write_csv


def test_a_run_refused_during_setup_leaves_no_empty_version_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    trained = write_csv(tmp_path / "pq.csv", labelled_frame(labels="pq"))
    SeqlitCLI(args=["fit", *TINY, "--data.init_args.train_path", str(trained), "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--test_after_fit", "false"])
    other = write_csv(tmp_path / "pz.csv", labelled_frame(labels="pz"))
    before = snapshot(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *TINY, "--data.init_args.train_path", str(other), "--ckpt_path", "last"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqlit: error:")]
    assert len(errors) == 1 and "trained with classes ['p', 'q'] but this run has ['p', 'z']" in errors[0], err
    assert "Traceback" not in err
    assert snapshot(tmp_path / "runs") == before  # version_0 untouched, no version_1 with only config.yaml


def test_only_folders_holding_set_up_files_are_removed(tmp_path: Path) -> None:
    empty_run = tmp_path / "a" / "version_1"
    (empty_run / "checkpoints").mkdir(parents=True)
    (empty_run / "config.yaml").write_text("seed_everything: 0\n")
    (empty_run / "events.out.tfevents.1.host.1.0").write_bytes(b"\x00" * 88)
    real_run = tmp_path / "b" / "version_0"
    real_run.mkdir(parents=True)
    (real_run / "config.yaml").write_text("seed_everything: 0\n")
    (real_run / "metrics.csv").write_text("epoch,val/loss\n0,1.5\n")
    remove_set_up_only_folders([empty_run, real_run, tmp_path / "absent"])
    assert not empty_run.exists() and (real_run / "metrics.csv").is_file()
