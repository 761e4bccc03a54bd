"""Gradient accumulation that equals the big batch: normalise by the targets of the whole step."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class EffectiveBatchNormalizer:
    """Rescales accumulated gradients so they equal the mean-loss gradient of the effective batch.

    With bucketing, micro-batches hold different numbers of real targets (sequences or non-pad
    tokens). Averaging per micro-batch and then over micro-batches (what Lightning's
    `accumulate_grad_batches` does) over-weights the targets of small batches. Instead each
    micro-batch returns its *summed* loss; after the last backward of a step the gradients are
    multiplied by `accumulate_grad_batches / targets_in_step`, which undoes Lightning's division
    and divides by the real count. Done in `on_after_backward`, so every `on_before_optimizer_step`
    hook (gradient-norm logging, clipping) already sees the final gradients.
    """

    def __init__(self) -> None:
        self.targets_in_step = 0

    def add(self, n_targets: int) -> None:
        """Counts the real (non-ignored) targets of one micro-batch."""
        self.targets_in_step += int(n_targets)

    def on_after_backward(self, module: pl.LightningModule) -> None:
        trainer = module.trainer
        if trainer.fit_loop._should_accumulate():
            return
        factor = trainer.accumulate_grad_batches / max(1, self.targets_in_step)
        self.targets_in_step = 0
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, factor)
