from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqlit.data.bucketing import random_batches
from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.data.splits import LeakageError
from seqlit.errors import CheckpointMismatchError, DataError
from seqlit.padding import padding_ratio


@pytest.fixture(scope="module")
def vowels() -> SequenceClassificationDataModule:
    datamodule = SequenceClassificationDataModule(loader=LoaderSettings(batch_size=16))
    datamodule.setup("fit")
    return datamodule


def _series_csv(path: Path, n_entities: int = 6, per_entity: int = 5, seed: int = 0) -> Path:
    """Each entity has several labelled sequences one after another in time."""
    rng = np.random.default_rng(seed)
    rows = []
    for entity in range(n_entities):
        start = 0
        for sequence in range(per_entity):
            label = "up" if (entity + sequence) % 2 else "down"
            length = int(rng.integers(3, 9))
            for step in range(length):
                rows.append(
                    {
                        "entity": f"e{entity}",
                        "seq": f"e{entity}-{sequence}",
                        "time": start + step,
                        "x": rng.normal() + (step if label == "up" else -step),
                        "label": label,
                    }
                )
            start += length
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_vowels_sizes_and_official_test_split(vowels: SequenceClassificationDataModule) -> None:
    assert vowels.n_features == 12 and vowels.n_classes == 9
    assert vowels.classes == [str(i) for i in range(1, 10)]
    sizes = {name: len(ds) for name, ds in vowels.datasets.items()}
    assert sizes["train"] + sizes["val"] == 270 and sizes["test"] == 370
    train_labels = vowels.datasets["train"].targets
    val_labels = vowels.datasets["val"].targets
    assert set(val_labels.tolist()) == set(range(9))  # stratified: every speaker in validation
    assert len(set(vowels.item_ids("train")) & set(vowels.item_ids("val"))) == 0
    assert len(train_labels) > 200


def test_normaliser_is_fitted_on_train_only(vowels: SequenceClassificationDataModule) -> None:
    train_steps = np.concatenate(vowels.datasets["train"].records.sequences)
    assert vowels.normalizer is not None
    np.testing.assert_allclose(vowels.normalizer.mean, train_steps.mean(axis=0), rtol=1e-5)
    everything = np.concatenate([train_steps, *vowels.datasets["test"].records.sequences])
    assert not np.allclose(vowels.normalizer.mean, everything.mean(axis=0), rtol=1e-5)
    train = vowels.datasets["train"]
    standardised = np.concatenate([train[i]["inputs"].numpy() for i in range(len(train))])
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=1e-4)


def test_bucketing_cuts_padding_on_japanese_vowels(vowels: SequenceClassificationDataModule) -> None:
    lengths = vowels.datasets["train"].lengths.tolist()
    bucketed = [list(b) for b in vowels.train_dataloader().batch_sampler]
    bucketed_ratio = padding_ratio(lengths, bucketed)
    random_ratio = np.mean([padding_ratio(lengths, random_batches(len(lengths), 16, seed)) for seed in range(5)])
    print(f"JapaneseVowels padding ratio: bucketed {bucketed_ratio:.3f}, random {random_ratio:.3f}")
    assert bucketed_ratio < 0.05
    assert random_ratio > 4 * bucketed_ratio


def test_batches_carry_masks_and_padding_stats(vowels: SequenceClassificationDataModule) -> None:
    batch = next(iter(vowels.val_dataloader()))
    assert batch.inputs.shape[0] == batch.lengths.shape[0] == batch.targets.shape[0]
    assert batch.mask.shape == batch.inputs.shape[:2]
    assert batch.n_tokens == int(batch.lengths.sum())
    assert torch.all(batch.inputs[~batch.mask] == 0.0)


def test_state_dict_round_trip_and_mismatch(vowels: SequenceClassificationDataModule) -> None:
    state = vowels.state_dict()
    fresh = SequenceClassificationDataModule(normalize=True)
    fresh.load_state_dict(state)
    np.testing.assert_allclose(fresh.normalizer.mean, vowels.normalizer.mean)
    with pytest.raises(CheckpointMismatchError, match="classes"):
        fresh.load_state_dict({**state, "classes": ["a", "b"]})


