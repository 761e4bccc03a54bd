"""Value, time and formatting helpers shared by the splitters (`seqlit.data.splits`) and their audits
(`seqlit.data.split_audit`): entity ids to codes, times and cut points to comparable numpy values, and the
short renderings of ids and times that their error messages quote.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from seqlit.errors import DataError

__all__ = [
    "MAX_NAMED",
    "TimePoint",
    "as_cut",
    "as_time_span",
    "entity_codes",
    "format_time",
    "format_value",
    "format_values",
]

# A cut point: a number for numeric times; a datetime64, ISO string or datetime for datetime64 times.
TimePoint = int | float | np.generic | str | datetime.date

MAX_NAMED = 5  # how many offending entities / positions an error message lists


def entity_codes(
    values: npt.ArrayLike, n_items: int | None = None, name: str = "entities"
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids and each item's index into them; sorting makes seeded splits order-independent."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name} must be 1-D (one id per item), got shape {array.shape}.")
    if n_items is not None and array.shape[0] != n_items:
        raise DataError(f"{name} has {array.shape[0]} values but there are {n_items} items; pass one id per item.")
    if array.dtype.kind == "f" and np.isnan(array).any():
        position = int(np.flatnonzero(np.isnan(array))[0])
        raise DataError(f"{name} has a missing (NaN) id at item {position}; every item needs an id.")
    try:
        unique, codes = np.unique(array, return_inverse=True)
    except TypeError as error:
        raise DataError(
            f"{name} mixes id types that cannot be ordered (e.g. str and int, or None): {error}. Fix: cast all "
            "ids to one type, e.g. np.asarray(ids).astype(str)."
        ) from error
    return unique, codes.reshape(-1).astype(np.int64)


def as_time_span(
    start_times: npt.ArrayLike, end_times: npt.ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (starts, ends) arrays; ends default to starts (point-in-time items)."""
    starts = _as_times("start_times", start_times)
    ends = starts if end_times is None else _as_times("end_times", end_times)
    if ends.shape != starts.shape:
        raise DataError(
            f"end_times has {ends.shape[0]} values but start_times has {starts.shape[0]}; pass one of each per item."
        )
    if _time_family(starts.dtype) != _time_family(ends.dtype):
        raise DataError(
            f"start_times ({starts.dtype}) and end_times ({ends.dtype}) cannot be compared; use numbers for both "
            "or datetime64 for both."
        )
    backwards = np.flatnonzero(ends < starts)
    if backwards.shape[0]:
        first = int(backwards[0])
        raise DataError(
            f"{backwards.shape[0]} item(s) end before they start, e.g. item {first}: start "
            f"{format_time(starts[first])}, end {format_time(ends[first])}. Fix: swap start and end times."
        )
    return starts, ends


def _as_times(name: str, values: npt.ArrayLike) -> np.ndarray:
    """Numbers or datetime64 (ISO strings and datetimes are parsed to datetime64), with no missing values."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name} must be 1-D (one time per item), got shape {array.shape}.")
    if array.dtype.kind == "O" and array.shape[0]:
        array = np.array(array.tolist())  # re-infer: Python numbers become int/float arrays
    if array.dtype.kind in "OUS":
        try:
            array = array.astype("datetime64[ns]")
        except (TypeError, ValueError) as error:
            raise DataError(
                f"{name} must be numbers or datetimes; could not read {array[:3].tolist()} as either ({error}). "
                "Fix: pass numbers, numpy datetime64 values or ISO date strings."
            ) from error
    if array.dtype.kind not in "iufmM":
        raise DataError(f"{name} must be numbers or datetime64 values, got dtype {array.dtype}.")
    missing = np.isnat(array) if array.dtype.kind in "mM" else np.isnan(array) if array.dtype.kind == "f" else None
    if missing is not None and missing.any():
        raise DataError(
            f"{name} has {int(missing.sum())} missing value(s) (NaN/NaT), first at item "
            f"{int(np.flatnonzero(missing)[0])}; every item needs a time. Fix: drop or fill those items."
        )
    return array


def as_cut(name: str, value: TimePoint, times_dtype: np.dtype) -> Any:
    """A cut point comparable with times of `times_dtype` (datetime cuts may be ISO strings or datetimes)."""
    family = _time_family(times_dtype)
    expected = {"datetime": "a datetime64, datetime or ISO date string", "timedelta": "a timedelta64 or timedelta"}
    try:
        if family == "datetime" and not isinstance(value, (int, float, np.number)):
            cut = np.datetime64(value)  # type: ignore[arg-type]
        elif family == "timedelta" and isinstance(value, (np.timedelta64, datetime.timedelta)):
            cut = np.timedelta64(value)
        else:
            # Bare numbers stay numbers: for datetime/timedelta times they carry no unit, so they are rejected below.
            cut = np.asarray(value)[()]
    except (TypeError, ValueError) as error:
        raise DataError(
            f"{name}={value!r} cannot be read as a time like the items' ({times_dtype}): {error}. Fix: pass "
            f"{expected.get(family, 'a number')}."
        ) from error
    cut_dtype = np.asarray(cut).dtype
    missing = _time_family(cut_dtype) == family and (np.isnat(cut) if family != "number" else np.isnan(float(cut)))
    if _time_family(cut_dtype) != family or missing:
        raise DataError(
            f"{name}={value!r} does not match the item times ({times_dtype}); pass {expected.get(family, 'a number')}."
        )
    return cut


def _time_family(dtype: np.dtype) -> str:
    return {"M": "datetime", "m": "timedelta"}.get(dtype.kind, "number" if dtype.kind in "iuf" else "other")


def format_time(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return str(value)
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


def format_value(value: Any) -> str:
    """An id as the user wrote it: 'a' or 3, not np.str_('a')."""
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


def format_values(values: np.ndarray) -> str:
    shown = ", ".join(format_value(v) for v in values[:MAX_NAMED])
    return f"{shown}, ..." if values.shape[0] > MAX_NAMED else shown
