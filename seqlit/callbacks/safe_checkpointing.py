"""Checkpoints that survive being killed: atomic writes, and a resumable checkpoint when a fit is
interrupted with SIGTERM (schedulers, `kill`) or SIGINT (Ctrl+C)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import IO, Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

# Agreed across ranks with one MAX all-reduce, so SIGTERM wins over SIGINT.
_NO_REQUEST, _SIGINT, _SIGTERM = 0, 1, 2
_SIGNAL_NAMES = {_SIGINT: "SIGINT", _SIGTERM: "SIGTERM"}
# AtomicTorchCheckpointIO's temporary files: `.last.ckpt.0123456789ab.tmp`.
_TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


class SafeCheckpointing(Callback):
    """Makes every checkpoint write atomic and turns SIGTERM / Ctrl+C into a resumable `interrupted.ckpt`.

    Atomic writes: Lightning's `TorchCheckpointIO` saves through fsspec, which (fsspec 2026.9) writes
    into a temporary file in the *system* temp directory and moves it over the target: a rename only
    when that directory is on the same file system (otherwise a copy straight into the target), and
    with no fsync, so a crash can still leave a truncated `last.ckpt`. In `setup` the strategy's plain
    `TorchCheckpointIO` is replaced by `AtomicTorchCheckpointIO` (temporary file in the target's own
    directory, flush + fsync, `os.replace`, fsync of the directory): every checkpoint on disk is then
    either the previous complete file or the new complete file. A user's own CheckpointIO is kept.

    Interruptions: the checkpoint must hold a consistent state to resume bit-exactly, so it is
    written at the end of a training batch that stepped the optimizer (gradients of a half-accumulated
    step are not checkpointed), the point where ModelCheckpoint's mid-epoch saves are made (with
    `RNGStateCheckpoint` and the resumable samplers they resume exactly). Lightning notes
    SIGTERM in `trainer.received_sigterm`; Ctrl+C is caught by a handler installed for the fit
    (main thread only, and only over Python's default handler) that asks for the same stop instead of
    raising KeyboardInterrupt in the middle of a step; a second Ctrl+C stops at once without saving.
    At the next training batch end `<checkpoint dir>/interrupted.ckpt` is saved (the first
    ModelCheckpoint's directory, else `default_root_dir/checkpoints`), one line gives the path and the
    resume command, and the fit ends with `SIGTERMException` or KeyboardInterrupt (Lightning exits 1).
    Inside an accumulation window Lightning would stop after the current micro-batch; its SIGTERM flag
    is held back until the window's optimizer step instead.

    DDP: `Trainer.save_checkpoint` is collective (RNGStateCheckpoint gathers every rank's generator
    states; then a barrier) and a signal may reach one rank only, or the ranks at different steps. So
    the ranks agree (one MAX all-reduce of a one-element tensor, read on the host) every
    `check_every_n_steps` optimizer steps (default: the trainer's `log_every_n_steps`), all at the same
    global step, and all save and stop there; rank 0 writes. Between two agreements a rank holds a signal
    it received (Lightning would otherwise stop that rank alone), so a stop comes at most that many steps
    after the signal, and the training loop has no per-step synchronisation. A single process needs no
    agreement and acts at the next batch end. An interruption Lightning raises elsewhere (e.g.
    SIGTERM arriving during validation raises on the receiving rank only) is saved in `on_exception`
    with a single process only: under DDP the other ranks may be inside another collective, and a
    collective save would hang, so the line then points to the last regular checkpoint instead.

    Args:
        filename: name of the interruption checkpoint inside the checkpoint directory.
        atomic_writes: install `AtomicTorchCheckpointIO` in `setup`.
        save_on_interrupt: save `filename` on SIGTERM / Ctrl+C during `fit`.
        check_every_n_steps: under DDP, how often (optimizer steps) the ranks agree on a stop; None: the
            trainer's `log_every_n_steps`.
    """

    def __init__(self, filename: str = "interrupted.ckpt", atomic_writes: bool = True,
                 save_on_interrupt: bool = True, check_every_n_steps: int | None = None) -> None:
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name such as 'interrupted.ckpt', got {filename!r}")
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1 or null, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self.filename = filename
        self.atomic_writes = atomic_writes
        self.save_on_interrupt = save_on_interrupt
        self.saved_path: Path | None = None
        self._sigint_requests = 0
        self._previous_sigint: Any = None
        self._handler_installed = False
        self._step_at_batch_start = 0
        self._inside_accumulation = False  # the last finished batch did not step the optimizer
        self._sigterm_deferred = False

    # ---- atomic writes ---------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.atomic_writes:
            install_atomic_checkpoint_io(trainer.strategy)

    # ---- interruptions ---------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._remove_stale_temporaries(trainer)
        self.saved_path = None
        self._sigint_requests = 0
        self._sigterm_deferred = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not in on_fit_start: Lightning snapshots all signal handlers after that hook and restores the
        # snapshot in its teardown, which would reinstate this handler after the fit.
        if self.save_on_interrupt:
            self._install_sigint_handler()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint_handler()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Gradients are not checkpointed: inside an accumulation window the stop waits for the optimizer step.
        # Every rank runs the same windows, so all of them skip the agreement below on the same batches.
        self._inside_accumulation = trainer.global_step == self._step_at_batch_start and (
            trainer.accumulate_grad_batches > 1
        )
        if not self.save_on_interrupt:
            return
        if self._inside_accumulation or not self._agreement_step(trainer):
            if trainer.received_sigterm:
                self._defer_sigterm(trainer)
            return
        request = _agree_across_ranks(self._local_request(trainer), trainer)
        if request == _NO_REQUEST:
            return
        self._save(trainer, _SIGNAL_NAMES[request])
        if request == _SIGTERM:
            raise SIGTERMException()
        raise KeyboardInterrupt()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            if self.save_on_interrupt and isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
                self._save_after_exception(trainer, exception)
        finally:
            # After a KeyboardInterrupt Lightning ignores SIGINT on purpose until it exits; keep that.
            self._restore_sigint_handler(restore=not isinstance(exception, KeyboardInterrupt))

    def checkpoint_path(self, trainer: pl.Trainer) -> Path:
        """`<first ModelCheckpoint's dirpath>/<filename>`, else `<default_root_dir>/checkpoints/<filename>`."""
        directory = getattr(trainer.checkpoint_callback, "dirpath", None)
        if not directory:
            directory = Path(trainer.default_root_dir) / "checkpoints"
        return Path(directory) / self.filename

    # ---- helpers ---------------------------------------------------------------------------------
    def _remove_stale_temporaries(self, trainer: pl.Trainer) -> None:
        """Temporary files a SIGKILL left mid-write in this run's checkpoint folders (and the resumed
        checkpoint's): only our own `.<name>.ckpt.<12 hex>.tmp` names are removed, with one line."""
        folders = {Path(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)}
        folders.add(self.checkpoint_path(trainer).parent)
        if trainer.ckpt_path and "://" not in str(trainer.ckpt_path):
            folders.add(Path(trainer.ckpt_path).parent)
        removed = [path for folder in sorted(folders) for path in remove_stale_temporary_files(folder)]
        if removed:
            _announce(f"removed {len(removed)} temporary checkpoint file(s) left by an interrupted write: "
                      f"{', '.join(str(p) for p in removed[:3])}{' ...' if len(removed) > 3 else ''}")

    def _agreement_step(self, trainer: pl.Trainer) -> bool:
        """Whether the ranks agree on a stop at this batch end: always on one process (no collective at all),
        else every `check_every_n_steps` global steps, which every rank reaches together."""
        if trainer.world_size <= 1:
            return True
        interval = self.check_every_n_steps or max(trainer.log_every_n_steps, 1)
        return trainer.global_step % interval == 0

    def _local_request(self, trainer: pl.Trainer) -> int:
        if trainer.received_sigterm or self._sigterm_deferred:
            return _SIGTERM
        return _SIGINT if self._sigint_requests else _NO_REQUEST

    def _defer_sigterm(self, trainer: pl.Trainer) -> None:
        """Holds Lightning's SIGTERM stop until the accumulation window's optimizer step.

        Lightning raises SIGTERMException after any batch once `received_sigterm` is set, accumulation or
        not; its signal connector has no public way to postpone that, so the flag is moved here.
        """
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "received_sigterm"):
            connector.received_sigterm = False
            self._sigterm_deferred = True

    def _save(self, trainer: pl.Trainer, reason: str) -> None:
        path = self.checkpoint_path(trainer)
        # every rank: collective; the strategy lets rank 0 write. The full state, to resume from (said explicitly:
        # Lightning logs a line when weights_only is left unset)
        trainer.save_checkpoint(path, weights_only=False)
        self.saved_path = path
        _announce(
            f"interrupted by {reason} at global step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"saved {path}; resume with: {_resume_command(path)}"
        )

    def _save_after_exception(self, trainer: pl.Trainer, exception: BaseException) -> None:
        """An interruption that did not pass through a training batch end (see the class docstring)."""
        if self.saved_path is not None:
            return  # saved at the batch end that raised it
        if trainer.state.fn != TrainerFn.FITTING or trainer.lightning_module is None:
            return
        reason = "SIGTERM" if isinstance(exception, SIGTERMException) else "SIGINT"
        progress = trainer.fit_loop.epoch_loop.batch_progress.total
        last = trainer.checkpoint_callback
        fallback = getattr(last, "last_model_path", "") or getattr(last, "best_model_path", "") or "none yet"
        if isinstance(exception, KeyboardInterrupt) and self._sigint_requests > 1:
            why = "stopped at once by a second Ctrl+C"
        elif progress.ready == 0:
            why = "no training step had run yet"
        elif progress.ready != progress.completed:
            why = "the interruption landed inside a training step (its state is not consistent)"
        elif self._inside_accumulation:
            why = "the interruption landed inside a gradient-accumulation window (gradients are not checkpointed)"
        elif trainer.world_size > 1:
            why = "under DDP a save outside a training batch end could hang the other ranks"
        else:
            self._save(trainer, reason)
            return
        _announce(f"interrupted by {reason}; {why}, so no {self.filename} was written; the last regular "
                  f"checkpoint is intact: {fallback}")

    def _install_sigint_handler(self) -> None:
        if self._handler_installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return  # SIGINT ignored (e.g. a background job) or handled by someone else: leave it alone
        self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        self._handler_installed = True

    def _restore_sigint_handler(self, restore: bool = True) -> None:
        if not self._handler_installed:
            return
        self._handler_installed = False
        mine = signal.getsignal(signal.SIGINT) == self._on_sigint
        if restore and mine and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._sigint_requests += 1
        if self._sigint_requests > 1:
            raise KeyboardInterrupt()
        _announce(f"Ctrl+C: finishing the current training batch, then saving {self.filename} "
                  "(press Ctrl+C again to stop at once without saving)")


class AtomicTorchCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic and durable.

    The checkpoint is serialised into a hidden temporary file next to the target
    (`.<name>.<random>.tmp`, same directory, hence the same file system), flushed and fsynced, moved
    over the target with `os.replace` (atomic on POSIX and Windows), and the directory is fsynced so
    the rename itself survives a power cut. A failed or interrupted save removes its temporary file
    and leaves the previous checkpoint untouched; only a SIGKILL mid-write can leave a `.tmp` behind,
    which never matches `*.ckpt`, and `SafeCheckpointing` removes it when the next fit starts in that
    folder. Remote paths (s3://, gs://, ...) keep Lightning's fsspec path.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        # O_EXCL: never write into someone else's file; 0o666 lets the umask decide, like open().
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(descriptor, "wb") as file:
                self._dump(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)

    def _dump(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        """Serialises into the open temporary file (streamed: no second in-memory copy of the checkpoint)."""
        torch.save(checkpoint, file)


def remove_stale_temporary_files(folder: Path) -> list[Path]:
    """Removes `AtomicTorchCheckpointIO`'s temporary files (`.<name>.ckpt.<12 hex>.tmp`) from `folder`: one that
    exists when a run starts was left by a write killed outright (SIGKILL, power cut). Other files are kept."""
    if not folder.is_dir():
        return []
    stale = [path for path in sorted(folder.iterdir()) if _TEMPORARY_NAME.fullmatch(path.name) and path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def install_atomic_checkpoint_io(strategy: Any) -> bool:
    """Swaps a plain `TorchCheckpointIO` (also inside a wrapper such as AsyncCheckpointIO) for the atomic
    one; returns whether it did. Subclasses and other IO plugins are the user's choice and are kept."""
    current = strategy.checkpoint_io  # Lightning creates its default TorchCheckpointIO on first access
    holder, plugin = (current, current.checkpoint_io) if isinstance(current, _WrappingCheckpointIO) else (None, current)
    if isinstance(plugin, AtomicTorchCheckpointIO):
        return False
    if type(plugin) is not TorchCheckpointIO:
        rank_zero_info(f"SafeCheckpointing: keeping the configured {type(plugin).__name__}; checkpoint writes are "
                       "atomic only if it makes them so.")
        return False
    if holder is None:
        strategy.checkpoint_io = AtomicTorchCheckpointIO()
    else:
        holder._checkpoint_io = AtomicTorchCheckpointIO()  # the wrapper's setter refuses to replace a configured IO
    return True


def _agree_across_ranks(request: int, trainer: pl.Trainer) -> int:
    """The strongest request of any rank, identical on every rank; the local one without a process group."""
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return request
    flag = torch.tensor([request], dtype=torch.int32, device=trainer.strategy.root_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in `directory` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(descriptor)


def _resume_command(path: Path) -> str:
    """This `seqlit fit` command with `--ckpt_path <path>` (replacing one already given)."""
    argv = list(sys.argv)
    if Path(argv[0]).name != "seqlit" or argv[1:2] != ["fit"]:
        return f"the same fit command with --ckpt_path {shlex.quote(str(path))}"
    kept: list[str] = []
    skip_next = False
    for argument in argv[1:]:
        if skip_next:
            skip_next = False
        elif argument == "--ckpt_path":
            skip_next = True
        elif not argument.startswith("--ckpt_path="):
            kept.append(argument)
    return shlex.join(["seqlit", *kept, "--ckpt_path", str(path)])


@rank_zero_only
def _announce(message: str) -> None:
    """One line on stderr from global rank 0 (stdout may be a redirected log that is not flushed in time)."""
    print(f"seqlit: {message}", file=sys.stderr, flush=True)
