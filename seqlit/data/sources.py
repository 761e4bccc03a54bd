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

from seqlit.errors import DataError

LONG_FORMAT_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


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
        return _python_value(self.times[series][step])

    def entity(self, series: int) -> object:
        """The entity id of `series` as the user wrote it: 'a' or 3, not np.str_('a') (for messages)."""
        return _python_value(self.entities[series])


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
    frame = _read_table(Path(path))
    columns = list(frame.columns)
    sequence_key = sequence_column or entity_column
    has_labels = label_column is not None and label_column in columns
    required = [entity_column, time_column] + ([sequence_column] if sequence_column else [])
    if require_labels and label_column is not None:
        required.append(label_column)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the file has {columns}. Rename the columns or set "
            "entity_column / time_column / label_column / sequence_column in the data config."
        )
    reserved = {entity_column, time_column, sequence_key} | ({label_column} if has_labels else set())
    features = _resolve_feature_columns(frame, feature_columns, reserved, path)
    _check_finite(frame, features, entity_column, time_column, path)
    _check_time_column(frame, time_column, path)

    frame = frame.sort_values([sequence_key, time_column], kind="stable")
    sequences: list[np.ndarray] = []
    labels: list[str] = []
    entities: list[object] = []
    starts: list[object] = []
    ends: list[object] = []
    ids: list[str] = []
    for key, group in frame.groupby(sequence_key, sort=False):
        times = group[time_column].to_numpy()
        if len(np.unique(times)) != len(times):
            raise DataError(
                f"{path}: sequence {key!r} has repeated time stamps; each (sequence, time) pair must be "
                "unique. Aggregate duplicates first or set sequence_column to tell sequences apart."
            )
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
    columns = list(frame.columns)
    required = [entity_column, time_column, target_column, *covariate_columns]
    absent = [c for c in required if c not in columns]
    if absent:
        raise DataError(
            f"{source}: missing column(s) {absent}; it has {columns}. Rename the columns or set "
            "entity_column / time_column / target_column / covariate_columns in the data config."
        )
    if len(frame) == 0:
        raise DataError(f"{source}: no rows; a forecasting panel needs at least one series.")
    numeric = [c for c in (target_column, *covariate_columns) if not _is_numeric(frame[c])]
    if numeric:
        raise DataError(f"{source}: column(s) {numeric} are not numeric; encode them as numbers.")
    _check_time_column(frame, time_column, source)
    frame = frame.sort_values([entity_column, time_column], kind="stable")
    entities: list[object] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    observed: list[np.ndarray] = []
    covariates: list[np.ndarray] = []
    for entity, group in frame.groupby(entity_column, sort=False):
        stamps = group[time_column].to_numpy()
        if len(np.unique(stamps)) != len(stamps):
            repeated = _first_repeated(stamps)
            raise DataError(
                f"{source}: entity {_python_value(entity)!r} has the time stamp {repeated!r} more than once; each "
                "(entity, time) pair must be unique. Aggregate the duplicates first."
            )
        target = group[target_column].to_numpy(dtype=np.float64)  # (T,)
        extra = group[list(covariate_columns)].to_numpy(dtype=np.float64).reshape(len(group), -1)  # (T, C)
        _check_series_values(source, entity, stamps, target, extra, list(covariate_columns), target_column, missing)
        is_observed = ~np.isnan(target)
        if not is_observed.any():
            raise DataError(
                f"{source}: entity {_python_value(entity)!r} has no observed {target_column!r} value; drop it."
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
        _read_table(Path(path)),
        entity_column=entity_column,
        time_column=time_column,
        target_column=target_column,
        covariate_columns=covariate_columns,
        missing=missing,
        source=str(path),
    )


