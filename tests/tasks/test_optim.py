"""Optimisers and schedules from factories: parameter groups, total steps, intervals, plateau monitors."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from seqlit.schedules import WarmupCosineLR
from seqlit.tasks import SequenceClassifier
from seqlit.tasks.optim import configure_optimization, parameter_groups, takes_total_steps

MONITOR = ("val/loss", "min")


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))


def test_weight_decay_on_matrices_only_from_the_optimizers_own_setting() -> None:
    model = _model()
    spec = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01, "weight_decay": 0.1}}
    config = configure_optimization(model, spec, None, 100, MONITOR)
    decay, no_decay = config.param_groups  # no scheduler: the bare optimizer
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert len(parameter_groups(nn.Linear(2, 2, bias=False))) == 1  # an empty group is left out


def test_warmup_cosine_gets_the_run_length_and_steps_per_optimizer_step() -> None:
    spec = {"class_path": "seqlit.schedules.WarmupCosineLR", "init_args": {"warmup_fraction": 0.1, "min_lr_ratio": 0.0}}
    config = configure_optimization(_model(), functools.partial(torch.optim.SGD, lr=1.0), spec, 200, MONITOR)
    scheduler = config["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, WarmupCosineLR) and config["lr_scheduler"]["interval"] == "step"
    assert scheduler.lr_lambdas[0].total_steps == 200 and scheduler.lr_lambdas[0].warmup_steps == 20
    assert config["optimizer"].param_groups[0]["lr"] < 1.0  # warming up


def test_onecycle_gets_total_steps_too_and_a_given_total_is_kept() -> None:
    onecycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1)
    config = configure_optimization(_model(), functools.partial(torch.optim.SGD, lr=0.1), onecycle, 77, MONITOR)
    assert config["lr_scheduler"]["scheduler"].total_steps == 77 and config["lr_scheduler"]["interval"] == "step"
    fixed = functools.partial(WarmupCosineLR, total_steps=10)
    assert not takes_total_steps(fixed) and takes_total_steps(WarmupCosineLR)
    assert not takes_total_steps(torch.optim.lr_scheduler.StepLR)


def test_epoch_schedulers_and_plateau_on_the_tasks_monitor() -> None:
    sgd = functools.partial(torch.optim.SGD, lr=20.0)
    step = configure_optimization(_model(), sgd, functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2),
                                  10, MONITOR)
    assert step["lr_scheduler"]["interval"] == "epoch" and "monitor" not in step["lr_scheduler"]
    plateau = {"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau", "init_args": {"factor": 0.25, "patience": 0}}
    config = configure_optimization(_model(), sgd, plateau, 10, ("val/bpc", "min"))
    assert config["lr_scheduler"]["monitor"] == "val/bpc" and config["lr_scheduler"]["interval"] == "epoch"
    with pytest.raises(ValueError, match="mode='min' but the monitored val/acc is better when higher"):
        configure_optimization(_model(), sgd, plateau, 10, ("val/acc", "max"))


def test_task_builds_its_optimizer_from_its_factories() -> None:
    model = SequenceClassifier(4, 3, optimizer={"class_path": "torch.optim.RMSprop", "init_args": {"lr": 0.01}},
                               lr_scheduler=None)
    model._trainer = SimpleNamespace(estimated_stepping_batches=50)  # what Lightning provides at fit time
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.defaults["lr"] == 0.01
    with pytest.raises(ValueError, match="no trainable parameters"):
        configure_optimization(nn.Identity(), sgd_spec(), None, 10, MONITOR)


def sgd_spec() -> dict:
    return {"class_path": "torch.optim.SGD", "init_args": {"lr": 1.0}}


def test_on_a_gpu_the_fused_implementation_is_chosen_unless_set() -> None:
    adamw = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}}
    fused = configure_optimization(_model(), adamw, None, 10, MONITOR, prefer_fused=True)
    assert fused.defaults["fused"] is True  # CPU fused AdamW exists too, which is what this test can run
    plain = configure_optimization(_model(), adamw, None, 10, MONITOR)
    assert not plain.defaults["fused"]
    told = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01, "fused": False}}
    assert not configure_optimization(_model(), told, None, 10, MONITOR, prefer_fused=True).defaults["fused"]
    rmsprop = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": 0.01}}  # has no fused option
    assert isinstance(configure_optimization(_model(), rmsprop, None, 10, MONITOR, prefer_fused=True),
                      torch.optim.RMSprop)
