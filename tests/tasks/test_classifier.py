import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from seqlit.data.collate import Sample, SequenceCollator
from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.errors import CheckpointMismatchError
from seqlit.tasks.classifier import SequenceClassifier
from tests.custom_cells import IndRNNCell


def _batch(lengths: list[int], n_features: int = 4):
    samples = [Sample(index=i, inputs=torch.randn(n, n_features), target=torch.tensor(i % 3)) for i, n in enumerate(lengths)]
    return samples, SequenceCollator()(samples)


def _encoder(cell: object, **init_args: object) -> dict:
    return {"class_path": "seqlit.nn.RNNEncoder", "init_args": {"cell": cell, "num_layers": 2, **init_args}}


@pytest.mark.parametrize("pooling", ["last", "mean", "attention", "mean_max"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "tests.custom_cells.IndRNNCell"])
def test_logits_do_not_depend_on_batch_padding(pooling: str, cell: str) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(n_features=4, n_classes=3, encoder=_encoder(cell, bidirectional=True),
                               pooling=pooling).eval()
    samples, batch = _batch([5, 1, 9, 3])
    logits = model(batch.inputs, batch.lengths, batch.mask)
    assert logits.shape == (4, 3)
    for row, sample in enumerate(samples):
        alone = SequenceCollator()([sample])
        torch.testing.assert_close(logits[row], model(alone.inputs, alone.lengths, alone.mask)[0], rtol=1e-5, atol=1e-6)


def test_evaluation_loss_is_the_per_item_mean_over_unequal_batches() -> None:
    """val/loss weights each batch by its items (as one big batch would), not each batch equally."""
    torch.manual_seed(0)
    model = SequenceClassifier(n_features=4, n_classes=3)
    samples, whole = _batch([5, 1, 9, 3, 7, 2, 4])
    loader = DataLoader(samples, batch_sampler=[[0, 1, 2, 3, 4], [5], [6]], collate_fn=SequenceCollator())
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(model, loader, verbose=False)[0]["val/loss"]
    with torch.no_grad():
        logits = model.eval()(whole.inputs, whole.lengths, whole.mask)  # (B, C)
    expected = torch.nn.functional.cross_entropy(logits, whole.targets)
    assert logged == pytest.approx(float(expected), rel=1e-6)


def test_parts_can_be_classes_partials_or_specs_and_hparams_stay_plain_data() -> None:
    """From Python, a part may be given as a class or a partial; the saved hyperparameters are specs, so a
    checkpoint holds plain data and rebuilds the same model."""
    import functools

    from seqlit.nn import RNNEncoder

    model = SequenceClassifier(4, 3, encoder=functools.partial(RNNEncoder, hidden_size=8, cell=IndRNNCell))
    assert model.hparams.encoder == {
        "class_path": "seqlit.nn.encoders.RNNEncoder",
        "init_args": {"hidden_size": 8, "cell": {"class_path": "tests.custom_cells.IndRNNCell", "init_args": {}}},
    }
    rebuilt = SequenceClassifier(**model.hparams)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    assert isinstance(rebuilt.encoder.cells[0], IndRNNCell)


def test_checkpoint_with_other_classes_is_refused() -> None:
    model = SequenceClassifier(n_features=4, n_classes=2, class_names=["a", "b"])
    with pytest.raises(CheckpointMismatchError, match="classes"):
        model.on_load_checkpoint({"hyper_parameters": {"class_names": ["a", "c"]}})


def test_model_learns_japanese_vowels_quickly() -> None:
    pl.seed_everything(0)
    datamodule = SequenceClassificationDataModule(loader=LoaderSettings(batch_size=16))
    model = SequenceClassifier(datamodule.n_features, datamodule.n_classes, datamodule.classes)
    trainer = pl.Trainer(
        max_epochs=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=1.0,
    )
    untrained = trainer.validate(model, datamodule=datamodule, verbose=False)[0]["val/acc"]
    trainer.fit(model, datamodule=datamodule)
    accuracy = trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"]
    print(f"untrained val acc {untrained:.3f}, test acc after 12 epochs {accuracy:.3f}")
    assert untrained < 0.4
    assert accuracy > 0.9
