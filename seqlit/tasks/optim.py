"""Optimisers and LR schedules the LightningCLI way: tasks take factories (`OptimizerCallable`,
`LRSchedulerCallable`) that YAML names by `class_path`, and build them on their own parameter groups.

    model:
      init_args:
        optimizer: {class_path: torch.optim.SGD, init_args: {lr: 20, momentum: 0.0}}
        lr_scheduler: {class_path: torch.optim.lr_scheduler.ReduceLROnPlateau, init_args: {factor: 0.25, patience: 0}}

`seqlit fit --optimizer SGD --optimizer.lr 20` is the same from the command line. Weight decay applies to
weight matrices only. A scheduler with a `total_steps` argument left unset (seqlit's `WarmupCosineLR`,
torch's `OneCycleLR`) gets the trainer's estimate of the run's optimizer steps and steps every optimizer
step; `ReduceLROnPlateau` watches the task's monitor metric once per epoch; any other scheduler steps once
per epoch, as in Lightning.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from seqlit.errors import SettingError
from seqlit.parts import factory_class, resolve

# The learning rate's key in the loggers (LearningRateMonitor adds `/pg<N>` per parameter group), grouped
# with the other training curves; without a name Lightning would write `lr-AdamW`.
LR_METRIC = "train/lr"


def adamw(lr: float, weight_decay: float = 0.01) -> dict[str, Any]:
    """The default optimizer spec: AdamW (decoupled weight decay) at `lr`."""
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "weight_decay": weight_decay}}


def warmup_cosine(warmup_fraction: float = 0.05, min_lr_ratio: float = 0.01) -> dict[str, Any]:
    """The default schedule spec: linear warmup, then cosine decay, per optimizer step."""
    return {
        "class_path": "seqlit.schedules.WarmupCosineLR",
        "init_args": {"warmup_fraction": warmup_fraction, "min_lr_ratio": min_lr_ratio},
    }


def parameter_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Weight decay (the optimizer's own setting) on matrices only: decaying biases, gains and norm
    parameters just fights the data. Empty groups are left out."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def configure_optimization(
    module: nn.Module, optimizer: Any, lr_scheduler: Any | None, total_steps: int, monitor: tuple[str, str],
    prefer_fused: bool = False,
) -> dict[str, Any] | torch.optim.Optimizer:
    """The `configure_optimizers` return value for `module` from an optimizer and an optional scheduler factory.

    With `prefer_fused` (seqlit's tasks set it on a GPU) an optimizer that has a fused implementation and
    was not told otherwise (`fused` unset) uses it: one kernel per step instead of many, and it can skip a
    step with non-finite gradients on the device (see `NonFiniteGuard`) without a host synchronisation."""
    groups = parameter_groups(module)
    if not groups:
        raise ValueError("the model has no trainable parameters; nothing for the optimizer to train.")
    factory = resolve(optimizer, "optimizer")
    if prefer_fused and _fused_unset(factory):
        factory = functools.partial(factory, fused=True)
    built = factory(groups)
    if not isinstance(built, torch.optim.Optimizer):
        raise TypeError(f"the optimizer factory built a {type(built).__name__}, not a torch.optim.Optimizer.")
    if lr_scheduler is None:
        return built
    factory = resolve(lr_scheduler, "lr_scheduler")
    if takes_total_steps(factory):
        scheduler = factory(built, total_steps=max(1, int(total_steps)))
        return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": LR_METRIC}}
    scheduler = factory(built)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch", "name": LR_METRIC}
    if isinstance(scheduler, ReduceLROnPlateau):
        metric, mode = monitor
        metric = getattr(scheduler, "monitor", None) or metric  # Lightning's subclass names its own metric
        if scheduler.mode != mode:
            raise ValueError(
                f"ReduceLROnPlateau has mode={scheduler.mode!r} but the monitored {metric} is better when "
                f"{'lower' if mode == 'min' else 'higher'}; set lr_scheduler.init_args.mode: {mode}."
            )
        config["monitor"] = metric
    return {"optimizer": built, "lr_scheduler": config}


def check_optimization(optimizer: Any, lr_scheduler: Any | None, monitor: tuple[str, str]) -> None:
    """Builds the optimizer and schedule once on a one-parameter stand-in, so a bad setting (`lr: -0.1`, an
    out-of-range `warmup_fraction`) is refused when the task is built, before any log folder exists, instead
    of when training starts."""
    stand_in = nn.Linear(1, 1)
    for key, settings in (("model.optimizer", (optimizer, None)), ("model.lr_scheduler", (optimizer, lr_scheduler))):
        try:
            configure_optimization(stand_in, *settings, total_steps=100, monitor=monitor)
        except SettingError:
            raise
        except ValueError as error:
            message = " ".join(str(error).split())
            valid = next((v for words, v in _TORCH_RANGES.items() if message.startswith(words)), None)
            raise SettingError(f"{key}: {message}{f' ({valid})' if valid else ''}") from None


# torch.optim's messages for out-of-range settings -> the valid range, for the one-line error.
_TORCH_RANGES = {
    "Invalid learning rate": "optimizer lr must be >= 0; typical values are 1e-4 to 1e-2",
    "Invalid epsilon value": "optimizer eps must be >= 0",
    "Invalid beta parameter": "optimizer betas must each be in [0, 1)",
    "Invalid weight_decay value": "optimizer weight_decay must be >= 0",
    "Invalid momentum value": "optimizer momentum must be >= 0",
}


def _fused_unset(factory: Any) -> bool:
    """Whether an optimizer factory has a `fused` option left at None (its default)."""
    if isinstance(factory, functools.partial) and "fused" in factory.keywords:
        return factory.keywords["fused"] is None
    target = factory_class(factory) or factory
    try:
        parameter = inspect.signature(target).parameters.get("fused")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is None


def takes_total_steps(factory: Any) -> bool:
    """Whether a scheduler factory has a `total_steps` argument still unset (None)."""
    if isinstance(factory, functools.partial) and "total_steps" in factory.keywords:
        return factory.keywords["total_steps"] is None
    target = factory_class(factory) or factory
    try:
        parameter = inspect.signature(target).parameters.get("total_steps")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is None