@pytest.mark.parametrize("split", ["stratified", "chronological", "entity"])
def test_long_format_splits_are_audited_and_non_empty(tmp_path: Path, split: str) -> None:
    path = _series_csv(tmp_path / "series.csv", n_entities=10)
    datamodule = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(path), sequence_column="seq", split=split,
        val_fraction=0.2, test_fraction=0.2, loader=LoaderSettings(batch_size=4),
    )
    datamodule.setup("fit")
    records = {name: ds.records for name, ds in datamodule.datasets.items()}
    assert all(len(r) > 0 for r in records.values())
    if split == "chronological":
        for entity in set(records["train"].entities):
            latest_train = records["train"].end_times[records["train"].entities == entity].max()
            later = np.concatenate([records[s].start_times[records[s].entities == entity] for s in ("val", "test")])
            assert np.all(later > latest_train)
    if split == "entity":
        assert not set(records["train"].entities) & set(records["test"].entities)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.inputs.shape[-1] == datamodule.n_features == 1


def test_separate_test_file_that_leaks_is_rejected(tmp_path: Path) -> None:
    train = _series_csv(tmp_path / "train.csv", seed=0)
    leaky_test = tmp_path / "test.csv"
    frame = pd.read_csv(train)
    frame[frame["seq"].str.endswith("-0")].assign(seq=lambda f: f["seq"] + "-copy").to_csv(leaky_test, index=False)
    datamodule = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(train), test_path=str(leaky_test), sequence_column="seq",
        split="chronological", val_fraction=0.2,
    )
    with pytest.raises(LeakageError):
        datamodule.setup("fit")


def test_unknown_test_label_and_too_long_sequences(tmp_path: Path) -> None:
    train = _series_csv(tmp_path / "train.csv")
    test = tmp_path / "test.csv"
    pd.DataFrame({"entity": ["z"] * 2, "seq": ["z0"] * 2, "time": [100, 101], "x": [0.0, 1.0], "label": ["sideways"] * 2}).to_csv(
        test, index=False
    )
    datamodule = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(train), test_path=str(test), sequence_column="seq"
    )
    with pytest.raises(DataError, match="sideways.*never seen"):
        datamodule.setup("fit")
    too_long = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(train), sequence_column="seq", max_length=4
    )
    with pytest.raises(DataError, match="max_length=4"):
        too_long.setup("fit")
    clipped = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(train), sequence_column="seq", max_length=4, too_long="keep_last"
    )
    clipped.setup("fit")
    assert max(clipped.datasets["train"].lengths) <= 4


def test_missing_train_path_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="train_path"):
        SequenceClassificationDataModule(dataset="long_format")


def _restarting_csv(path: Path, n_sequences: int = 12) -> Path:
    """Independent recordings whose time restarts at 0 (the README's own-data shape), rows shuffled."""
    rng = np.random.default_rng(0)
    rows = [{"entity": f"s{i}", "time": step, "x": rng.normal(), "label": "abc"[i % 3]}
            for i in range(n_sequences) for step in range(int(rng.integers(3, 9)))]
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(path, index=False)
    return path


def test_the_default_split_fits_sequences_whose_time_restarts(tmp_path: Path) -> None:
    datamodule = SequenceClassificationDataModule(dataset="long_format",
                                                  train_path=str(_restarting_csv(tmp_path / "r.csv")))
    datamodule.setup("fit")
    assert datamodule.split_mode == "stratified"
    assert all(len(datamodule.datasets[name]) > 0 for name in ("train", "val", "test"))


def test_a_chronological_split_of_restarting_time_names_the_splits_that_fit(tmp_path: Path) -> None:
    datamodule = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(_restarting_csv(tmp_path / "r.csv")), split="chronological"
    )
    with pytest.raises(DataError) as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert "12 of 12 sequences start at time 0 (time restarts in every sequence)" in message
    assert "split: stratified" in message and "split: entity" in message and "val_start" not in message


def test_an_empty_chronological_split_names_the_data_modules_own_options(tmp_path: Path) -> None:
    # Three long sequences that overlap in time: no cut leaves one wholly before another.
    rows = [{"entity": f"s{i}", "time": i + step, "x": float(step), "label": "ab"[i % 2]}
            for i in range(3) for step in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "overlap.csv", index=False)
    datamodule = SequenceClassificationDataModule(dataset="long_format", train_path=str(tmp_path / "overlap.csv"),
                                                  split="chronological")
    with pytest.raises(DataError, match="is empty") as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert "data.val_fraction / data.test_fraction" in message and "split: stratified" in message
    assert "move val_start" not in message and "move test_start" not in message
