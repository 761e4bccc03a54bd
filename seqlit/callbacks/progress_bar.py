"""`ProgressBar`: Lightning's tqdm bar that shows the training loss without a per-step host synchronisation."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

# The step loss each task logs (its name in the trainer's callback metrics), shown as `loss` in the bar.
_STEP_LOSS_KEYS = ("train/loss_step",)


class ProgressBar(TQDMProgressBar):
    """The tqdm progress bar, refreshed every `refresh_rate` batches, showing the last step's training loss.

    seqlit's tasks log their step loss without `prog_bar=True`: Lightning converts every progress-bar value
    to a Python number after every batch, which on a GPU makes the host wait for the device each step. This
    bar reads the loss only when it redraws. `refresh_rate: null` (the default) redraws every batch on a CPU
    and on the trainer's logging cadence (`log_every_n_steps`) on a GPU.
    """

    def __init__(self, refresh_rate: int | None = None, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate or 1, leave=leave)
        self._rate_given = refresh_rate

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._rate_given is None:
            on_gpu = trainer.strategy.root_device.type == "cuda"
            self._refresh_rate = max(1, trainer.log_every_n_steps) if on_gpu else 1
        super().setup(trainer, pl_module, stage)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        for key in _STEP_LOSS_KEYS:
            value = trainer.callback_metrics.get(key)
            if isinstance(value, torch.Tensor) and value.numel() == 1 and trainer.training:
                metrics["loss"] = f"{float(value):.4g}"  # read here, on a redraw, not after every batch
        return metrics
