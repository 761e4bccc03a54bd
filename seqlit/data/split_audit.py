"""Audits that prove a split of items leak-free: no item in two splits, no evaluated item before (or at) the end
of an earlier split's item of the same entity, no entity in two splits; and `split_summary` for `seqlit audit`.

Every DataModule runs `audit` on the split it uses, so a leak fails loudly instead of inflating metrics.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seqlit.data.split_values import MAX_NAMED, as_time_span, entity_codes, format_time, format_value
from seqlit.data.splits import SPLIT_NAMES, LeakageError, Split
from seqlit.errors import DataError

__all__ = [
    "AUDIT_MODES",
    "audit",
    "audit_chronological",
    "audit_disjoint",
    "audit_entities",
    "split_summary",
]

AuditMode = Literal["chronological", "entity", "none"]
AUDIT_MODES: tuple[str, ...] = ("chronological", "entity", "none")


def audit(
    split: Split,
    *,
    mode: AuditMode,
    entities: npt.ArrayLike | None = None,
    start_times: npt.ArrayLike | None = None,
    end_times: npt.ArrayLike | None = None,
) -> None:
    """Runs the leakage audit for a split mode, always after the disjointness check.

    `chronological` needs `start_times` (entities optional: without them all items form one series),
    `entity` needs `entities`, `none` checks disjointness only. Raises `LeakageError` on a leak.
    """
    if mode not in AUDIT_MODES:
        raise DataError(f"unknown audit mode {mode!r}; valid modes: {', '.join(repr(m) for m in AUDIT_MODES)}.")
    n_items = _n_items(entities=entities, start_times=start_times, end_times=end_times)
    audit_disjoint(split, n_items)
    if mode == "chronological":
        if start_times is None:
            raise DataError(
                "audit mode 'chronological' needs start_times (and end_times for items spanning time); pass "
                "them, or use mode='entity' / 'none'."
            )
        audit_chronological(split, entities, start_times, end_times)
    elif mode == "entity":
        if entities is None:
            raise DataError("audit mode 'entity' needs entities (one id per item); pass them, or use mode='none'.")
        audit_entities(split, entities)


def audit_disjoint(split: Split, n_items: int | None = None) -> None:
    """Checks that no item position is in two splits (or twice in one) and, given `n_items`, all are in range."""
    if n_items is not None and (isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 0):
        raise DataError(f"n_items must be a non-negative integer (the data set size), got {n_items!r}.")
    parts = {"train": split.train, "val": split.val, "test": split.test, "dropped": split.dropped}
    _check_in_range(parts, n_items)
    positions = np.concatenate(list(parts.values()))  # (N_all,)
    owner = np.repeat(np.arange(len(parts)), [p.shape[0] for p in parts.values()])  # (N_all,)
    order = np.argsort(positions, kind="stable")
    positions, owner = positions[order], owner[order]
    repeated = np.flatnonzero(positions[1:] == positions[:-1])  # index of the first of each equal pair
    if repeated.shape[0] == 0:
        return
    names = list(parts)
    repeated_positions = np.unique(positions[repeated])
    examples = []
    for position in repeated_positions[:MAX_NAMED].tolist():
        holders = sorted({names[o] for o in owner[positions == position].tolist()}, key=names.index)
        where = ", ".join(holders) if len(holders) > 1 else f"twice in {holders[0]}"
        examples.append(f"{position} ({where})")
    raise LeakageError(
        f"split overlap: {repeated_positions.shape[0]} item position(s) are assigned more than once: "
        f"{'; '.join(examples)}. An item in two splits is trained on and evaluated. Fix: build the split "
        "with chronological_split, entity_split or stratified_split, which assign each item once."
    )


def audit_chronological(
    split: Split,
    entities: npt.ArrayLike | None,
    start_times: npt.ArrayLike,
    end_times: npt.ArrayLike | None = None,
) -> None:
    """Checks, per entity, that val items start after every train item ends, and test items after train and val.

    Ties count as leakage (start must be strictly later). `entities=None` treats all items as one series.
    Vectorised: one sort per check, so 100k items take milliseconds.
    """
    starts, ends = as_time_span(start_times, end_times)
    n_items = int(starts.shape[0])
    _check_in_range({"train": split.train, "val": split.val, "test": split.test}, n_items)
    if entities is None:
        entity_values = np.zeros(n_items, dtype=np.int64)
        codes = entity_values
    else:
        entity_values = np.asarray(entities)
        codes = entity_codes(entities, n_items)[1]
    n_entities = int(codes.max()) + 1 if n_items else 0

    earlier_of = {"val": split.train, "test": np.concatenate([split.train, split.val])}
    violations: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, positions in (("val", split.val), ("test", split.test)):
        offending, latest = _starts_not_after(positions, earlier_of[name], codes, starts, ends, n_entities)
        if offending.shape[0]:
            violations[name] = (offending, latest)
    if not violations:
        return

    counts = " and ".join(f"{v[0].shape[0]} {name} item(s)" for name, v in violations.items())
    examples = []
    for name, (offending, latest) in violations.items():
        position, earlier = int(offending[0]), int(latest[0])
        entity = "the series" if entities is None else f"entity {format_value(entity_values[position])}"
        examples.append(
            f"{name} item {position} of {entity} starts at {format_time(starts[position])}, but its "
            f"{_split_holding(split, earlier)} item {earlier} ends at {format_time(ends[earlier])} (the latest end "
            "in the earlier split(s))"
        )
    raise LeakageError(
        f"chronological leakage: {counts} start at or before the latest end time of an earlier split's item of "
        f"the same entity. First: {'; '.join(examples)}. The model would train on the future of the series it is "
        "evaluated on. Fix: split with chronological_split (global time cut points), or hold out whole entities "
        "with entity_split."
    )


def audit_entities(split: Split, entities: npt.ArrayLike) -> None:
    """Checks that every entity's items lie in one split only, so evaluation entities are unseen in training."""
    unique, codes = entity_codes(entities)
    _check_in_range(split.as_dict(), int(codes.shape[0]))
    presence = np.zeros((len(SPLIT_NAMES), unique.shape[0]), dtype=bool)  # (3, E)
    for row, positions in enumerate(split.as_dict().values()):
        presence[row, codes[positions]] = True
    shared = np.flatnonzero(presence.sum(axis=0) >= 2)  # (E_shared,)
    if shared.shape[0] == 0:
        return
    examples = []
    for entity in shared[:MAX_NAMED].tolist():
        holders = [name for row, name in enumerate(SPLIT_NAMES) if presence[row, entity]]
        examples.append(f"{format_value(unique[entity])} ({', '.join(holders)})")
    more = f" and {shared.shape[0] - MAX_NAMED} more" if shared.shape[0] > MAX_NAMED else ""
    raise LeakageError(
        f"entity leakage: {shared.shape[0]} entit{'y appears' if shared.shape[0] == 1 else 'ies appear'} in more "
        f"than one split: {', '.join(examples)}{more}. The model would be evaluated on entities it trained on. "
        "Fix: split with entity_split (each entity in exactly one split) or group_kfold for cross-validation."
    )


