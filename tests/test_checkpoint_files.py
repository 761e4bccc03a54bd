"""Every subcommand opens `--ckpt_path` files through one function (`read_checkpoint`): an unreadable or
foreign file is one `seqlit: error:` line, exit 2, and nothing is written; stale temporary files of a killed
checkpoint write are removed when the next fit starts in that folder."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from seqlit.callbacks.safe_checkpointing import SafeCheckpointing, remove_stale_temporary_files
from seqlit.cli import main
from seqlit.cli.checkpoints import read_checkpoint
from seqlit.errors import SeqlitError
from tests.test_bad_inputs import QUIET, REPO, snapshot

JV_GRU = str(REPO / "configs/japanese_vowels_gru.yaml")


def _truncated(path: Path) -> None:
    torch.save({"state_dict": {"weight": torch.zeros(4096)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BAD_FILES = {
    "truncated": (_truncated, r"is not a PyTorch checkpoint .*truncated, or another kind of file \(a zip archive cut off"),
    "zero-bytes": (lambda path: path.write_bytes(b""), r"is empty \(0 bytes\)"),
    "text-file": (lambda path: path.write_text("epoch,val/loss\n0,1.5\n"), r"is not a PyTorch checkpoint .*starts with b'epoch,va'"),
    "directory": (lambda path: path.mkdir(), r"is a folder, not a file"),
    "plain-pickle": (lambda path: path.write_bytes(pickle.dumps({"state_dict": {}})), r"a plain pickle, or an old-format torch\.save"),
    "missing": (lambda path: None, r"does not exist"),
    "not-a-lightning-checkpoint": (lambda path: torch.save([1, 2, 3], path), r"not a Lightning checkpoint \(no state_dict\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_an_unreadable_checkpoint_is_one_line(case: str, tmp_path: Path) -> None:
    make, message = BAD_FILES[case]
    path = tmp_path / "model.ckpt"
    make(path)
    with pytest.raises(SeqlitError, match=message) as caught:
        read_checkpoint(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert "Fix: pass a .ckpt file written by seqlit fit" in str(caught.value)


@pytest.mark.parametrize(("case", "subcommand"), [("truncated", "test"), ("zero-bytes", "fit"),
                                                  ("text-file", "predict"), ("directory", "validate"),
                                                  ("plain-pickle", "test"), ("missing", "fit")])
def test_every_subcommand_refuses_an_unreadable_checkpoint_before_writing(
    case: str, subcommand: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "runs" / "japanese_vowels_gru" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text("epoch,val/loss\n0,1.5\n")
    make, message = BAD_FILES[case]
    path = tmp_path / "model.ckpt"
    make(path)
    before = snapshot(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--config", JV_GRU, "--ckpt_path", str(path), *QUIET])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqlit:")]
    assert len(errors) == 1 and errors[0].startswith(f"seqlit: error: the checkpoint {path} "), err
    assert "Traceback" not in err
    assert snapshot(tmp_path / "runs") == before


def test_stale_temporary_checkpoint_files_are_removed_when_a_fit_starts(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = [folder / ".last.ckpt.0123456789ab.tmp", folder / ".interrupted.ckpt.abcdef012345.tmp"]
    kept = [folder / "last.ckpt", folder / "notes.tmp", folder / ".last.ckpt.not-ours.tmp", folder / "x.ckpt.0123456789ab.tmp"]
    for path in stale + kept:
        path.write_bytes(b"bytes")
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    (resumed / ".last.ckpt.fedcba987654.tmp").write_bytes(b"half a checkpoint")
    callback = SafeCheckpointing()
    trainer = SimpleNamespace(checkpoint_callbacks=[SimpleNamespace(dirpath=str(folder))],
                              checkpoint_callback=SimpleNamespace(dirpath=str(folder)), default_root_dir=str(tmp_path),
                              ckpt_path=str(resumed / "last.ckpt"), is_global_zero=True)
    callback._remove_stale_temporaries(trainer)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in kept)
    assert list(resumed.iterdir()) == []
    assert remove_stale_temporary_files(tmp_path / "absent") == []
