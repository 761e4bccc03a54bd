"""Logs the fp16 GradScaler's loss scale and counts the steps it skipped for inf/NaN gradients."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch import Callback
from torch.optim import Optimizer


class LossScaleMonitor(Callback):
    """`amp/loss_scale` and `amp/skipped_steps` under `precision="16-mixed"`; a no-op otherwise.

    The scaler halves its scale exactly when it found inf/NaN gradients and skipped the step, so
    a drop in scale across an optimizer step counts one skipped step. A few early skips while the
    scale calibrates are normal; a steadily growing count means the model overflows in fp16.
    """

    def __init__(self) -> None:
        self.skipped_steps = 0
        self._scale_before: float | None = None

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._scale_before = None if scaler is None else float(scaler.get_scale())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is None or self._scale_before is None:
            return
        scale_after = float(scaler.get_scale())
        if scale_after < self._scale_before:
            self.skipped_steps += 1
        self._scale_before = None
        pl_module.log("amp/loss_scale", scale_after, on_step=True, on_epoch=False)
        pl_module.log("amp/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
