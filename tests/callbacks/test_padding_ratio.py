import csv
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader, Dataset, TensorDataset

from seqlit.callbacks.padding_ratio import PaddingRatioMonitor
from seqlit.data.bucketing import BucketBatchSampler, random_batches
from seqlit.data.collate import Sample, SequenceCollator
from seqlit.padding import padding_ratio, random_batching_padding_ratio
from seqlit.types import SeqBatch

N_ITEMS = 200
N_FEATURES = 2
N_CLASSES = 3
BATCH_SIZE = 16
# The token cap keeps the long tail's batches small, so bucketing stays under 5% padding on 200 items.
MAX_TOKENS = 256


def long_tailed_lengths(n_items: int = N_ITEMS, seed: int = 0) -> np.ndarray:
    """Lognormal lengths in 1..200 (median ~20, tail to ~150), like real sequence data."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(mean=3.0, sigma=1.0, size=n_items)), 1, 200).astype(np.int64)


class LongTailedDataset(Dataset[Sample]):
    """Random (T, F) float sequences with long-tailed lengths and a class label; exposes `.lengths`."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.lengths = lengths
        generator = torch.Generator().manual_seed(0)
        self.items = [torch.randn(int(length), N_FEATURES, generator=generator) for length in lengths]
        self.targets = torch.randint(0, N_CLASSES, (len(lengths),), generator=generator)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return {"index": index, "inputs": self.items[index], "target": self.targets[index]}


class TinyGRUClassifier(pl.LightningModule):
    """A packed GRU over (B, T, F) inputs with a linear head: just enough to train on a `SeqBatch`."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(N_FEATURES, 8, batch_first=True)
        self.head = nn.Linear(8, N_CLASSES)

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        packed = pack_padded_sequence(batch.inputs, batch.lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)  # (1, B, H)
        logits = self.head(hidden[-1])  # (B, C)
        return F.cross_entropy(logits, batch.targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class BatchProbe(pl.Callback):
    """Records the padding counts of every training batch, as the hand-computed reference."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []  # (epoch, n_tokens, n_pad)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: SeqBatch, batch_idx: int) -> None:
        lengths = batch.lengths.tolist()
        n_tokens = sum(lengths)
        # Recomputed from the lengths rather than copied from the batch's own counts.
        self.batches.append((trainer.current_epoch, n_tokens, len(lengths) * max(lengths) - n_tokens))


def bucketed_loader(dataset: LongTailedDataset) -> DataLoader:
    sampler = BucketBatchSampler(dataset.lengths.tolist(), batch_size=BATCH_SIZE, max_tokens=MAX_TOKENS, seed=0)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=SequenceCollator())


def plain_loader(dataset: LongTailedDataset) -> DataLoader:
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, collate_fn=SequenceCollator(),
                      generator=torch.Generator().manual_seed(0))


def fit(loader: DataLoader, callbacks: list[pl.Callback], max_epochs: int = 1,
        model: pl.LightningModule | None = None, logger: Any = False, log_every_n_steps: int = 1) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, logger=logger, log_every_n_steps=log_every_n_steps,
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model or TinyGRUClassifier(), train_dataloaders=loader)
    return trainer


