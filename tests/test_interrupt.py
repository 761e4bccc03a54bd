"""Kill a fit mid-epoch with SIGTERM or Ctrl+C: a resumable `interrupted.ckpt` is written atomically and
resuming from it lands on the very weights of an uninterrupted run (the `_fit` pattern of test_resume.py)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.callbacks.safe_checkpointing import AtomicTorchCheckpointIO, SafeCheckpointing
from seqlit.cli import SeqlitCLI
from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.tasks.classifier import SequenceClassifier
from tests.builders import classifier

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2
BATCHES_PER_EPOCH = 6
SIGNAL_AT_STEP = 8  # inside the second epoch


class _SendSignal(pl.Callback):
    """Sends `signum` to this very process at one global step (before or after that batch's step)."""

    def __init__(self, signum: int, hook: str = "on_train_batch_start") -> None:
        self.signum = signum
        setattr(self, hook, self._maybe_send)

    def _maybe_send(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == SIGNAL_AT_STEP and not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), self.signum)


def _fit(root: Path, extra: list[pl.Callback], ckpt_path: str | None = None, accumulate: int = 1,
         batches: int = BATCHES_PER_EPOCH):
    pl.seed_everything(7)
    datamodule = SequenceClassificationDataModule(loader=LoaderSettings(batch_size=16, sampler_seed=3))
    model = classifier(datamodule.n_features, datamodule.n_classes, datamodule.classes, hidden_size=16, dropout=0.3)
    callbacks = [RNGStateCheckpoint(), SafeCheckpointing(), *extra,
                 ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_last=True)]
    trainer = pl.Trainer(
        max_epochs=EPOCHS, limit_train_batches=batches, accumulate_grad_batches=accumulate, limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=True, gradient_clip_val=1.0, callbacks=callbacks,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory):
    return _fit(tmp_path_factory.mktemp("full"), [])


@pytest.fixture
def restore_sigint():
    # A Ctrl+C-able process, even when the tests run as a background job (`make test &`, nohup): there SIGINT
    # starts ignored and SafeCheckpointing rightly leaves it so. Lightning also ignores SIGINT after a
    # KeyboardInterrupt (it is about to exit); afterwards pytest gets its own handler back.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _assert_resume_matches(root: Path, interrupted: Path, uninterrupted) -> None:
    full_model, full_trainer = uninterrupted
    saved = torch.load(interrupted, weights_only=True)
    assert BATCHES_PER_EPOCH < saved["global_step"] < EPOCHS * BATCHES_PER_EPOCH, "must be mid-epoch"
    model, trainer = _fit(root / "resumed", [], ckpt_path=str(interrupted))
    assert trainer.global_step == full_trainer.global_step
    for (name, resumed), (_, full) in zip(model.state_dict().items(), full_model.state_dict().items()):
        assert torch.equal(resumed, full), f"{name} differs after resume"


def test_sigterm_saves_a_checkpoint_that_resumes_bit_exactly(
    tmp_path: Path, uninterrupted, capsys: pytest.CaptureFixture[str]
) -> None:
    lightning_lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lightning_lines.append(record.getMessage())  # type: ignore[method-assign]
    checkpoint_log = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")
    checkpoint_log.addHandler(handler)
    try:
        with pytest.raises(SIGTERMException):
            _fit(tmp_path, [_SendSignal(signal.SIGTERM)])
    finally:
        checkpoint_log.removeHandler(handler)
    # The interruption save says weights_only itself (Lightning logs "`weights_only` was not set" otherwise).
    assert not [line for line in lightning_lines if "weights_only" in line]
    interrupted = tmp_path / "interrupted.ckpt"
    assert torch.load(interrupted, weights_only=True)["global_step"] == SIGNAL_AT_STEP + 1  # that batch finished
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "interrupted by SIGTERM" in line)
    assert str(interrupted) in line and f"--ckpt_path {interrupted}" in line
    _assert_resume_matches(tmp_path, interrupted, uninterrupted)


