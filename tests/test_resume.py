"""Interrupt a fit mid-epoch, resume from the last checkpoint, and land on the very same weights."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from tests.builders import classifier

EPOCHS = 2
CRASH_AT_STEP = 23  # inside the second epoch (16 batches per epoch)


class _Crash(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == CRASH_AT_STEP:
            raise RuntimeError("simulated crash")


class _BatchLog(pl.Callback):
    def __init__(self) -> None:
        self.steps: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.steps[trainer.global_step] = batch.indices.tolist()


def _fit(root: Path, extra: list[pl.Callback], ckpt_path: str | None = None, rng_state: bool = True):
    pl.seed_everything(7)
    datamodule = SequenceClassificationDataModule(loader=LoaderSettings(batch_size=16, sampler_seed=3))
    model = classifier(datamodule.n_features, datamodule.n_classes, datamodule.classes, dropout=0.3)
    batches = _BatchLog()
    callbacks = [batches, *extra, ModelCheckpoint(dirpath=root, every_n_train_steps=7, save_last=True)]
    if rng_state:
        callbacks.insert(0, RNGStateCheckpoint())
    trainer = pl.Trainer(
        max_epochs=EPOCHS, default_root_dir=root, logger=False, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, gradient_clip_val=1.0, callbacks=callbacks,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer, batches


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory):
    return _fit(tmp_path_factory.mktemp("full"), [])


def _interrupt(root: Path, rng_state: bool = True) -> Path:
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(root, [_Crash()], rng_state=rng_state)
    last = root / "last.ckpt"
    assert last.exists()
    return last


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path: Path, uninterrupted) -> None:
    full_model, full_trainer, full_batches = uninterrupted
    last = _interrupt(tmp_path)
    saved_step = torch.load(last, weights_only=True)["global_step"]
    assert 16 < saved_step < 32, "the checkpoint must be mid-epoch for this test to mean anything"

    model, trainer, batches = _fit(tmp_path / "resumed", [], ckpt_path=str(last))
    # same batches in the same order from the resume point on (sampler state restored)
    assert min(batches.steps) == saved_step
    assert all(batches.steps[step] == full_batches.steps[step] for step in batches.steps)
    assert trainer.global_step == full_trainer.global_step
    # same LR schedule position
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == full_trainer.lr_scheduler_configs[0].scheduler.last_epoch
    for (name, resumed), (_, full) in zip(model.state_dict().items(), full_model.state_dict().items()):
        assert torch.equal(resumed, full), f"{name} differs after resume"


def test_without_rng_state_dropout_masks_diverge(tmp_path: Path, uninterrupted) -> None:
    """The negative control: the RNG callback is what makes resume exact."""
    full_model = uninterrupted[0]
    last = _interrupt(tmp_path, rng_state=False)
    model, _, _ = _fit(tmp_path / "resumed", [], ckpt_path=str(last), rng_state=False)
    assert not torch.equal(model.head.output.weight, full_model.head.output.weight)