def read_metrics(trainer: pl.Trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


def padding_warnings(records: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in records if "were padding" in str(w.message)]


@pytest.fixture(scope="module")
def dataset() -> LongTailedDataset:
    return LongTailedDataset(long_tailed_lengths())


@pytest.fixture
def lightning_info_lines() -> Iterator[list[str]]:
    """Messages sent to Lightning's logger, which does not propagate to the root (so caplog misses them)."""
    lines: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Recorder(level=logging.INFO)
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(handler)
    yield lines
    lightning_logger.removeHandler(handler)


def test_logged_values_match_hand_computed_padding(
    dataset: LongTailedDataset, tmp_path: Path, lightning_info_lines: list[str]
) -> None:
    probe = BatchProbe()
    trainer = fit(bucketed_loader(dataset), [PaddingRatioMonitor(), probe], max_epochs=2,
                  logger=CSVLogger(tmp_path))
    rows = read_metrics(trainer)

    expected_steps = [pad / (tokens + pad) for _, tokens, pad in probe.batches]
    assert column(rows, "data/padding_ratio") == pytest.approx(expected_steps, abs=1e-6)
    tokens_per_sec = column(rows, "data/tokens_per_sec")
    assert len(tokens_per_sec) == len(probe.batches) and all(rate > 0 for rate in tokens_per_sec)

    epoch_values = column(rows, "data/padding_ratio_epoch")
    assert len(epoch_values) == 2
    for epoch, logged in enumerate(epoch_values):
        counts = [(tokens, pad) for e, tokens, pad in probe.batches if e == epoch]
        weighted = sum(pad for _, pad in counts) / sum(tokens + pad for tokens, pad in counts)
        unweighted = float(np.mean([pad / (tokens + pad) for tokens, pad in counts]))
        # The data must tell the two apart, or this test could not catch an unweighted mean.
        assert abs(weighted - unweighted) > 1e-3
        assert logged == pytest.approx(weighted, abs=1e-6)
    assert len(column(rows, "data/tokens_per_sec_epoch")) == 2
    assert all(rate > 0 for rate in column(rows, "data/tokens_per_sec_epoch"))

    # Independent reference: the data layer's own random batching, same batch size and seeds 0..4.
    lengths = dataset.lengths.tolist()
    reference = np.mean([padding_ratio(lengths, random_batches(N_ITEMS, BATCH_SIZE, seed=s)) for s in range(5)])
    assert column(rows, "data/padding_ratio_random") == pytest.approx([reference] * 2, abs=1e-5)
    assert reference > 0.5
    comparison = [line for line in lightning_info_lines if line.startswith("padding ratio:")]
    assert comparison == [
        f"padding ratio: this loader {epoch_values[0]:.3f} (first epoch), random batching would give {reference:.3f}"
    ]


def test_bucketing_gives_little_padding_and_only_random_batching_warns(dataset: LongTailedDataset) -> None:
    with warnings.catch_warnings(record=True) as bucketed_records:
        warnings.simplefilter("always")
        bucketed = fit(bucketed_loader(dataset), [PaddingRatioMonitor()])
    assert float(bucketed.callback_metrics["data/padding_ratio_epoch"]) <= 0.05
    assert padding_warnings(bucketed_records) == []

    with pytest.warns(UserWarning, match="bucketing") as plain_records:
        plain = fit(plain_loader(dataset), [PaddingRatioMonitor()], max_epochs=2)
    plain_ratio = float(plain.callback_metrics["data/padding_ratio_epoch"])
    assert plain_ratio >= 0.3
    # Once per fit, though both epochs are over the threshold.
    messages = padding_warnings(list(plain_records))
    assert len(messages) == 1
    # A plain DataLoader's comparison comes from its data set's `lengths`.
    random_ratio = float(plain.callback_metrics["data/padding_ratio_random"])
    assert f"{random_ratio:.1%}" in messages[0]


@pytest.mark.parametrize("every", [3, None], ids=["explicit", "trainer's"])
def test_log_every_n_steps_follows_the_trainer_cadence_across_epochs(
    dataset: LongTailedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int | None
) -> None:
    probe = BatchProbe()
    logged_names: list[str] = []
    original_log = pl.LightningModule.log

    def counting_log(module: pl.LightningModule, name: str, *args: Any, **kwargs: Any) -> None:
        logged_names.append(name)
        original_log(module, name, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", counting_log)
    # 3 does not divide the epoch's batch count, so a per-epoch counter would drift off the trainer's steps
    # and the logger would receive repeated stale values.
    trainer = fit(bucketed_loader(dataset), [PaddingRatioMonitor(log_every_n_steps=every), probe], max_epochs=2,
                  logger=CSVLogger(tmp_path), log_every_n_steps=3)
    assert len(probe.batches) % 3 != 0
    rows = read_metrics(trainer)
    expected = [pad / (tokens + pad) for _, tokens, pad in probe.batches][2::3]
    assert column(rows, "data/padding_ratio") == pytest.approx(expected, abs=1e-6)
    # Only the steps the logger writes go through Lightning's (costly) logging machinery.
    assert logged_names.count("data/padding_ratio") == len(expected)
    assert len(column(rows, "data/tokens_per_sec")) == len(expected)
    # The epoch figures still count every batch, logged or not.
    for epoch, logged in enumerate(column(rows, "data/padding_ratio_epoch")):
        counts = [(tokens, pad) for e, tokens, pad in probe.batches if e == epoch]
        assert logged == pytest.approx(sum(p for _, p in counts) / sum(t + p for t, p in counts), abs=1e-6)


class TensorTupleClassifier(pl.LightningModule):
    """Trains on plain (inputs, targets) tuples, the kind of batch the monitor cannot measure."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(N_FEATURES, 8, batch_first=True)
        self.head = nn.Linear(8, N_CLASSES)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, targets = batch
        _, hidden = self.rnn(inputs)  # (1, B, H)
        return F.cross_entropy(self.head(hidden[-1]), targets)  # (B, C) logits

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_other_batch_types_are_skipped_with_one_warning() -> None:
    generator = torch.Generator().manual_seed(0)
    tensors = TensorDataset(torch.randn(40, 5, N_FEATURES, generator=generator),
                            torch.randint(0, N_CLASSES, (40,), generator=generator))
    monitor = PaddingRatioMonitor()
    with pytest.warns(UserWarning, match="cannot measure batches of type list") as records:
        trainer = fit(DataLoader(tensors, batch_size=8), [monitor], max_epochs=2, model=TensorTupleClassifier())
    assert trainer.global_step == 10
    assert sum("cannot measure" in str(w.message) for w in records) == 1
    assert not any(key.startswith("data/") for key in trainer.callback_metrics)
    assert monitor.random_ratio is None  # a TensorDataset has no `lengths`, so no comparison


def test_warned_flag_survives_a_checkpoint_and_resets_for_a_new_fit() -> None:
    monitor = PaddingRatioMonitor()
    monitor._warned = True
    restored = PaddingRatioMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert restored.state_dict() == {"warned": True, "batches_seen": 0}
    restored.setup(None, None, stage="validate")  # type: ignore[arg-type]
    assert restored.state_dict()["warned"] is True
    restored.setup(None, None, stage="fit")  # type: ignore[arg-type]
    assert restored.state_dict()["warned"] is False


@settings(max_examples=50, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=80),
    batch_size=st.integers(min_value=1, max_value=12),
    trials=st.integers(min_value=1, max_value=3),
)
def test_random_batching_ratio_matches_the_data_layer(lengths: list[int], batch_size: int, trials: int) -> None:
    ratios = [padding_ratio(lengths, random_batches(len(lengths), batch_size, seed=s)) for s in range(trials)]
    expected = float(np.mean(ratios))
    assert random_batching_padding_ratio(lengths, batch_size, trials) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warn_above": -0.1},
        {"warn_above": 1.5},
        {"warn_above": math.nan},
        {"warn_above": True},
        {"warn_above": "0.3"},
        {"log_every_n_steps": 0},
        {"log_every_n_steps": 2.5},
        {"log_every_n_steps": True},
        {"random_trials": 0},
        {"random_trials": -3},
        {"compare_random": "yes"},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        PaddingRatioMonitor(**kwargs)


@pytest.mark.parametrize(
    ("lengths", "batch_size", "trials", "match"),
    [([], 4, 1, "lengths"), ([3, -1], 4, 1, "lengths"), ([1.5, 2.0], 4, 1, "lengths"),
     ([3, 4], 0, 1, "batch_size"), ([3, 4], 2, 0, "trials")],
)
def test_random_batching_ratio_rejects_bad_input(lengths: list[Any], batch_size: int, trials: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_batching_padding_ratio(lengths, batch_size, trials)