def test_ctrl_c_finishes_the_batch_saves_and_exits_1(
    tmp_path: Path, uninterrupted, restore_sigint: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:  # Lightning turns KeyboardInterrupt into sys.exit(1)
        _fit(tmp_path, [_SendSignal(signal.SIGINT)])
    assert exit_info.value.code == 1
    interrupted = tmp_path / "interrupted.ckpt"
    assert torch.load(interrupted, weights_only=True)["global_step"] == SIGNAL_AT_STEP + 1
    assert "interrupted by SIGINT" in capsys.readouterr().err
    _assert_resume_matches(tmp_path, interrupted, uninterrupted)


def test_an_ignored_sigint_stays_ignored(tmp_path: Path) -> None:
    """A background job (`cmd &`, nohup) starts with SIGINT ignored: SafeCheckpointing does not take it over, so
    a Ctrl+C meant for the shell neither stops nor checkpoints the run."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _, trainer = _fit(tmp_path, [_SendSignal(signal.SIGINT)])
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert trainer.global_step == EPOCHS * BATCHES_PER_EPOCH
    assert not (tmp_path / "interrupted.ckpt").exists()


def test_sigterm_after_the_batch_end_check_is_saved_when_lightning_raises(tmp_path: Path, uninterrupted) -> None:
    """Lightning raises SIGTERMException after the batch (and any validation): saved in on_exception."""
    with pytest.raises(SIGTERMException):
        # at the end of the batch that made step SIGNAL_AT_STEP, after SafeCheckpointing looked
        _fit(tmp_path, [_SendSignal(signal.SIGTERM, hook="on_train_batch_end")])
    interrupted = tmp_path / "interrupted.ckpt"
    saved = torch.load(interrupted, weights_only=True)
    assert saved["global_step"] == SIGNAL_AT_STEP
    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]
    assert progress["ready"] == progress["completed"] == SIGNAL_AT_STEP  # a consistent batch boundary
    _assert_resume_matches(tmp_path, interrupted, uninterrupted)


def test_a_signal_inside_an_accumulation_window_waits_for_the_optimizer_step(tmp_path: Path) -> None:
    """Gradients are not in checkpoints: a stop between micro-batches would lose that step's first half."""
    with pytest.raises(SIGTERMException):  # sent at the first of the two micro-batches of step SIGNAL_AT_STEP
        _fit(tmp_path / "interrupted", [_SendSignal(signal.SIGTERM)], accumulate=2, batches=12)
    interrupted = tmp_path / "interrupted" / "interrupted.ckpt"
    saved = torch.load(interrupted, weights_only=True)
    assert saved["global_step"] == SIGNAL_AT_STEP + 1
    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert progress["processed"] % 2 == 0  # saved after the window's second micro-batch
    full_model, _ = _fit(tmp_path / "full", [], accumulate=2, batches=12)
    model, _ = _fit(tmp_path / "resumed", [], ckpt_path=str(interrupted), accumulate=2, batches=12)
    for (name, resumed), (_, full) in zip(model.state_dict().items(), full_model.state_dict().items()):
        assert torch.equal(resumed, full), f"{name} differs after resume"


class _DiesHalfWay:
    """A file whose writes fail once `limit` bytes are written, like a full disk or a kill mid-write."""

    def __init__(self, file: Any, limit: int) -> None:
        self.file, self.limit, self.written = file, limit, 0

    def write(self, data: bytes) -> int:
        room = self.limit - self.written
        if len(data) > room:
            self.file.write(bytes(memoryview(data)[:room]))
            raise OSError(28, "No space left on device")
        self.written += len(data)
        return self.file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def test_a_save_that_dies_half_way_leaves_the_old_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicTorchCheckpointIO()
    last = tmp_path / "last.ckpt"
    good = {"state_dict": {"w": torch.arange(1000.0)}, "global_step": 1}
    io.save_checkpoint(good, last)
    before = last.read_bytes()

    real_dump = AtomicTorchCheckpointIO._dump
    monkeypatch.setattr(AtomicTorchCheckpointIO, "_dump",
                        lambda self, checkpoint, file: real_dump(self, checkpoint, _DiesHalfWay(file, 2000)))
    with pytest.raises((OSError, RuntimeError)):  # torch's zip writer may re-raise the OSError as RuntimeError
        io.save_checkpoint({"state_dict": {"w": torch.zeros(100_000)}, "global_step": 2}, last)

    assert last.read_bytes() == before
    assert torch.equal(torch.load(last, weights_only=True)["state_dict"]["w"], good["state_dict"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "the temporary file must be removed"


def test_atomic_io_replaces_plain_io_only(tmp_path: Path) -> None:
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, callbacks=[SafeCheckpointing()])
    SafeCheckpointing().setup(trainer, SequenceClassifier(2, 2), "fit")
    assert type(trainer.strategy.checkpoint_io) is AtomicTorchCheckpointIO

    class _Custom(TorchCheckpointIO):
        pass

    custom = _Custom()
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, plugins=[custom])
    SafeCheckpointing().setup(trainer, SequenceClassifier(2, 2), "fit")
    assert trainer.strategy.checkpoint_io is custom


def test_every_seqlit_fit_has_safe_checkpointing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = SeqlitCLI(args=["--config", str(REPO / "configs/japanese_vowels_gru.yaml")], run=False)
    safe = [c for c in cli.trainer.callbacks if isinstance(c, SafeCheckpointing)]
    assert len(safe) == 1 and safe[0].filename == "interrupted.ckpt"
    safe[0].setup(cli.trainer, cli.model, "fit")  # what Lightning calls at the start of `fit`
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicTorchCheckpointIO


DDP_SCRIPT = """
import os, signal, sys
import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.callbacks.safe_checkpointing import SafeCheckpointing
from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from tests.builders import classifier

# Ctrl+C as at a terminal, also when the tests run as a background job, where SIGINT starts ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

class CtrlCOnRankOne(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)

pl.seed_everything(7)
datamodule = SequenceClassificationDataModule(loader=LoaderSettings(batch_size=16, sampler_seed=3))
model = classifier(datamodule.n_features, datamodule.n_classes, datamodule.classes, hidden_size=16)
trainer = pl.Trainer(
    accelerator="cpu", devices=2, strategy="ddp", use_distributed_sampler=False, max_epochs=2,
    limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
    enable_model_summary=False, default_root_dir=sys.argv[1],
    callbacks=[RNGStateCheckpoint(), SafeCheckpointing(check_every_n_steps=2), CtrlCOnRankOne(), ModelCheckpoint(dirpath=sys.argv[1])],
)
trainer.fit(model, datamodule=datamodule)
"""


@pytest.mark.ddp
def test_ctrl_c_on_one_ddp_rank_saves_once_and_stops_every_rank(tmp_path: Path) -> None:
    """Ranks agree every `check_every_n_steps` (2 here), so a signal that reached one rank only stops all of them at the same step
    with one checkpoint. (Without SafeCheckpointing rank 1 dies of KeyboardInterrupt and rank 0 crashes inside
    its next collective, gloo's "Connection closed by peer", and nothing is saved.)"""
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT), encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("a DDP rank hung after Ctrl+C reached one rank")
    assert process.returncode == 1, output
    assert output.count("interrupted by SIGINT at global step 4") == 1, output  # rank 0 reports, once
    saved = torch.load(tmp_path / "interrupted.ckpt", weights_only=True)
    assert saved["global_step"] == 4 and len(saved["callbacks"]["RNGStateCheckpoint"]["per_rank"]) == 2
