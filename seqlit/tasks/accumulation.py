"""Gradient accumulation that equals the big batch: normalise by the targets of the whole step, on every rank."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class EffectiveBatchNormalizer:
    """Rescales accumulated gradients so they equal the mean-loss gradient of the effective batch.

    With bucketing, micro-batches hold different numbers of real targets (sequences or non-pad
    tokens). Averaging per micro-batch and then over micro-batches (what Lightning's
    `accumulate_grad_batches` does) over-weights the targets of small batches. Instead each
    micro-batch returns its *summed* loss; after the last backward of a step the gradients are
    multiplied by `accumulate_grad_batches * world_size / targets_in_step_on_all_ranks`, which undoes
    Lightning's division and DDP's averaging over ranks and divides by the real count of the global
    batch. The count is summed over ranks because ranks hold different numbers of targets: with a
    per-rank count each rank would scale the (already averaged, identical) gradients differently,
    the replicas would drift apart, and none would follow the one-process gradient of the union batch.
    Done in `on_after_backward`, so every `on_before_optimizer_step` hook (gradient-norm logging,
    clipping) already sees the final gradients.
    """

    def __init__(self) -> None:
        self.targets_in_step = 0

    def add(self, n_targets: int) -> None:
        """Counts the real (non-ignored) targets of one micro-batch on this rank."""
        self.targets_in_step += int(n_targets)

    def on_after_backward(self, module: pl.LightningModule) -> None:
        trainer = module.trainer
        if trainer.fit_loop._should_accumulate():
            return
        factor = self._factor(trainer, module.device)
        self.targets_in_step = 0
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, factor)

    def _factor(self, trainer: pl.Trainer, device: torch.device) -> float | torch.Tensor:
        """accumulate_grad_batches * world_size / (targets of this step on all ranks).

        On one process a Python number. Under DDP the count is all-reduced as a device tensor and the factor
        stays one: the division and the scaling run on the device, so the step has no host synchronisation
        (the all-reduce is queued like DDP's own gradient all-reduce)."""
        if trainer.world_size == 1:
            return trainer.accumulate_grad_batches / max(1, self.targets_in_step)
        count = torch.tensor(float(self.targets_in_step), device=device)
        count = trainer.strategy.reduce(count, reduce_op="sum")  # () on the device, summed over ranks
        return (trainer.accumulate_grad_batches * trainer.world_size) / count.clamp_min(1.0)
