from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from seqlit.callbacks.nonfinite_guard import NonFiniteGuard
from seqlit.data.collate import Sample, SequenceCollator
from seqlit.errors import NonFiniteLossError
from seqlit.tasks.classifier import SequenceClassifier
from tests.builders import spec


class _PoisonedClassifier(SequenceClassifier):
    """Returns a NaN loss on the chosen global steps."""

    def __init__(self, poisoned_steps: set[int]) -> None:
        super().__init__(3, 2, encoder=spec("seqlit.nn.RNNEncoder", bidirectional=True),
                         head=spec("seqlit.nn.ClassificationHead", dropout=0.0))
        self.poisoned_steps = poisoned_steps
        self.weights_at_step: dict[int, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.weights_at_step[self.global_step] = self.head.output.weight.detach().clone()
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step in self.poisoned_steps else loss


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    samples = [
        Sample(index=i, inputs=torch.randn(3 + i % 4, 3, generator=generator), target=torch.tensor(i % 2))
        for i in range(40)
    ]
    return DataLoader(samples, batch_size=4, collate_fn=SequenceCollator())


def _trainer(tmp_path: Path, guard: NonFiniteGuard, max_steps: int) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[guard, ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True)],
        default_root_dir=tmp_path, gradient_clip_val=1.0,
    )


def test_single_nan_step_is_skipped_and_training_goes_on(tmp_path: Path) -> None:
    model = _PoisonedClassifier({3})
    guard = NonFiniteGuard(max_consecutive=3)
    with pytest.warns(UserWarning, match="non-finite loss or gradients at global step 3"):
        _trainer(tmp_path, guard, max_steps=6).fit(model, _loader())
    assert guard.total_skipped == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(model.weights_at_step[2], model.weights_at_step[3])  # good steps still learn


def test_nan_step_leaves_weights_and_optimizer_untouched(tmp_path: Path) -> None:
    model = _PoisonedClassifier({3})
    trainer = _trainer(tmp_path, NonFiniteGuard(max_consecutive=3), max_steps=5)
    trainer.fit(model, _loader())
    # Lightning counts a skipped step as a step, so the weights seen at steps 3 and 4 are equal.
    assert torch.equal(model.weights_at_step[3], model.weights_at_step[4])
    adam_state = trainer.optimizers[0].state[model.head.output.weight]
    assert int(adam_state["step"]) == 4  # five steps, one skipped: moments saw four updates


def test_consecutive_nans_stop_training_and_keep_last_good_checkpoint(tmp_path: Path) -> None:
    model = _PoisonedClassifier(set(range(4, 100)))
    with pytest.raises(NonFiniteLossError, match=r"global step 6 .*3 consecutive"):
        _trainer(tmp_path, NonFiniteGuard(max_consecutive=3), max_steps=20).fit(model, _loader())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    saved = last["state_dict"]["head.output.weight"]
    assert torch.isfinite(saved).all()
    # the newest checkpoint holds the weights of the last good step
    torch.testing.assert_close(saved, model.weights_at_step[4])


def test_bad_argument() -> None:
    with pytest.raises(ValueError, match="max_consecutive"):
        NonFiniteGuard(max_consecutive=0)


