"""Draws each task family's validation figures every few epochs (confusion matrix, attention, samples,
forecasts, gradient norms by layer) and sends them to every logger and to the run's folder."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.figures import MAKERS_BY_FAMILY, Artifact, FigureMaker, grad_norm_heatmap, publish
from seqlit.figures.grad_norms import history_from_epoch_means


class TaskFigures(Callback):
    """Figures of the task's validation, on rank 0, never on the training step path.

    `makers` draw the task's figures (`seqlit.figures.ClassificationFigures`, `Seq2SeqFigures`,
    `LanguageModelFigures`, `ForecastingFigures` or your own `FigureMaker`, by `class_path`); left out, the
    task's `figure_family` picks one. With `grad_norms` (and a `GradNormMonitor` in the callbacks) a heatmap
    of every layer's and gate's epoch-mean gradient norm over the epochs is added.

    Figures are drawn at the end of every `every_n_epochs`-th validation, of the last epoch and of one that
    early stopping ends the run at (EarlyStopping must come before this callback in the list, as in the
    base config). `max_overhead` caps the drawing time at that share of the fit's wall time so far: where
    epochs are shorter than a drawing (a tiny data set), a scheduled drawing waits for a later epoch
    (the final one is always drawn); null lifts the cap. The same `max_items` validation items, a sample
    seeded by `seed`, are shown every time.
    Images and tables go to TensorBoard (images, Markdown text) and W&B (`wandb.Image`, `wandb.Table`) under
    `figures/<name>` and `tables/<name>`, and to `<version dir>/figures/epoch_NNN/<name>.png|.csv`.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        max_items: int = 4,
        seed: int = 0,
        makers: list[FigureMaker] | None = None,
        grad_norms: bool = True,
        max_overhead: float | None = 0.03,
    ) -> None:
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be a positive int (1 draws at every validation), got {every_n_epochs!r}.")
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 0:
            raise ValueError(f"max_items must be an int >= 0 (0 shows no fixed items), got {max_items!r}.")
        if max_overhead is not None and not 0.0 < max_overhead <= 1.0:
            raise ValueError(f"max_overhead must be in (0, 1] (a share of the fit's time) or null, got {max_overhead!r}.")
        self.max_overhead = max_overhead
        self.every_n_epochs = every_n_epochs
        self.max_items = max_items
        self.seed = seed
        self.makers = list(makers) if makers is not None else None
        self.grad_norms = grad_norms
        self.seconds_spent = 0.0  # rank 0's drawing time over the fit (what the overhead benchmark reads)
        self.last_folder: Any = None  # the folder of the latest drawing, when a logger has a folder
        self._grad_history: dict[str, dict[int, float]] = {}  # row name -> epoch -> epoch-mean norm
        self._active: list[FigureMaker] = []
        self._observing = False
        self._items: list[Any] | None = None  # per maker, on the CPU
        self._fit_started = time.perf_counter()
        self._last_cost = 0.0  # seconds of the latest drawing
        self._owed = False  # a scheduled drawing was put off by the time cap

    # ---- collecting --------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_started = time.perf_counter()
        self._owed = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.makers is not None:
            self._active = self.makers
            return
        family = getattr(pl_module, "figure_family", None)
        maker = MAKERS_BY_FAMILY.get(family) if isinstance(family, str) else None
        self._active = [maker()] if maker is not None else []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._observing = self._enabled(trainer)
        if self._observing:
            for maker in self._active:
                maker.reset()

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        # Every validation is observed (a count on the device: cheap); whether it is drawn is known only at
        # its end, once early stopping has decided.
        if self._observing and dataloader_idx == 0:
            for maker in self._active:
                maker.observe(pl_module, batch, outputs)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled(trainer) or not self.grad_norms or trainer.state.fn != "fit":
            return
        # GradNormMonitor's sums of this epoch are complete here (validation runs after the epoch's last step).
        monitor = next((c for c in trainer.callbacks if isinstance(c, GradNormMonitor)), None)  # type: ignore[attr-defined]
        if monitor is not None:
            for name, value in history_from_epoch_means(monitor.epoch_means()).items():
                self._grad_history.setdefault(name, {})[trainer.current_epoch] = value

    # ---- drawing -----------------------------------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._observing or not self._due(trainer):
            return
        self._observing = False
        started = time.perf_counter()
        artifacts: list[Artifact] = []
        with torch.no_grad():
            for maker, items in zip(self._active, self._fixed_items(trainer, pl_module)):
                try:
                    artifacts += maker.make(pl_module, items, trainer.current_epoch)
                except Exception as error:  # a figure must never end a training run
                    rank_zero_warn(f"TaskFigures: {type(maker).__name__} failed and is skipped this epoch: {error!r}")
        if self._grad_history:
            artifacts.append(grad_norm_heatmap(self._grad_history))
        if artifacts:
            self.last_folder = publish(trainer.loggers, artifacts, trainer.current_epoch, trainer.global_step)
        self._last_cost = time.perf_counter() - started
        self.seconds_spent += self._last_cost

    def state_dict(self) -> dict[str, Any]:
        return {"grad_history": {name: dict(values) for name, values in self._grad_history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        history = state_dict.get("grad_history", {})
        self._grad_history = {name: {int(e): float(v) for e, v in values.items()} for name, values in history.items()}

    # ---- helpers -----------------------------------------------------------------------------------
    def _enabled(self, trainer: pl.Trainer) -> bool:
        """Rank 0, a real validation (not the sanity check, not a fast_dev_run), with a logger to send to."""
        return trainer.is_global_zero and not trainer.sanity_checking and not trainer.fast_dev_run \
            and bool(trainer.loggers)

    def _due(self, trainer: pl.Trainer) -> bool:
        if trainer.state.fn != "fit":
            return True  # `seqlit validate`: the one validation there is
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch + 1 >= trainer.max_epochs
        if last or trainer.should_stop:
            return True
        if not (self._owed or (epoch + 1) % self.every_n_epochs == 0):
            return False
        elapsed = time.perf_counter() - self._fit_started
        within = self.max_overhead is None or self.seconds_spent + self._last_cost <= self.max_overhead * elapsed
        self._owed = not within
        return within

    def _fixed_items(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[Any]:
        """Each maker's seeded validation items, chosen once per run (kept on the CPU), on the module's device."""
        if self._items is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            self._items = [
                maker.fixed_items(loader, self.max_items, self.seed) if loader is not None else None
                for maker in self._active
            ]
        return [items.to(pl_module.device) if items is not None else None for items in self._items]
