"""`--ckpt_path last` resolves within the config's own experiment (`runs/<name>/version_*/checkpoints/`): a newer
checkpoint of another experiment in the same `runs/` is never picked, and no own checkpoint is one error line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqlit.cli import main
from tests.test_bad_inputs import QUIET, REPO, snapshot

JV_GRU = str(REPO / "configs/japanese_vowels_gru.yaml")


def _checkpoint(root: Path, name: str, content: bytes, mtime: float) -> Path:
    path = root / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    os.utime(path, (mtime, mtime))
    return path


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("seqlit: error:")]


def test_last_never_picks_a_newer_checkpoint_of_another_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    own = _checkpoint(tmp_path, "japanese_vowels_gru", b"not a checkpoint", mtime=1_000_000)
    _checkpoint(tmp_path, "japanese_vowels_lstm", b"the newer run of another name", mtime=2_000_000)
    before = snapshot(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", JV_GRU, "--ckpt_path", "last", *QUIET])
    err = capsys.readouterr().err
    chosen = [line for line in err.splitlines() if line.startswith("seqlit: --ckpt_path last -> ")]
    assert chosen == [f"seqlit: --ckpt_path last -> {own.relative_to(tmp_path)}"], err
    assert exit_info.value.code == 2 and len(_errors(err)) == 1  # our placeholder bytes are not a checkpoint
    assert "japanese_vowels_lstm" not in err and "Traceback" not in err
    assert snapshot(tmp_path / "runs") == before


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_last_without_a_checkpoint_of_this_experiment_is_one_error_line(
    subcommand: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _checkpoint(tmp_path, "japanese_vowels_lstm", b"another experiment's weights", mtime=2_000_000)
    before = snapshot(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--config", JV_GRU, "--ckpt_path", "last", *QUIET])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert _errors(err) == [
        "seqlit: error: --ckpt_path last: no checkpoint (last*.ckpt, interrupted.ckpt, rolling.ckpt) in "
        "runs/japanese_vowels_gru/*/checkpoints. Fix: train this config first (seqlit fit), give the --run_name "
        "of the run to continue, or pass --ckpt_path <file>."
    ], err
    assert "Traceback" not in err
    assert snapshot(tmp_path / "runs") == before  # no new (empty) version folder either
