"""What every seqlit task shares: plain-data hyperparameters, optimisation from factories, the metric it is
judged by, and gradients normalised over the whole (accumulated, distributed) step."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import lightning.pytorch as pl

from seqlit.parts import describe
from seqlit.tasks.accumulation import EffectiveBatchNormalizer
from seqlit.tasks.optim import check_optimization, configure_optimization


class SeqlitTask(pl.LightningModule):
    """Base of the four tasks. A subclass builds its network from its parts, calls
    `save_plain_hyperparameters()`, adds its targets with `self.step_normalizer.add(n)` in `training_step`
    and returns the *summed* loss.

    `monitor` is the validation metric and direction the task is judged by: checkpoint selection, early
    stopping and `ReduceLROnPlateau` use it unless told otherwise; `patience` is early stopping's default
    for the task (how noisy its validation metric is). `size_parameters`, `cell_parameters`
    and `bidirectional_parameters` are dotted paths into the hyperparameters that `seqlit compare` scales
    and swaps.
    """

    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")
    # which validation figures `seqlit.callbacks.TaskFigures` draws by default (see seqlit.figures.MAKERS_BY_FAMILY)
    figure_family: ClassVar[str | None] = None
    patience: ClassVar[int] = 20  # validations without improvement before early stopping gives up
    size_parameters: ClassVar[tuple[str, ...]] = ()
    cell_parameters: ClassVar[tuple[str, ...]] = ()
    bidirectional_parameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, optimizer: Any, lr_scheduler: Any | None) -> None:
        super().__init__()
        check_optimization(optimizer, lr_scheduler, self.monitor)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.step_normalizer = EffectiveBatchNormalizer()

    def save_plain_hyperparameters(self) -> None:
        """`save_hyperparameters()` of the subclass's arguments, with every factory described as
        `{class_path, init_args}`, so checkpoints hold plain data only (loadable with weights_only=True)."""
        frame = inspect.currentframe()
        assert frame is not None and frame.f_back is not None
        self.save_hyperparameters(frame=frame.f_back)
        for key in list(self.hparams):
            self.hparams[key] = describe(self.hparams[key])

    def is_logging_step(self) -> bool:
        """Whether this training step's values reach the loggers (Lightning writes every `log_every_n_steps`);
        logging a Python number on other steps would only copy it to the device for nothing."""
        return (self.global_step + 1) % max(self.trainer.log_every_n_steps, 1) == 0

    def on_after_backward(self) -> None:
        self.step_normalizer.on_after_backward(self)

    def configure_optimizers(self) -> Any:
        return configure_optimization(
            self, self.optimizer_factory, self.lr_scheduler_factory,
            int(self.trainer.estimated_stepping_batches), self.monitor, prefer_fused=self.device.type == "cuda",
        )
