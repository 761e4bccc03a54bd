"""Logs the fp16 GradScaler's loss scale and counts the steps it skipped for inf/NaN gradients."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from torch import Tensor
from torch.optim import Optimizer


class LossScaleMonitor(Callback):
    """`amp/loss_scale` and `amp/skipped_steps` under `precision="16-mixed"`; a no-op otherwise.

    The scaler halves its scale exactly when it found inf/NaN gradients and skipped the step, so a drop in
    scale across an optimizer step counts one skipped step. A few early skips while the scale calibrates
    are normal; a steadily growing count means the model overflows in fp16. The comparison runs on the
    device every step and is read on the trainer's logging steps only (no host synchronisation between).
    """

    def __init__(self) -> None:
        self.skipped_steps = 0
        self._scale_before: Tensor | None = None
        self._pending: Tensor | None = None  # () long: skips seen on the device since the last read

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        scale = _scale_tensor(trainer)
        self._scale_before = None if scale is None else scale.detach().clone()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        scale = _scale_tensor(trainer)
        if scale is None or self._scale_before is None:
            return
        dropped = (scale < self._scale_before.to(scale.device)).long()  # () on the device
        self._pending = dropped if self._pending is None else self._pending + dropped
        self._scale_before = None
        if (trainer.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0 or trainer.global_step == 0:
            self._read()
            pl_module.log("amp/loss_scale", float(scale), on_step=True, on_epoch=False)
            pl_module.log("amp/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        self._read()
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
        self._pending = None

    def _read(self) -> None:
        if self._pending is not None:
            self.skipped_steps += int(self._pending)
            self._pending = None


def _scale_tensor(trainer: pl.Trainer) -> Tensor | None:
    """The GradScaler's current scale as a device tensor (None without a scaler, or before its first step)."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not getattr(scaler, "is_enabled", lambda: True)():
        return None
    scale = scaler._get_scale_async() if hasattr(scaler, "_get_scale_async") else None
    return scale if isinstance(scale, torch.Tensor) else None
