"""The one reader of long-format tables (one row per time step of an entity): CSV, TSV or Parquet.

Classification files (`entity, time, features..., label`) and forecasting panels (`entity, time, target,
covariates...`) are read and checked here, the same way: the file is read (clear errors for empty, non-UTF-8,
ragged or non-Parquet files), required columns must exist (naming the missing ones and the columns found),
value columns must be numeric (a column of numbers spoiled by a few text cells is named, not dropped), time
stamps must be present and orderable, and rows are sorted by (group, time). What a missing value means is
the caller's policy: `finite=True` refuses NaN/Inf values outright, `finite=False` leaves them to the caller
(forecasting masks or refuses them per series). `LongFormatTable.groups` yields each sequence's rows in time
order and refuses repeated time stamps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqlit.errors import DataError

LONG_FORMAT_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass(frozen=True)
class LongFormatTable:
    """A checked long-format table, rows sorted by (group, time) (stable, so ties keep file order)."""

    frame: Any  # pandas.DataFrame
    source: str  # how messages name the table: its path, or e.g. "M1 yearly"
    group_column: str  # rows with one value of it form one sequence / series
    time_column: str
    value_columns: list[str]  # numeric columns (features, or target and covariates), in table order
    group_noun: str  # "sequence" or "entity", as messages name a group
    duplicate_hint: str  # appended to the repeated-time-stamp fix

    def groups(self) -> Iterator[tuple[object, Any]]:
        """(group key, its rows in time order) for each group, in key order.

        Repeated time stamps within a group are a `DataError` naming the group and the stamp.
        """
        for key, rows in self.frame.groupby(self.group_column, sort=False):
            stamps = rows[self.time_column].to_numpy()
            if len(np.unique(stamps)) != len(stamps):
                raise DataError(
                    f"{self.source}: {self.group_noun} {python_value(key)!r} has repeated time stamps "
                    f"({_first_repeated(stamps)!r} occurs more than once); each ({self.group_noun}, time) pair must "
                    f"be unique. Aggregate the duplicates first{self.duplicate_hint}."
                )
            yield key, rows


def read_long_format(
    source: str | Path | Any,
    *,
    entity_column: str,
    time_column: str,
    group_column: str | None = None,
    required: Sequence[str] = (),
    value_columns: Sequence[str] | None = None,
    reserved: Sequence[str] = (),
    finite: bool = True,
    column_options: str,
    value_option: str | None = None,
    role: str = "feature",
    group_noun: str = "entity",
    duplicate_hint: str = "",
    name: str | None = None,
) -> LongFormatTable:
    """Reads `source` (a CSV/TSV/Parquet path, or a DataFrame already in memory) and checks it.

    Args:
        entity_column / time_column: who a row belongs to and when; both must exist.
        group_column: the column whose values tell sequences apart (default: the entity column).
        required: further columns that must exist (a label, a target, covariates).
        value_columns: numeric columns to read; None: every numeric column not named otherwise (nor in
            `reserved`), and a `DataError` if there is none.
        reserved: columns never taken as values when inferring them (e.g. an optional label column).
        finite: True: a NaN/Inf value is an error naming the first such row; False: the caller's policy.
        column_options / value_option: the config options that name the columns, for the fixes in messages
            (e.g. "entity_column / time_column / label_column", "data.feature_columns").
        role: what the values are called in messages ("feature", "target or covariate").
        group_noun / duplicate_hint: how messages name a group, and a hint for the repeated-time-stamp fix.
        name: how messages name the table (default: the path).
    """
    if isinstance(source, (str, Path)):
        frame = read_table(Path(source))
        label = str(source) if name is None else name
    else:
        frame = source
        label = "data" if name is None else name
    group = group_column or entity_column
    columns = list(frame.columns)
    needed = list(dict.fromkeys([entity_column, time_column, group, *required]))
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {missing}; the file has {columns}. Rename the columns or set "
            f"{column_options} in the data config."
        )
    if len(frame) == 0:
        raise DataError(f"{label}: no rows; expected at least one {group_noun}.")
    if value_columns is None:
        values = _infer_value_columns(frame, {c for c in (*needed, *reserved) if c in columns}, label)
    else:
        values = _checked_value_columns(frame, list(value_columns), label, role, value_option)
    if finite:
        _check_finite(frame, values, entity_column, time_column, label, role)
    check_time_column(frame, time_column, label)
    ordered = frame.sort_values([group, time_column], kind="stable")
    return LongFormatTable(
        frame=ordered, source=label, group_column=group, time_column=time_column, value_columns=values,
        group_noun=group_noun, duplicate_hint=duplicate_hint,
    )


def require_data_file(path: Path) -> None:
    """Raises a DataError naming the path (and what it resolves to) unless it is an existing file."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(
            f"data file {what}: {path} (resolved to {path.resolve()}). Check the path in the data config "
            "(paths are relative to the directory you run seqlit from)."
        )


