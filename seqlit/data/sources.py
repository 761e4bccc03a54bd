"""Real data sets and the user's own files, loaded into one record layout.

Every loader returns `SequenceRecords`: one (T, F) float array per sequence plus its label, entity
and time span, so splitting, auditing and normalisation work the same whatever the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from seqlit.data.long_format import python_value, read_long_format, read_table, require_data_file
from seqlit.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # values beyond it overflow to inf in the model


@dataclass
class SequenceRecords:
    """Variable-length multivariate sequences with their labels, entities and time spans."""

    sequences: list[np.ndarray]  # each (T_i, F) float32
    labels: np.ndarray | None  # (N,) str, or None when the file has no label column
    entities: np.ndarray  # (N,) entity id of each sequence
    start_times: np.ndarray  # (N,) first time stamp of each sequence
    end_times: np.ndarray  # (N,) last time stamp of each sequence
    feature_names: list[str]
    sequence_ids: np.ndarray = field(default_factory=lambda: np.array([]))  # (N,) str

    def __post_init__(self) -> None:
        if len(self.sequence_ids) == 0:
            self.sequence_ids = np.array([str(i) for i in range(len(self.sequences))])

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)  # (N,)

    def subset(self, positions: np.ndarray) -> SequenceRecords:
        """The records at `positions`, in that order."""
        return SequenceRecords(
            sequences=[self.sequences[i] for i in positions],
            labels=None if self.labels is None else self.labels[positions],
            entities=self.entities[positions],
            start_times=self.start_times[positions],
            end_times=self.end_times[positions],
            feature_names=list(self.feature_names),
            sequence_ids=self.sequence_ids[positions],
        )


@dataclass
class SeriesPanel:
    """Univariate target series of many entities (a forecasting panel), each ordered by time.

    Missing targets (when the config masks them) are forward-filled in `values` and marked False in
    `observed`, so every consumer sees finite numbers and the loss/metrics can still skip them.
    """

    entities: np.ndarray  # (S,) entity id of each series
    times: list[np.ndarray]  # each (T_i,) time stamps, increasing
    values: list[np.ndarray]  # each (T_i,) float64 target
    observed: list[np.ndarray]  # each (T_i,) bool, False where the target was missing
    covariates: list[np.ndarray]  # each (T_i, C) float64 past-observed covariates (C may be 0)
    covariate_names: list[str]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)  # (S,)

    def time_at(self, series: int, step: int) -> object:
        """The time stamp of `step` in `series`, as the user wrote it (for messages)."""
        return python_value(self.times[series][step])

    def entity(self, series: int) -> object:
        """The entity id of `series` as the user wrote it: 'a' or 3, not np.str_('a') (for messages)."""
        return python_value(self.entities[series])


def load_japanese_vowels(split: Literal["train", "test"]) -> SequenceRecords:
    """JapaneseVowels (UCR/UEA, shipped by `aeon`): 9 speakers uttering /ae/, 12 LPC cepstra per frame.

    The official split is 270 train / 370 test. The class *is* the speaker, so the entity of every
    utterance is its own index: there is no by-entity split to make here.
    """
    if split not in ("train", "test"):
        raise DataError(f"JapaneseVowels has splits 'train' and 'test', not {split!r}.")
    try:
        from aeon.datasets import load_japanese_vowels as aeon_load
    except ImportError as error:  # pragma: no cover - aeon is a dependency
        raise DataError("JapaneseVowels needs the `aeon` package: pip install aeon") from error
    series, labels = aeon_load(split=split)  # list of (F, T_i) arrays, (N,) str
    sequences = [np.ascontiguousarray(np.asarray(x, dtype=np.float32).T) for x in series]  # (T_i, F)
    positions = np.arange(len(sequences))
    return SequenceRecords(
        sequences=sequences,
        labels=np.asarray(labels).astype(str),
        entities=np.array([f"{split}-{i}" for i in positions]),
        start_times=positions,
        end_times=positions,
        feature_names=[f"lpc{i}" for i in range(sequences[0].shape[1])],
        sequence_ids=np.array([f"{split}-{i}" for i in positions]),
    )


def load_long_format(
    path: str | Path,
    *,
    entity_column: str = "entity",
    time_column: str = "time",
    label_column: str | None = "label",
    sequence_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    require_labels: bool = True,
) -> SequenceRecords:
    """Reads a CSV/TSV/Parquet file in long format: one row per time step.

    Columns: `entity, time, features..., label`. Rows with the same `sequence_column` value (or,
    without one, the same entity) form one sequence, ordered by time. `feature_columns` defaults to
    every numeric column that is not entity, time, sequence or label.

    Rows may come in any order: each sequence's steps are sorted by time, so time values must be all
    numbers or all text that sorts in time order (ISO dates). A sequence of a single step is valid.
    Everything else that is wrong (empty or unparseable file, NaN/Inf features, repeated time stamps,
    a sequence with no or several labels) is a `DataError` naming the row or sequence and the fix.
    """
    sequence_key = sequence_column or entity_column
    table = read_long_format(
        path,
        entity_column=entity_column,
        time_column=time_column,
        group_column=sequence_key,
        required=[label_column] if require_labels and label_column is not None else [],
        value_columns=None if feature_columns is None else list(feature_columns),
        reserved=[label_column] if label_column is not None else [],
        finite=True,
        column_options="entity_column / time_column / label_column / sequence_column",
        value_option="data.feature_columns",
        role="feature",
        group_noun="sequence",
        duplicate_hint=" or set sequence_column to tell sequences apart",
    )
    has_labels = label_column is not None and label_column in table.frame.columns
    features = table.value_columns
    sequences: list[np.ndarray] = []
    labels: list[str] = []
    entities: list[object] = []
    starts: list[object] = []
    ends: list[object] = []
    ids: list[str] = []
    for key, group in table.groups():
        times = group[time_column].to_numpy()
        sequences.append(group[features].to_numpy(dtype=np.float32))  # (T, F)
        entity_values = group[entity_column].unique()
        if len(entity_values) != 1:
            raise DataError(f"{path}: sequence {key!r} spans several entities {list(entity_values)[:5]}.")
        entities.append(entity_values[0])
        starts.append(times[0])
        ends.append(times[-1])
        ids.append(str(key))
        if has_labels:
            label_values = group[label_column].dropna().unique()
            if len(label_values) == 0:
                raise DataError(
                    f"{path}: sequence {key!r} has no label (its {label_column!r} cells are all empty). Fix: fill "
                    "in its label, or drop its rows (use a predict file for unlabelled sequences)."
                )
            if len(label_values) != 1:
                raise DataError(
                    f"{path}: sequence {key!r} has {len(label_values)} distinct labels "
                    f"{list(label_values)[:5]}; a classification sequence needs exactly one label."
                )
            labels.append(str(label_values[0]))
    return SequenceRecords(
        sequences=sequences,
        labels=np.array(labels) if has_labels else None,
        entities=np.array(entities),
        start_times=np.array(starts),
        end_times=np.array(ends),
        feature_names=list(features),
        sequence_ids=np.array(ids),
    )


def load_m1_yearly():  # -> pandas.DataFrame
    """The M1 competition's 181 yearly series (Monash archive `.tsf`, shipped inside `aeon`) in long format.

    Columns `entity` (series name), `time` (calendar year) and `target`; the archive's forecast horizon is 6.
    """
    import aeon.datasets
    import pandas as pd
    from aeon.datasets import load_from_tsf_file

    path = Path(aeon.datasets.__file__).parent / "data" / "m1_yearly_dataset" / "m1_yearly_dataset.tsf"
    require_data_file(path)
    frame, _ = load_from_tsf_file(str(path))
    rows = [
        pd.DataFrame(
            {
                "entity": name,
                "time": np.arange(len(values)) + pd.Timestamp(start).year,
                "target": np.asarray(values, dtype=np.float64),
            }
        )
        for name, start, values in zip(frame["series_name"], frame["start_timestamp"], frame["series_value"])
    ]
    return pd.concat(rows, ignore_index=True)


def panel_from_frame(
    frame,  # pandas.DataFrame
    *,
    entity_column: str = "entity",
    time_column: str = "time",
    target_column: str = "target",
    covariate_columns: Sequence[str] = (),
    missing: Literal["error", "mask"] = "error",
    source: str = "data",
) -> SeriesPanel:
    """Long-format rows (`entity, time, target, covariates...`) -> one series per entity, ordered by time.

    A NaN target is an error naming the entity and time unless `missing="mask"`: then leading NaNs of a
    series are dropped, later ones forward-filled and flagged unobserved. Inf targets, NaN covariates and
    repeated time stamps are always errors. Rows are taken as consecutive steps: fill gaps in the time
    index with NaN rows (and mask them) rather than leaving them out.
    """
    if missing not in ("error", "mask"):
        raise DataError(f"data.missing must be 'error' or 'mask', got {missing!r}.")
    table = read_long_format(
        frame,
        entity_column=entity_column,
        time_column=time_column,
        required=[target_column, *covariate_columns],
        value_columns=[target_column, *covariate_columns],
        finite=False,  # missing targets follow data.missing; covariates are checked per series below
        column_options="entity_column / time_column / target_column / covariate_columns",
        role="target or covariate",
        group_noun="entity",
        name=source,
    )
    entities: list[object] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    observed: list[np.ndarray] = []
    covariates: list[np.ndarray] = []
    for entity, group in table.groups():
        stamps = group[time_column].to_numpy()
        target = group[target_column].to_numpy(dtype=np.float64)  # (T,)
        extra = group[list(covariate_columns)].to_numpy(dtype=np.float64).reshape(len(group), -1)  # (T, C)
        _check_series_values(source, entity, stamps, target, extra, list(covariate_columns), target_column, missing)
        is_observed = ~np.isnan(target)
        if not is_observed.any():
            raise DataError(
                f"{source}: entity {python_value(entity)!r} has no observed {target_column!r} value; drop it."
            )
        first = int(np.argmax(is_observed))  # leading missing values carry no information
        target, stamps, extra, is_observed = target[first:], stamps[first:], extra[first:], is_observed[first:]
        entities.append(entity)
        times.append(stamps)
        values.append(_forward_fill(target))
        observed.append(is_observed)
        covariates.append(extra)
    return SeriesPanel(
        entities=np.array(entities),
        times=times,
        values=values,
        observed=observed,
        covariates=covariates,
        covariate_names=list(covariate_columns),
    )


def load_panel(
    path: str | Path,
    *,
    entity_column: str = "entity",
    time_column: str = "time",
    target_column: str = "target",
    covariate_columns: Sequence[str] = (),
    missing: Literal["error", "mask"] = "error",
) -> SeriesPanel:
    """A forecasting panel from the user's CSV/TSV/Parquet file in long format (see `panel_from_frame`)."""
    return panel_from_frame(
        read_table(Path(path)),
        entity_column=entity_column,
        time_column=time_column,
        target_column=target_column,
        covariate_columns=covariate_columns,
        missing=missing,
        source=str(path),
    )


