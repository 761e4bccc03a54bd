"""Skips optimizer steps whose loss or gradients are NaN/Inf, stops after too many in a row, and stops a run
whose validation or test metrics are NaN/Inf."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer

from seqlit.errors import NonFiniteLossError, NonFiniteMetricError


class NonFiniteGuard(Callback):
    """One bad batch must not destroy a run: a step with a non-finite loss (or, outside fp16 AMP,
    non-finite gradients) is skipped, so weights and optimizer moments stay as they were. Skips are
    counted (`train/nonfinite_steps`); after `max_consecutive` in a row training stops with
    `NonFiniteLossError`. Skipped steps never change the weights, so the checkpoints on disk are all from
    good steps. Under `16-mixed`, inf gradients with a finite loss are the GradScaler's business (it skips
    the step and lowers the scale), so they are not counted here.

    Without a host-device synchronisation per step: the check runs on the device, and an optimizer that
    can skip a step on the device (torch's fused Adam, AdamW and SGD read a `found_inf` flag, as AMP's
    GradScaler uses it) is told to skip there; the counts are read on the trainer's logging steps and at
    epoch end, where the warning, the `train/nonfinite_steps` value and the stop happen (so a stop comes
    at the first logging step after `max_consecutive` bad steps in a row). Other optimizers get the skip
    by removing the gradients, which needs the answer on the host every step: cheap on a CPU, one stall
    per step on a GPU (seqlit's tasks pick the fused implementation on a GPU when the optimizer has one).
    """

    def __init__(self, max_consecutive: int = 5) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0
        self._losses: list[Tensor] = []  # the micro-batch losses of the current optimizer step
        # Device-side counts between two reads: skipped steps, the current run of them, the longest run.
        self._pending: Tensor | None = None  # (3,) long: skipped, consecutive, longest

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx % trainer.accumulate_grad_batches == 0:
            self._losses.clear()  # a new accumulation window starts clean

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self._losses.append(loss.detach().float().reshape(-1))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        uses_grad_scaler = getattr(trainer.precision_plugin, "scaler", None) is not None
        bad = _bad_step(self._losses, grads, check_grads=not uses_grad_scaler)  # () bool, on the device
        self._losses.clear()
        self._record(bad)
        if not uses_grad_scaler and getattr(optimizer, "_step_supports_amp_scaling", False):
            # The optimizer skips on the device: its parameters, moments and step counts stay as they were.
            optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
            optimizer.grad_scale = None  # type: ignore[attr-defined]
            if _is_logging_step(trainer):
                self._report(trainer, pl_module)
            return
        skip = bool(bad)  # the decision is needed on the host now
        if skip:
            for group in optimizer.param_groups:  # a parameter without grad is not updated at all
                for param in group["params"]:
                    param.grad = None
        if skip or _is_logging_step(trainer):
            self._report(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, pl_module, log=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            _stop_on_nonfinite_metrics(trainer, "val/")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _stop_on_nonfinite_metrics(trainer, "test/")

    def state_dict(self) -> dict[str, Any]:
        self._read()
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.consecutive = int(state_dict.get("consecutive", 0))
        self.total_skipped = int(state_dict.get("total_skipped", 0))
        self._pending = None

    # ---- device-side counting, host-side reading ----------------------------------------------------
    def _record(self, bad: Tensor) -> None:
        """Adds one optimizer step's verdict to the device counts (no synchronisation)."""
        if self._pending is None:
            self._pending = torch.zeros(3, dtype=torch.long, device=bad.device)
            self._pending[1] = self.consecutive  # a run of bad steps continues across reads
        skipped, consecutive, longest = self._pending.unbind()
        step = bad.long()
        consecutive = (consecutive + step) * step  # +1 on a bad step, 0 on a good one
        self._pending = torch.stack([skipped + step, consecutive, torch.maximum(longest, consecutive)])

    def _read(self) -> tuple[int, int]:
        """Moves the device counts to the host (one synchronisation); returns (newly skipped, longest run)."""
        if self._pending is None:
            return 0, self.consecutive
        skipped, consecutive, longest = (int(value) for value in self._pending.tolist())
        self._pending = None
        self.total_skipped += skipped
        self.consecutive = consecutive
        return skipped, longest

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule, log: bool = True) -> None:
        """Reads the counts; warns about skipped steps, logs the total, stops after too many in a row."""
        skipped, longest = self._read()
        if skipped:
            rank_zero_warn(
                f"non-finite loss or gradients at global step {trainer.global_step} (epoch {trainer.current_epoch}): "
                f"{skipped} optimizer step(s) skipped since the last check ({self.consecutive} in a row now, "
                f"{self.total_skipped} in total)."
            )
        if log:
            pl_module.log("train/nonfinite_steps", float(self.total_skipped), on_step=True, on_epoch=False)
        if longest >= self.max_consecutive:
            raise NonFiniteLossError(
                f"training stopped at global step {trainer.global_step} (epoch {trainer.current_epoch}): "
                f"{longest} consecutive steps had a non-finite loss or gradients. Checkpoints already written "
                "are from good steps and stay intact. Lower the learning rate, check the data for NaN/Inf "
                "values, or keep gradient clipping on (trainer.gradient_clip_val)."
            )


def _stop_on_nonfinite_metrics(trainer: pl.Trainer, prefix: str) -> None:
    """Raises NonFiniteMetricError naming the `prefix` metrics (val/..., test/...) that are NaN/Inf. It runs before
    the checkpoint callbacks (Lightning runs those last), so no checkpoint is written for that validation."""
    bad = {key: float(value) for key, value in trainer.callback_metrics.items()
           if key.startswith(prefix) and not bool(torch.isfinite(torch.as_tensor(value)).all())}
    if bad:
        shown = ", ".join(f"{key}={value}" for key, value in sorted(bad.items()))
        raise NonFiniteMetricError(
            f"run stopped at epoch {trainer.current_epoch} (global step {trainer.global_step}): {shown}. The numbers "
            "overflowed: check the data for huge values (rescale them), or lower the learning rate. Checkpoints "
            "already written stay intact; none was written for this evaluation."
        )


def _is_logging_step(trainer: pl.Trainer) -> bool:
    return (trainer.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0


def _bad_step(losses: list[Tensor], grads: list[Tensor], check_grads: bool) -> Tensor:
    """() bool on the device: a loss of the step, or (when checked) a gradient, is NaN/Inf."""
    device = grads[0].device if grads else (losses[0].device if losses else torch.device("cpu"))
    bad = torch.zeros((), dtype=torch.bool, device=device)
    if losses:
        bad = bad | ~torch.isfinite(torch.cat(losses).to(device).sum())
    if check_grads and grads:
        norms = torch._foreach_norm(grads)
        bad = bad | ~torch.isfinite(torch.stack([n.float() for n in norms]).sum())
    return bad
