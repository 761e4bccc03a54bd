"""`EarlyStopping`: Lightning's early stopping that, unless told otherwise, watches the task's own metric."""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

from seqlit.callbacks.best_checkpoint import task_monitor


class EarlyStopping(LightningEarlyStopping):
    """Stops when `monitor` has not improved by `min_delta` for `patience` validations.

    With `monitor: null` (the default) the metric and its direction are the task's (`SeqlitTask.monitor`),
    and with `patience: null` the task's default patience (`SeqlitTask.patience`: 20 validations for a
    classifier or forecaster, 8 for seq2seq, 6 for a language model), so one base config serves every task. Every other argument is Lightning's `EarlyStopping`'s.
    """

    def __init__(
        self,
        monitor: str | None = None,
        min_delta: float = 0.0,
        patience: int | None = None,
        mode: Literal["min", "max"] | None = None,
        verbose: bool = False,
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
    ) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1 validation, got {patience}.")
        super().__init__(
            monitor=monitor or "", min_delta=min_delta, patience=patience or 20, mode=mode or "min", verbose=verbose,
            strict=strict, check_finite=check_finite, stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold, check_on_train_epoch_end=check_on_train_epoch_end,
        )
        self._monitor_given, self._mode_given, self._patience_given = monitor, mode, patience
        self._min_delta_given = abs(min_delta)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._patience_given is None:
            self.patience = int(getattr(pl_module, "patience", 20))
        if not self._monitor_given:
            metric, mode = task_monitor(pl_module)
            self.monitor, self.mode = metric, self._mode_given or mode
            # What Lightning's __init__ derives from the mode: the sign of min_delta and the starting best score.
            self.min_delta = self._min_delta_given * (1 if self.monitor_op == torch.gt else -1)
            self.best_score = torch.tensor(-torch.inf if self.mode == "max" else torch.inf)
        super().setup(trainer, pl_module, stage)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = not trainer.sanity_checking
        super().on_validation_end(trainer, pl_module)

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        # A fit that ends before its first validation (max_steps inside the first epoch) has nothing to
        # compare yet; Lightning would call the missing metric an error.
        if not self._validated and self.monitor not in trainer.callback_metrics:
            return
        super()._run_early_stopping_check(trainer)

    _validated = False