def require_data_file(path: Path) -> None:
    """Raises a DataError naming the path (and what it resolves to) unless it is an existing file."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(
            f"data file {what}: {path} (resolved to {path.resolve()}). Check the path in the data config "
            "(paths are relative to the directory you run seqlit from)."
        )


def _read_table(path: Path):  # -> pandas.DataFrame
    import pandas as pd

    require_data_file(path)
    suffix = path.suffix.lower()
    if suffix not in LONG_FORMAT_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {list(LONG_FORMAT_SUFFIXES)}.")
    try:
        if suffix in (".parquet", ".pq"):
            frame = _read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except pd.errors.EmptyDataError as error:
        raise DataError(
            f"{path}: the file is empty; expected a header row and data rows. Fix: export the table again, or "
            "point the data config at the right file."
        ) from error
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: not valid UTF-8 text ({error.reason} at byte {error.start}); re-save the file as UTF-8 "
            f"(e.g. `iconv -f latin1 -t utf-8`), or, if it is a Parquet file, name it .parquet."
        ) from error
    except pd.errors.ParserError as error:
        raise DataError(
            f"{path}: could not parse the table ({str(error).strip()}); check for ragged rows: every row needs "
            "exactly as many fields as the header (quote fields that contain the separator)."
        ) from error
    if len(frame) == 0:
        raise DataError(
            f"{path}: the file has a header but no data rows. Fix: export the table again with its rows, or point "
            "the data config at the right file."
        )
    return frame


def _read_parquet(path: Path):  # -> pandas.DataFrame
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except ImportError:
        raise
    # pyarrow raises ArrowInvalid (a ValueError) for a file that is not Parquet, OSError for one cut short.
    except (ValueError, OSError) as error:
        raise DataError(
            f"{path}: not a readable Parquet file ({str(error).strip()}). Fix: write it again with "
            "DataFrame.to_parquet, or, if it holds CSV/TSV text, give it the .csv/.tsv suffix."
        ) from error


def _resolve_feature_columns(frame, feature_columns: Sequence[str] | None, reserved: set, path) -> list[str]:
    if feature_columns is not None:
        unknown = [c for c in feature_columns if c not in frame.columns]
        if unknown:
            raise DataError(
                f"{path}: feature column(s) {unknown} not in the file; it has {list(frame.columns)}. Fix: correct "
                "the names in data.feature_columns (or leave it unset to use every numeric column)."
            )
        for column in feature_columns:
            _check_not_mostly_numeric_text(frame[column], path)
        non_numeric = [c for c in feature_columns if not _is_numeric(frame[c])]
        if non_numeric:
            raise DataError(
                f"{path}: feature column(s) {non_numeric} are not numeric; encode them as numbers or remove them "
                "from data.feature_columns."
            )
        return list(feature_columns)
    for column in frame.columns:
        if column not in reserved:
            _check_not_mostly_numeric_text(frame[column], path)
    features = [c for c in frame.columns if c not in reserved and _is_numeric(frame[c])]
    if not features:
        raise DataError(
            f"{path}: no numeric feature columns besides {sorted(map(str, reserved))}; "
            "add feature columns or list them in feature_columns."
        )
    return features


def _is_numeric(column) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column)) and not pd.api.types.is_bool_dtype(column)


def _is_text(column) -> bool:
    """Object or string dtype (pandas 3 reads text as `str`, older versions as `object`)."""
    import pandas as pd

    return bool(pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column))


def _check_finite(frame, features: list[str], entity_column: str, time_column: str, path) -> None:
    values = frame[features].to_numpy(dtype=np.float64)  # (rows, F)
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad_rows):
        row = bad_rows[0]
        bad_column = features[int(np.flatnonzero(~np.isfinite(values[row]))[0])]
        raise DataError(
            f"{path}: {len(bad_rows)} row(s) have NaN/Inf features; first at entity "
            f"{_python_value(frame[entity_column].iloc[row])!r}, time "
            f"{_python_value(frame[time_column].iloc[row])!r}, column "
            f"{bad_column!r} (an empty cell, NaN/inf, or a row with fewer fields than the header). "
            "Impute or drop those rows before training."
        )


def _check_time_column(frame, time_column: str, source) -> None:
    """Every row has a time stamp, and the stamps can be ordered (all numbers, or all text such as ISO dates)."""
    import pandas as pd

    times = frame[time_column]
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(
            f"{source}: empty time value in row {row + 2}; every row needs a time stamp. Fix: fill it in or drop "
            "the row."
        )
    if not _is_text(times):
        return
    parsed = pd.to_numeric(times, errors="coerce")
    if parsed.notna().any() and parsed.isna().any():
        # A CSV column of numbers with one word in it is read as text, where "10" sorts before "2".
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(
            f"{source}: time column {time_column!r} mixes numbers and text (first non-number "
            f"{_python_value(times.iloc[row])!r} in row {row + 2}), so the steps of a sequence cannot be put in "
            "time order. Fix: make every time value a number (or every one an ISO date such as 2020-01-31)."
        )


def _check_not_mostly_numeric_text(column, source) -> None:
    """Refuses a column of numbers spoiled by a few text cells ('?', '-'): read as text, it would silently be
    left out of the features."""
    import pandas as pd

    if not _is_text(column):
        return
    present = np.flatnonzero(column.notna().to_numpy())  # positions of non-empty cells
    not_numbers = pd.to_numeric(column.iloc[present], errors="coerce").isna().to_numpy()
    # No text cell (numbers stored as text, e.g. codes) or mostly text (an id or name column): not a spoiled feature.
    if len(present) == 0 or not not_numbers.any() or not_numbers.mean() > 0.5:
        return
    row = int(present[np.flatnonzero(not_numbers)[0]])
    raise DataError(
        f"{source}: column {column.name!r} is mostly numbers but {int(not_numbers.sum())} cell(s) are text (first "
        f"{_python_value(column.iloc[row])!r} in row {row + 2}), so it would be left out of the features. Fix: "
        "correct or impute those cells (missing values as empty cells), or list the features in "
        "data.feature_columns to leave this column out."
    )


def _first_repeated(stamps: np.ndarray) -> object:
    """The first time stamp that occurs more than once."""
    unique, counts = np.unique(stamps, return_counts=True)
    return _python_value(unique[np.flatnonzero(counts > 1)[0]])


def _python_value(value: object) -> object:
    """numpy scalars as plain Python values, so messages show 2005 or 'a' rather than np.int64(2005)."""
    return value.item() if isinstance(value, np.generic) else value


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
        return f"entity {_python_value(entity)!r} at time {_python_value(stamps[step])!r}"

    infinite = np.flatnonzero(np.isinf(target))
    if infinite.shape[0]:
        raise DataError(
            f"{source}: {target_column!r} is infinite for {at(int(infinite[0]))}; replace it with a real value "
            "(or NaN with data.missing: mask)."
        )
    nan = np.flatnonzero(np.isnan(target))
    if nan.shape[0] and missing == "error":
        raise DataError(
            f"{source}: {target_column!r} is missing (NaN) for {at(int(nan[0]))} ({nan.shape[0]} missing in this "
            "series). Fix: impute or drop those rows, or set data.missing: mask to leave missing targets out of "
            "the loss and the metrics."
        )
    bad_covariates = np.argwhere(~np.isfinite(covariates))
    if bad_covariates.shape[0]:
        step, column = (int(v) for v in bad_covariates[0])
        raise DataError(
            f"{source}: covariate {covariate_names[column]!r} is NaN/Inf for {at(step)}; covariates must be "
            "complete. Impute them (e.g. forward fill) before training."
        )


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """(T,) with NaNs after the first value replaced by the last observed value."""
    observed_at = np.where(~np.isnan(values), np.arange(values.shape[0]), 0)
    return values[np.maximum.accumulate(observed_at)]