def test_skip_count_is_logged_on_the_trainers_logging_steps_and_on_every_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[int, float]] = []  # (global step, value) of each train/nonfinite_steps log call
    original_log = pl.LightningModule.log

    def recording_log(module: pl.LightningModule, name: str, value: float, *args: Any, **kwargs: Any) -> None:
        if name == "train/nonfinite_steps":
            logged.append((module.global_step, float(value)))
        original_log(module, name, value, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", recording_log)
    trainer = pl.Trainer(
        max_steps=8, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        log_every_n_steps=4, default_root_dir=tmp_path, callbacks=[NonFiniteGuard(max_consecutive=3)],
    )
    with pytest.warns(UserWarning, match="global step 1"):
        trainer.fit(_PoisonedClassifier({1}), _loader())
    assert logged == [(1, 1.0), (3, 1.0), (7, 1.0)]  # the skip at step 1, then steps 4 and 8 (1-based)


class _FusedPoisonedClassifier(_PoisonedClassifier):
    """The same, with torch's fused AdamW: the guard skips on the device through the optimizer's found_inf."""

    def __init__(self, poisoned_steps: set[int]) -> None:
        super().__init__(poisoned_steps)
        self.optimizer_factory = spec("torch.optim.AdamW", lr=3e-3, fused=True)


def test_with_a_fused_optimizer_the_skip_happens_on_the_device_without_host_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _FusedPoisonedClassifier({3})
    guard = NonFiniteGuard(max_consecutive=3)
    reads: list[int] = []  # global steps at which the guard moved its counts to the host
    original = NonFiniteGuard._read

    def counting_read(self: NonFiniteGuard) -> tuple[int, int]:
        if self._pending is not None:
            reads.append(trainer.global_step)
        return original(self)

    monkeypatch.setattr(NonFiniteGuard, "_read", counting_read)
    trainer = pl.Trainer(max_steps=8, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, log_every_n_steps=4, default_root_dir=tmp_path,
                         gradient_clip_val=1.0, callbacks=[guard])
    with pytest.warns(UserWarning, match="non-finite loss or gradients at global step 3 .*1 optimizer step"):
        trainer.fit(model, _loader())
    assert guard.total_skipped == 1 and guard.consecutive == 0
    assert torch.equal(model.weights_at_step[3], model.weights_at_step[4])  # the NaN step changed nothing
    assert int(trainer.optimizers[0].state[model.head.output.weight]["step"]) == 7  # 8 steps, one skipped
    assert reads == [3, 7]  # the two logging steps (global steps 3 and 7 before their update), not every step


def test_with_a_fused_optimizer_a_run_of_bad_steps_stops_at_the_next_logging_step(tmp_path: Path) -> None:
    model = _FusedPoisonedClassifier(set(range(2, 100)))
    trainer = pl.Trainer(max_steps=20, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, log_every_n_steps=4, default_root_dir=tmp_path,
                         callbacks=[NonFiniteGuard(max_consecutive=3)])
    with pytest.raises(NonFiniteLossError, match=r"global step 7 .*: 6 consecutive"):
        trainer.fit(model, _loader())
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---- non-finite validation metrics (issue 21) -----------------------------------------------------------------


class _NaNValidation(SequenceClassifier):
    """Trains normally; its validation loss (the monitored metric) is NaN, as an overflowing forecast's MASE was."""

    def __init__(self) -> None:
        super().__init__(3, 2, encoder=spec("seqlit.nn.RNNEncoder", hidden_size=8),
                         head=spec("seqlit.nn.ClassificationHead", dropout=0.0))

    def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.log("val/loss", float("nan"), batch_size=4)


def test_a_nonfinite_validation_metric_stops_the_run_and_no_best_checkpoint_is_kept(tmp_path: Path) -> None:
    from seqlit.callbacks.best_checkpoint import BestCheckpoint
    from seqlit.errors import NonFiniteMetricError

    best = BestCheckpoint(dirpath=tmp_path)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[NonFiniteGuard(), best])
    with pytest.raises(NonFiniteMetricError, match=r"run stopped at epoch 0 \(global step 2\): val/loss=nan\. "
                                                   r"The numbers overflowed") as caught:
        trainer.fit(_NaNValidation(), train_dataloaders=_loader(), val_dataloaders=_loader())
    assert "\n" not in str(caught.value)
    assert list(tmp_path.glob("*.ckpt")) == []


def test_best_checkpoint_never_selects_a_nonfinite_score(tmp_path: Path) -> None:
    from seqlit.callbacks.best_checkpoint import BestCheckpoint

    best = BestCheckpoint(dirpath=tmp_path, monitor="val/mase")
    trainer = pl.Trainer(logger=False, enable_progress_bar=False)
    for value in (float("nan"), float("inf")):
        assert not best.check_monitor_top_k(trainer, torch.tensor(value))
    assert best.check_monitor_top_k(trainer, torch.tensor(0.5))  # nothing saved yet: a finite score is kept