def read_table(path: Path):  # -> pandas.DataFrame
    """A CSV (`.csv`), TSV (`.tsv`) or Parquet (`.parquet`, `.pq`) file as a DataFrame with at least one row."""
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


def check_time_column(frame, time_column: str, source) -> None:
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
            f"{python_value(times.iloc[row])!r} in row {row + 2}), so the steps of a sequence cannot be put in "
            "time order. Fix: make every time value a number (or every one an ISO date such as 2020-01-31)."
        )


def python_value(value: object) -> object:
    """numpy scalars as plain Python values, so messages show 2005 or 'a' rather than np.int64(2005)."""
    return value.item() if isinstance(value, np.generic) else value


# ---- helpers ------------------------------------------------------------------------------------------------


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


def _checked_value_columns(frame, columns: list[str], source: str, role: str, option: str | None) -> list[str]:
    """Named value columns: present, and numeric (a number column spoiled by text cells is named)."""
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise DataError(
            f"{source}: {role} column(s) {unknown} not in the file; it has {list(frame.columns)}. Fix: correct "
            f"the names in {option or 'the data config'} (or leave it unset to use every numeric column)."
        )
    remove = f", or remove it from {option}" if option else ""
    for column in columns:
        _check_not_mostly_numeric_text(frame[column], source, consequence="is not numeric", alternative=remove)
    non_numeric = [c for c in columns if not _is_numeric(frame[c])]
    if non_numeric:
        remove = f" or remove them from {option}" if option else ""
        raise DataError(f"{source}: {role} column(s) {non_numeric} are not numeric; encode them as numbers{remove}.")
    return columns


def _infer_value_columns(frame, reserved: set[str], source: str) -> list[str]:
    """Every numeric column not reserved; numbers spoiled by a few text cells are refused, not silently skipped."""
    for column in frame.columns:
        if column not in reserved:
            _check_not_mostly_numeric_text(
                frame[column], source, consequence="would be left out of the features",
                alternative=", or list the features in data.feature_columns to leave this column out",
            )
    values = [c for c in frame.columns if c not in reserved and _is_numeric(frame[c])]
    if not values:
        raise DataError(
            f"{source}: no numeric feature columns besides {sorted(map(str, reserved))}; "
            "add feature columns or list them in feature_columns."
        )
    return values


def _check_finite(frame, columns: list[str], entity_column: str, time_column: str, source: str, role: str) -> None:
    values = frame[columns].to_numpy(dtype=np.float64)  # (rows, F)
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad_rows):
        row = bad_rows[0]
        bad_column = columns[int(np.flatnonzero(~np.isfinite(values[row]))[0])]
        raise DataError(
            f"{source}: {len(bad_rows)} row(s) have NaN/Inf {role}s; first at entity "
            f"{python_value(frame[entity_column].iloc[row])!r}, time "
            f"{python_value(frame[time_column].iloc[row])!r}, column "
            f"{bad_column!r} (an empty cell, NaN/inf, or a row with fewer fields than the header). "
            "Impute or drop those rows before training."
        )


def _check_not_mostly_numeric_text(column, source: str, *, consequence: str, alternative: str) -> None:
    """Refuses a column of numbers spoiled by a few text cells ('?', '-'): read as text, it is no number column."""
    import pandas as pd

    if not _is_text(column):
        return
    present = np.flatnonzero(column.notna().to_numpy())  # positions of non-empty cells
    not_numbers = pd.to_numeric(column.iloc[present], errors="coerce").isna().to_numpy()
    # No text cell (numbers stored as text, e.g. codes) or mostly text (an id or name column): not a spoiled column.
    if len(present) == 0 or not not_numbers.any() or not_numbers.mean() > 0.5:
        return
    row = int(present[np.flatnonzero(not_numbers)[0]])
    raise DataError(
        f"{source}: column {column.name!r} is mostly numbers but {int(not_numbers.sum())} cell(s) are text (first "
        f"{python_value(column.iloc[row])!r} in row {row + 2}), so it {consequence}. Fix: correct or impute those "
        f"cells (missing values as empty cells){alternative}."
    )


def _is_numeric(column) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column)) and not pd.api.types.is_bool_dtype(column)


def _is_text(column) -> bool:
    """Object or string dtype (pandas 3 reads text as `str`, older versions as `object`)."""
    import pandas as pd

    return bool(pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column))


def _first_repeated(stamps: np.ndarray) -> object:
    """The first time stamp that occurs more than once."""
    unique, counts = np.unique(stamps, return_counts=True)
    return python_value(unique[np.flatnonzero(counts > 1)[0]])
