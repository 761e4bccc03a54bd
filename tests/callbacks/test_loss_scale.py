from types import SimpleNamespace
from typing import Any

import torch

from seqlit.callbacks.loss_scale import LossScaleMonitor


class _Scaler:
    """Stands in for torch.amp.GradScaler: halves on overflow, doubles after a streak (here: on demand); like it,
    keeps its scale as a tensor on the device."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def _get_scale_async(self) -> torch.Tensor:
        return torch.tensor(self.scale)


class _Module:
    def __init__(self) -> None:
        self.logged: list[tuple[str, float]] = []

    def log(self, name: str, value: float, **kwargs: Any) -> None:
        self.logged.append((name, value))


def _step(monitor: LossScaleMonitor, trainer: Any, module: _Module, scale_after: float) -> None:
    monitor.on_before_optimizer_step(trainer, module, None)  # type: ignore[arg-type]
    trainer.precision_plugin.scaler.scale = scale_after  # what GradScaler.update() did during the step
    monitor.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]


def test_counts_steps_where_the_scaler_backed_off() -> None:
    scaler = _Scaler(65536.0)
    trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler), global_step=0, log_every_n_steps=1)
    module, monitor = _Module(), LossScaleMonitor()
    _step(monitor, trainer, module, 32768.0)  # overflow: halved, step skipped
    _step(monitor, trainer, module, 32768.0)  # fine
    _step(monitor, trainer, module, 65536.0)  # growth after a clean streak is not a skip
    _step(monitor, trainer, module, 32768.0)  # overflow again
    assert monitor.skipped_steps == 2
    scales = [value for name, value in module.logged if name == "amp/loss_scale"]
    assert scales == [32768.0, 32768.0, 65536.0, 32768.0]
    assert [value for name, value in module.logged if name == "amp/skipped_steps"] == [1.0, 1.0, 1.0, 2.0]
    restored = LossScaleMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert restored.skipped_steps == 2


def test_reads_the_device_counts_on_logging_steps_only() -> None:
    scaler = _Scaler(65536.0)
    trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler), global_step=1, log_every_n_steps=3)
    module, monitor = _Module(), LossScaleMonitor()
    for step, scale in enumerate([32768.0, 16384.0, 16384.0, 8192.0], start=1):
        trainer.global_step = step
        _step(monitor, trainer, module, scale)
    # logging steps are those where global_step + 1 is a multiple of 3: step 2 and step 5 (not reached)
    assert module.logged == [("amp/loss_scale", 16384.0), ("amp/skipped_steps", 2.0)]
    assert monitor.state_dict() == {"skipped_steps": 3}  # a checkpoint reads what is still on the device


def test_is_silent_without_a_grad_scaler() -> None:
    trainer = SimpleNamespace(precision_plugin=SimpleNamespace(), global_step=0, log_every_n_steps=1)
    module, monitor = _Module(), LossScaleMonitor()
    monitor.on_before_optimizer_step(trainer, module, None)  # type: ignore[arg-type]
    monitor.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]
    assert module.logged == [] and monitor.skipped_steps == 0
