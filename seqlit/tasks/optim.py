"""Optimizer construction shared by every task: decay only on weight matrices, warmup + cosine."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from seqlit.schedules import warmup_cosine_scheduler

OptimizerName = Literal["adamw", "adam", "rmsprop"]
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
}


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: decaying biases and norm gains just fights the data."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def configure_optimizer(
    module: nn.Module,
    name: OptimizerName,
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup_fraction: float,
    min_lr_ratio: float,
) -> dict[str, Any]:
    """The `configure_optimizers` return value: optimizer plus a per-step warmup-cosine schedule."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}.")
    optimizer = OPTIMIZERS[name](parameter_groups(module, weight_decay), lr=lr)
    scheduler = warmup_cosine_scheduler(optimizer, max(1, total_steps), warmup_fraction, min_lr_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def configure_from_hparams(module: Any) -> dict[str, Any]:
    """`configure_optimizers` for a task whose hparams hold optimizer, lr, weight_decay, warmup_fraction
    and min_lr_ratio; the schedule spans the trainer's estimated optimizer steps."""
    hparams = module.hparams
    return configure_optimizer(
        module,
        hparams.optimizer,
        hparams.lr,
        hparams.weight_decay,
        int(module.trainer.estimated_stepping_batches),
        hparams.warmup_fraction,
        hparams.min_lr_ratio,
    )