def split_summary(
    split: Split,
    entities: npt.ArrayLike | None = None,
    start_times: npt.ArrayLike | None = None,
    end_times: npt.ArrayLike | None = None,
) -> dict[str, dict[str, Any]]:
    """Per split (train, val, test, dropped): n_items, n_entities, min_start, max_end, for `seqlit audit`.

    Values are None where the input needed is missing or the split is empty; times keep their numpy type.
    """
    parts = {**split.as_dict(), "dropped": split.dropped}
    n_items = _n_items(entities=entities, start_times=start_times, end_times=end_times)
    _check_in_range(parts, n_items)
    codes = None if entities is None else entity_codes(entities)[1]
    starts, ends = (None, None) if start_times is None else as_time_span(start_times, end_times)
    summary: dict[str, dict[str, Any]] = {}
    for name, positions in parts.items():
        has_items = positions.shape[0] > 0
        summary[name] = {
            "n_items": int(positions.shape[0]),
            "n_entities": None if codes is None else int(np.unique(codes[positions]).shape[0]),
            "min_start": starts[positions].min() if starts is not None and has_items else None,
            "max_end": ends[positions].max() if ends is not None and has_items else None,
        }
    return summary


# ---- helpers -----------------------------------------------------------------------------------------


def _starts_not_after(
    positions: np.ndarray,
    earlier: np.ndarray,
    codes: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    n_entities: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions whose start is <= the latest end of the same entity's `earlier` items, with that latest item."""
    empty = np.empty(0, dtype=np.int64)
    if positions.shape[0] == 0 or earlier.shape[0] == 0:
        return empty, empty
    # Sorting earlier items by (entity, end) puts each entity's latest-ending item last in its run.
    earlier_codes = codes[earlier]
    order = np.lexsort((ends[earlier], earlier_codes))
    run_codes = earlier_codes[order]
    last_in_run = np.flatnonzero(np.append(run_codes[1:] != run_codes[:-1], True))
    latest_item = np.full(n_entities, -1, dtype=np.int64)  # (E,) position of the latest-ending earlier item
    latest_item[run_codes[last_in_run]] = earlier[order[last_in_run]]

    candidate_latest = latest_item[codes[positions]]
    at_risk = candidate_latest >= 0
    candidates, candidate_latest = positions[at_risk], candidate_latest[at_risk]
    leaking = starts[candidates] <= ends[candidate_latest]
    return candidates[leaking], candidate_latest[leaking]


def _split_holding(split: Split, position: int) -> str:
    """Name of the split whose (sorted) positions include `position`."""
    for name, positions in split.as_dict().items():
        index = int(np.searchsorted(positions, position))
        if index < positions.shape[0] and positions[index] == position:
            return name
    raise AssertionError(f"position {position} is in no split")


def _check_in_range(parts: dict[str, np.ndarray], n_items: int | None) -> None:
    """Raises LeakageError for positions outside [0, n_items): they point at items that are not there."""
    for name, positions in parts.items():
        bad = positions[(positions < 0) | (positions >= n_items)] if n_items is not None else positions[positions < 0]
        if bad.shape[0]:
            valid = "[0, n_items)" if n_items is None else f"[0, {n_items})"
            raise LeakageError(
                f"the {name} split has {bad.shape[0]} item position(s) outside {valid}: "
                f"{bad[:MAX_NAMED].tolist()}. Fix: build the split from this data set's own items (positions "
                "are indices into it)."
            )


def _n_items(**arrays: npt.ArrayLike | None) -> int | None:
    """The data set size implied by the per-item arrays given, checked to agree."""
    lengths = {name: len(np.asarray(value)) for name, value in arrays.items() if value is not None}
    if len(set(lengths.values())) > 1:
        raise DataError(f"per-item arrays differ in length: {lengths}; pass one value per item in each.")
    return next(iter(lengths.values()), None)
