"""Sequence classification data: JapaneseVowels or the user's long-format file, split, audited,
normalised on train only, bucketed by length."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

import numpy as np

from seqlit.data.collate import SequenceCollator
from seqlit.data.datasets import SequenceClassificationDataset
from seqlit.data.datamodules.base import LoaderSettings, SeqlitDataModule, Stage
from seqlit.data.normalise import FeatureNormalizer
from seqlit.data.sources import SequenceRecords, load_japanese_vowels, load_long_format
from seqlit.data.split_audit import audit
from seqlit.data.split_values import format_time
from seqlit.data.splits import EmptySplitError, Split, chronological_split, entity_split, stratified_split
from seqlit.errors import DataError, check_checkpoint_matches

DEFAULT_LOADER = LoaderSettings(batch_size=32)
DEFAULT_MAX_LENGTH = 10_000  # steps; a size guard, far above real sequence classification data


class SequenceClassificationDataModule(SeqlitDataModule):
    """Classifies whole variable-length multivariate sequences.

    Args:
        dataset: `japanese_vowels` (bundled via aeon, official 270/370 split) or `long_format`
            (`train_path`, optional `test_path`: `entity, time, features..., label` rows).
        split: how validation (and test, without a test file) is carved from the training data:
            `stratified` by class, `chronological` by time, or `entity` (whole entities held out).
            The leakage audit for that mode runs on every setup.
        max_length / too_long: longest sequence allowed (default `DEFAULT_MAX_LENGTH` = 10,000 steps, so a
            runaway sequence is refused before it is unrolled; null: no limit) and what to do with longer ones
            (`error`, or truncate with `keep_first` / `keep_last`).
        loader: batching and loading (`LoaderSettings`); None: `DEFAULT_LOADER`, 32 sequences per batch (also in
            evaluation), bucketed by length.
    """

    default_task = "seqlit.tasks.SequenceClassifier"

    def __init__(
        self,
        dataset: Literal["japanese_vowels", "long_format"] = "japanese_vowels",
        train_path: str | None = None,
        test_path: str | None = None,
        predict_path: str | None = None,
        entity_column: str = "entity",
        time_column: str = "time",
        label_column: str = "label",
        sequence_column: str | None = None,
        feature_columns: list[str] | None = None,
        split: Literal["stratified", "chronological", "entity"] = "stratified",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        normalize: bool = True,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        too_long: Literal["error", "keep_first", "keep_last"] = "error",
        loader: LoaderSettings | None = None,
    ) -> None:
        super().__init__(loader or DEFAULT_LOADER)
        if dataset == "long_format" and train_path is None:
            raise DataError("dataset 'long_format' needs data.train_path (a CSV/TSV/Parquet file).")
        if dataset not in ("japanese_vowels", "long_format"):
            raise DataError(f"unknown dataset {dataset!r}; choose 'japanese_vowels' or 'long_format'.")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise DataError(f"data.{name} must be in [0, 1), got {value}.")
        self.dataset = dataset
        self.train_path = train_path
        self.test_path = test_path
        self.predict_path = predict_path
        self.column_names = {
            "entity_column": entity_column,
            "time_column": time_column,
            "label_column": label_column,
            "sequence_column": sequence_column,
            "feature_columns": feature_columns,
        }
        self.split_mode = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        if too_long not in ("error", "keep_first", "keep_last"):
            raise DataError(f"data.too_long must be 'error', 'keep_first' or 'keep_last', got {too_long!r}.")
        if max_length is not None and max_length < 1:
            raise DataError(f"data.max_length must be a positive number of steps (null: no limit), got {max_length}.")
        self.max_length = max_length
        self.too_long = too_long
        self.normalizer = FeatureNormalizer() if normalize else None
        self.collate = SequenceCollator()

    # Sizes the CLI links into the model (apply_on="instantiate"): known before `setup`.
    @property
    def n_features(self) -> int:
        return len(self._splits["train"].feature_names)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def longest_sequence(self) -> int:
        """Steps in the longest training sequence (after `max_length`), for front-ends that size strides by it."""
        return max(len(sequence) for sequence in self._splits["train"].sequences)

    @property
    def classes(self) -> list[str]:
        """Class names, fitted on the training split only, in index order."""
        return _sorted_labels(self._splits["train"].labels)

    def setup(self, stage: str) -> None:
        class_to_index = {name: i for i, name in enumerate(self.classes)}
        if self.normalizer is not None and not self.normalizer.is_fitted:
            self.normalizer.fit(self._splits["train"].sequences)
        for name, records in self._splits.items():
            self.datasets[name] = SequenceClassificationDataset(records, class_to_index, self.normalizer)
        if stage == "predict":
            if self.predict_path is None:
                raise DataError("`seqlit predict` needs data.predict_path: the file to label.")
            records = self._clip(self._load_file(self.predict_path, require_labels=False), "predict")
            records = _in_training_column_order(records, list(self._splits["train"].feature_names), self.predict_path)
            if records.labels is not None:
                self._check_labels("predict", records, class_to_index)
            self.datasets["predict"] = SequenceClassificationDataset(records, class_to_index, self.normalizer)

    def item_ids(self, stage: Stage) -> np.ndarray:
        """Sequence ids of a split's items, by dataset index (used to label predictions)."""
        return self.datasets[stage].records.sequence_ids

    def state_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "feature_names": list(self._splits["train"].feature_names),
            "normalizer": None if self.normalizer is None else self.normalizer.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, what, current in (("classes", "classes", self.classes),
                                   ("feature_names", "feature columns", self._splits["train"].feature_names)):
            check_checkpoint_matches(what, state_dict.get(key), list(current),
                                     fix="use the same data/columns as in training, or start a new run.")
        if self.normalizer is not None and state_dict.get("normalizer"):
            self.normalizer.load_state_dict(state_dict["normalizer"])

    # ---- helpers -------------------------------------------------------------------------------
    @cached_property
    def _splits(self) -> dict[Stage, SequenceRecords]:
        """Loads the source and splits it once; audited before anything sees it."""
        if self.dataset == "japanese_vowels":
            train_records = load_japanese_vowels("train")
            test_records: SequenceRecords | None = load_japanese_vowels("test")
        else:
            assert self.train_path is not None
            train_records = self._load_file(self.train_path, require_labels=True)
            test_records = None if self.test_path is None else self._load_file(self.test_path, require_labels=True)
        split = self._split(train_records, carve_test=test_records is None)
        splits: dict[Stage, SequenceRecords] = {
            "train": train_records.subset(split.train),
            "val": train_records.subset(split.val),
            "test": train_records.subset(split.test) if test_records is None else test_records,
        }
        if test_records is not None and self.split_mode != "stratified":
            self._audit_separate_test(splits)
        for name, records in splits.items():
            if len(records) == 0:
                raise DataError(
                    f"the {name} split is empty; raise data.{name}_fraction or provide more data."
                )
        classes = _sorted_labels(splits["train"].labels)
        if len(classes) < 2:
            raise DataError(
                f"the training split has a single class ({classes[0]!r}): nothing to tell apart. Classification needs "
                f"at least 2 classes in the label column {self.column_names['label_column']!r} (data.label_column); "
                "check that column and the file."
            )
        clipped = {name: self._clip(records, name) for name, records in splits.items()}
        # Checked here, not in setup: a label unseen in training fails before the Trainer and its logs exist.
        class_to_index = {name: i for i, name in enumerate(_sorted_labels(clipped["train"].labels))}
        for name, records in clipped.items():
            self._check_labels(name, records, class_to_index)
        return clipped

    def _split(self, records: SequenceRecords, carve_test: bool) -> Split:
        test_fraction = self.test_fraction if carve_test else 0.0
        if self.split_mode == "stratified":
            assert records.labels is not None
            train, val = stratified_split(records.labels, val_fraction=self.val_fraction, seed=self.split_seed)
            test = np.array([], dtype=np.int64)
            if carve_test:
                train_pos, test_pos = stratified_split(
                    records.labels[train], val_fraction=test_fraction / (1.0 - self.val_fraction), seed=self.split_seed
                )
                train, test = train[train_pos], train[test_pos]
            split = Split(train=np.sort(train), val=np.sort(val), test=np.sort(test))
            audit(split, mode="none")
        elif self.split_mode == "chronological":
            _check_shared_time_axis(records.start_times)
            try:
                split = chronological_split(
                    records.start_times,
                    records.end_times,
                    val_fraction=self.val_fraction,
                    test_fraction=test_fraction,
                )
            except EmptySplitError as error:
                # chronological_split's own fix names its function arguments; the data module has fractions only.
                raise EmptySplitError(
                    f"{str(error).split(' Fix:')[0]} Fix: lower data.val_fraction / data.test_fraction, provide "
                    "more data, or use split: stratified (the default) or split: entity."
                ) from None
            audit(split, entities=records.entities, start_times=records.start_times,
                  end_times=records.end_times, mode="chronological")
        elif self.split_mode == "entity":
            split = entity_split(
                records.entities, val_fraction=self.val_fraction, test_fraction=test_fraction, seed=self.split_seed
            )
            audit(split, entities=records.entities, mode="entity")
        else:
            raise DataError(f"unknown split {self.split_mode!r}; choose 'stratified', 'chronological' or 'entity'.")
        return split

    def _audit_separate_test(self, splits: dict[Stage, SequenceRecords]) -> None:
        """A separate test file must respect the same split rule as a carved one."""
        merged = _concatenate([splits["train"], splits["val"], splits["test"]])
        sizes = np.cumsum([0] + [len(splits[k]) for k in ("train", "val", "test")])
        split = Split(
            train=np.arange(sizes[0], sizes[1]), val=np.arange(sizes[1], sizes[2]), test=np.arange(sizes[2], sizes[3])
        )
        if self.split_mode == "chronological":
            audit(split, entities=merged.entities, start_times=merged.start_times,
                  end_times=merged.end_times, mode="chronological")
        else:
            audit(split, entities=merged.entities, mode="entity")

    def _load_file(self, path: str, require_labels: bool) -> SequenceRecords:
        return load_long_format(path, require_labels=require_labels, **self.column_names)

    def _clip(self, records: SequenceRecords, name: str) -> SequenceRecords:
        """Applies the `max_length` policy; an over-long sequence is never cut silently."""
        if self.max_length is None:
            return records
        too_long = np.flatnonzero(records.lengths > self.max_length)
        if len(too_long) == 0:
            return records
        if self.too_long == "error":
            first = int(too_long[0])
            raise DataError(
                f"{len(too_long)} {name} sequence(s) are longer than data.max_length={self.max_length} "
                f"(e.g. {str(records.sequence_ids[first])!r} with {records.lengths[first]} steps). Raise "
                "max_length, or set data.too_long to 'keep_first' or 'keep_last' to truncate."
            )
        keep = slice(None, self.max_length) if self.too_long == "keep_first" else slice(-self.max_length, None)
        clipped = [s[keep] if len(s) > self.max_length else s for s in records.sequences]
        return SequenceRecords(
            sequences=clipped, labels=records.labels, entities=records.entities,
            start_times=records.start_times, end_times=records.end_times,
            feature_names=records.feature_names, sequence_ids=records.sequence_ids,
        )

    def _check_labels(self, name: str, records: SequenceRecords, class_to_index: dict[str, int]) -> None:
        if records.labels is None:
            return
        unknown = sorted(set(records.labels) - set(class_to_index))
        if unknown:
            shown = [str(label) for label in unknown[:10]]
            raise DataError(
                f"the {name} split has label(s) {shown} never seen in the training split "
                f"(classes: {list(class_to_index)[:20]}); the model cannot predict them. Remove those "
                "sequences or make sure the training split contains every class."
            )