def _check_series_values(
    source: str,
    entity: object,
    stamps: np.ndarray,
    target: np.ndarray,
    covariates: np.ndarray,
    covariate_names: list[str],
    target_column: str,
    missing: str,
) -> None:
    """Errors that name the entity and the time of the first bad value, with the fix."""

    def at(step: int) -> str:
        return f"entity {python_value(entity)!r} at time {python_value(stamps[step])!r}"

    infinite = np.flatnonzero(np.isinf(target))
    if infinite.shape[0]:
        raise DataError(
            f"{source}: {target_column!r} is infinite for {at(int(infinite[0]))}; replace it with a real value "
            "(or NaN with data.missing: mask)."
        )
    huge = np.flatnonzero(np.abs(np.nan_to_num(target)) > FLOAT32_MAX)
    if huge.shape[0]:
        raise DataError(
            f"{source}: {target_column!r} is {target[int(huge[0])]:.3g} for {at(int(huge[0]))}, beyond the float32 "
            f"range (about ±{FLOAT32_MAX:.2g}) the model computes in ({huge.shape[0]} such value(s) in this series). "
            "Fix: rescale the column (e.g. divide by a power of ten or take logs) or correct the value."
        )
    nan = np.flatnonzero(np.isnan(target))
    if nan.shape[0] and missing == "error":
        raise DataError(
            f"{source}: {target_column!r} is missing (NaN) for {at(int(nan[0]))} ({nan.shape[0]} missing in this "
            "series). Fix: impute or drop those rows, or set data.missing: mask to leave missing targets out of "
            "the loss and the metrics."
        )
    bad_covariates = np.argwhere(~np.isfinite(covariates) | (np.abs(np.nan_to_num(covariates)) > FLOAT32_MAX))
    if bad_covariates.shape[0]:
        step, column = (int(v) for v in bad_covariates[0])
        raise DataError(
            f"{source}: covariate {covariate_names[column]!r} is "
            f"{'NaN/Inf' if not np.isfinite(covariates[step, column]) else f'{covariates[step, column]:.3g}'} for "
            f"{at(step)}; covariates must be complete, finite numbers within float32 (about ±{FLOAT32_MAX:.2g}). "
            "Impute them (e.g. forward fill) or rescale them before training."
        )


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """(T,) with NaNs after the first value replaced by the last observed value."""
    observed_at = np.where(~np.isnan(values), np.arange(values.shape[0]), 0)
    return values[np.maximum.accumulate(observed_at)]
