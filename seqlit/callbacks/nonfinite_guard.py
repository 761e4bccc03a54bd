"""Skips optimizer steps whose loss or gradients are NaN/Inf, and stops after too many in a row."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer

from seqlit.errors import NonFiniteLossError


class NonFiniteGuard(Callback):
    """One bad batch must not destroy a run: a step with a non-finite loss (or, outside fp16 AMP,
    non-finite gradients) is skipped by removing its gradients before the optimizer sees them, so
    weights and optimizer moments stay as they were. Skips are counted (`train/nonfinite_steps`);
    after `max_consecutive` in a row training stops with `NonFiniteLossError` naming the step. The
    exception ends the fit before any checkpoint of the bad state is written, and since skipped
    steps never changed the weights, the checkpoints on disk are all from good steps. The count is
    logged on the trainer's logging steps and on every skip.

    Under `16-mixed`, inf gradients with a finite loss are the GradScaler's business (it skips the
    step and lowers the scale), so they are not counted here.
    """

    def __init__(self, max_consecutive: int = 5) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0
        self._losses: list[Tensor] = []  # the micro-batch losses of the current optimizer step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx % trainer.accumulate_grad_batches == 0:
            self._losses.clear()  # a new accumulation window starts clean

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        # Kept on the device: the check happens once per optimizer step, with one host sync.
        self._losses.append(loss.detach().float().reshape(-1))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        loss_finite, grads_finite = _finite_flags(self._losses, grads)
        self._losses.clear()
        uses_grad_scaler = getattr(trainer.precision_plugin, "scaler", None) is not None
        bad = not loss_finite or (not grads_finite and not uses_grad_scaler)
        if not bad:
            self.consecutive = 0
        else:
            self.consecutive += 1
            self.total_skipped += 1
            # Optimizers skip parameters whose grad is None: no update, no moment or decay change.
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            rank_zero_warn(
                f"non-finite {'loss' if not loss_finite else 'gradients'} at global step "
                f"{trainer.global_step} (epoch {trainer.current_epoch}); the optimizer step was skipped "
                f"({self.consecutive} in a row, {self.total_skipped} in total)."
            )
        # Logged on the trainer's logging steps (logging every step costs ~1 ms of Lightning bookkeeping
        # for values the logger never writes) and whenever a step is skipped.
        interval = max(trainer.log_every_n_steps, 1)
        if bad or (trainer.global_step + 1) % interval == 0:
            pl_module.log("train/nonfinite_steps", float(self.total_skipped), on_step=True, on_epoch=False)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"training stopped at global step {trainer.global_step} (epoch {trainer.current_epoch}): "
                f"{self.consecutive} consecutive steps had a non-finite loss or gradients. Checkpoints "
                "already written are from good steps and stay intact. Lower the learning rate, check the "
                "data for NaN/Inf values, or keep gradient clipping on (trainer.gradient_clip_val)."
            )

    def state_dict(self) -> dict[str, Any]:
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.consecutive = int(state_dict.get("consecutive", 0))
        self.total_skipped = int(state_dict.get("total_skipped", 0))


def _finite_flags(losses: list[Tensor], grads: list[Tensor]) -> tuple[bool, bool]:
    """(all losses finite, all gradients finite) with a single device-to-host transfer."""
    reference = grads[0] if grads else (losses[0] if losses else torch.zeros(()))
    loss_sum = torch.cat(losses).sum() if losses else reference.new_zeros((), dtype=torch.float32)
    grad_sum = torch.stack([n.float() for n in torch._foreach_norm(grads)]).sum() if grads else loss_sum.new_zeros(())
    loss_finite, grads_finite = torch.isfinite(torch.stack([loss_sum.to(grad_sum.device), grad_sum])).tolist()
    return bool(loss_finite), bool(grads_finite)
