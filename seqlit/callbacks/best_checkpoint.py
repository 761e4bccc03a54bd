"""`BestCheckpoint`: Lightning's ModelCheckpoint that, unless told otherwise, keeps the best checkpoint by
the metric the task is judged by (`val/loss` for a classifier, `val/wer` for seq2seq, ...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor


class BestCheckpoint(ModelCheckpoint):
    """Keeps the `save_top_k` best checkpoints by `monitor` and `last.ckpt`.

    With `monitor: null` (the default) the monitored metric and its direction are the task's own
    (`SeqlitTask.monitor`), set when training starts, and the file name shows it:
    `best-epoch007-val_wer0.2431.ckpt`. Every other argument is ModelCheckpoint's; `enable_version_counter`
    is off, so a run folder holds exactly one `last.ckpt` (never a `last-v1.ckpt` beside it).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] | None = None,
        save_top_k: int = 1,
        save_last: bool | None = True,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        train_time_interval: timedelta | None = None,
        save_on_train_epoch_end: bool | None = None,
        save_weights_only: bool = False,
        enable_version_counter: bool = False,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=monitor, mode=mode or "min", save_top_k=save_top_k,
            save_last=save_last, every_n_train_steps=every_n_train_steps, every_n_epochs=every_n_epochs,
            train_time_interval=train_time_interval, save_on_train_epoch_end=save_on_train_epoch_end,
            save_weights_only=save_weights_only, enable_version_counter=enable_version_counter, verbose=verbose,
            auto_insert_metric_name=False,
        )
        self._mode_given = mode
        self._filename_given = filename

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.monitor is None:
            metric, mode = task_monitor(pl_module)
            self.monitor = metric
            self._ModelCheckpoint__init_monitor_mode(self._mode_given or mode)  # sets kth_value and mode
        if self._filename_given is None and self.monitor is not None:
            self.filename = f"best-epoch{{epoch:03d}}-{self.monitor.replace('/', '_')}{{{self.monitor}:.4f}}"
        super().setup(trainer, pl_module, stage)

    def check_monitor_top_k(self, trainer: pl.Trainer, current: Tensor | None = None) -> bool:
        """A NaN/Inf score is never a best checkpoint (Lightning keeps the first one it sees, NaN or not, while
        fewer than `save_top_k` are saved); `last.ckpt` is written as usual."""
        if current is not None and not bool(torch.isfinite(current)):
            return False
        return super().check_monitor_top_k(trainer, current)


def task_monitor(pl_module: pl.LightningModule) -> tuple[str, str]:
    """(metric, "min" | "max") the task is judged by; `val/loss`, lower is better, for other modules."""
    monitor = getattr(pl_module, "monitor", ("val/loss", "min"))
    return str(monitor[0]), str(monitor[1])