def _check_shared_time_axis(start_times: np.ndarray) -> None:
    """A chronological split cuts one time axis that all sequences share; when most sequences start at the
    same time stamp (time restarts at 0 in every sequence, as in recordings or sessions), no cut by time
    can separate them, so this refuses the split and names the ones that fit."""
    if len(start_times) < 2:
        return
    stamps, counts = np.unique(start_times, return_counts=True)
    most = int(counts.argmax())
    if counts[most] * 2 > len(start_times):
        raise DataError(
            f"split: chronological needs sequences on one shared time axis, but {counts[most]} of "
            f"{len(start_times)} sequences start at time {format_time(stamps[most])} (time restarts in every sequence), "
            "so no cut by time can separate them. Use split: stratified (the default: held-out sequences in every "
            "class's proportion) or split: entity (whole entities held out)."
        )


def _sorted_labels(labels: np.ndarray | None) -> list[str]:
    """Unique labels, numerically ordered when they are all numbers ('2' before '10')."""
    if labels is None:
        raise DataError("the training data has no label column; classification needs labels.")
    unique = sorted(set(labels.tolist()))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _in_training_column_order(records: SequenceRecords, trained: list[str], path: str) -> SequenceRecords:
    """The predict file's features in the order the model was trained with (the checkpoint stores that order,
    checked against the training file on load); other columns are refused rather than fed in silently."""
    found = list(records.feature_names)
    if found == trained:
        return records
    if sorted(found) != sorted(trained):
        missing, extra = [c for c in trained if c not in found], [c for c in found if c not in trained]
        raise DataError(
            f"the predict file {path} has feature columns {found} but the model was trained with {trained} "
            f"(missing {missing}, not in training {extra}). Fix: give the predict file the training file's feature "
            "columns, or set data.feature_columns to the training columns."
        )
    order = [found.index(name) for name in trained]
    return SequenceRecords(
        sequences=[sequence[:, order] for sequence in records.sequences], labels=records.labels,
        entities=records.entities, start_times=records.start_times, end_times=records.end_times,
        feature_names=list(trained), sequence_ids=records.sequence_ids,
    )


def _concatenate(parts: list[SequenceRecords]) -> SequenceRecords:
    return SequenceRecords(
        sequences=[s for part in parts for s in part.sequences],
        labels=None,
        entities=np.concatenate([p.entities for p in parts]),
        start_times=np.concatenate([p.start_times for p in parts]),
        end_times=np.concatenate([p.end_times for p in parts]),
        feature_names=parts[0].feature_names,
        sequence_ids=np.concatenate([p.sequence_ids for p in parts]),
    )
