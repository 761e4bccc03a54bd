"""Splits of items (whole sequences) into train / val / test without leakage, and the audits that prove it.

A split is a set of item *positions* (indices into the data set). `chronological_split` cuts by time,
`entity_split` / `group_kfold` hold out whole entities, `stratified_split` keeps class proportions.
Every DataModule runs `audit` on the split it uses, so a leak fails loudly instead of inflating metrics.
"""

from __future__ import annotations

import datetime
import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seqlit.errors import DataError

__all__ = [
    "AUDIT_MODES",
    "EmptySplitError",
    "LeakageError",
    "Split",
    "audit",
    "audit_chronological",
    "audit_disjoint",
    "audit_entities",
    "chronological_split",
    "entity_split",
    "group_kfold",
    "split_summary",
    "stratified_split",
]

AuditMode = Literal["chronological", "entity", "none"]
AUDIT_MODES: tuple[str, ...] = ("chronological", "entity", "none")

# A cut point: a number for numeric times; a datetime64, ISO string or datetime for datetime64 times.
TimePoint = int | float | np.generic | str | datetime.date

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_MAX_NAMED = 5  # how many offending entities / positions an error message lists


class LeakageError(DataError):
    """A split lets information cross from an evaluation split into training (raised by the audits)."""


class EmptySplitError(DataError):
    """A split came out empty although the caller asked for it to hold items."""


@dataclass(frozen=True, eq=False)
class Split:
    """Item positions of the train, val and test splits (int64, sorted, stored as copies).

    `dropped` holds the positions that belong to no split: `chronological_split` puts there the items
    whose time span crosses a cut point; other splitters leave it empty.
    """

    train: np.ndarray  # (N_train,) int64
    val: np.ndarray  # (N_val,) int64
    test: np.ndarray  # (N_test,) int64
    dropped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # (N_dropped,) int64

    def __post_init__(self) -> None:
        # frozen=True forbids plain assignment; normalising here keeps every Split comparable by value.
        for name in (*SPLIT_NAMES, "dropped"):
            object.__setattr__(self, name, _as_positions(name, getattr(self, name)))

    @property
    def n_dropped(self) -> int:
        """Number of items left out of every split (crossing a chronological cut)."""
        return int(self.dropped.shape[0])

    def sizes(self) -> dict[str, int]:
        """Item counts per split, for logs and summaries."""
        return {name: int(positions.shape[0]) for name, positions in self.as_dict().items()}

    def as_dict(self) -> dict[str, np.ndarray]:
        """`{"train": ..., "val": ..., "test": ...}`, for code that loops over splits."""
        return {"train": self.train, "val": self.val, "test": self.test}


# ---- splitters ---------------------------------------------------------------------------------------


def chronological_split(
    start_times: npt.ArrayLike,
    end_times: npt.ArrayLike | None = None,
    *,
    val_start: TimePoint | None = None,
    test_start: TimePoint | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    entities: npt.ArrayLike | None = None,
) -> Split:
    """Splits items by time at two global cut points, so evaluation items always come after training.

    Each item spans [start, end] (end defaults to start). train: end < val_start; val: start >= val_start
    and end < test_start; test: start >= test_start. Items crossing a cut go to `Split.dropped`, never into
    two splits. Explicit `val_start` / `test_start` take precedence over the fractions; otherwise the cuts are
    order statistics of the start times chosen so that about `val_fraction` / `test_fraction` of the items
    start in val / test. A fraction of 0 (or `val_start == test_start`) asks for an empty split; any other
    empty split raises `EmptySplitError`. With `entities`, the result is checked by `audit_chronological`.
    """
    starts, ends = _as_time_span(start_times, end_times)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} leaves nothing for training; "
            "their sum must be below 1 (e.g. 0.1 and 0.2)."
        )
    n_items = int(starts.shape[0])
    if n_items == 0:
        raise EmptySplitError("chronological_split got no items (start_times is empty); pass at least 3 items.")
    if entities is not None:
        _entity_codes(entities, n_items)  # a bad entity array should fail before any splitting work

    sorted_starts = np.sort(starts)  # (N,)
    test_cut = (
        _as_cut("test_start", test_start, starts.dtype)
        if test_start is not None
        else _derived_cut(sorted_starts, n_items, _share(test_fraction, n_items))
    )
    if val_start is not None:
        val_cut = _as_cut("val_start", val_start, starts.dtype)
    elif val_fraction > 0:
        # The val share is counted among the items that start before the test cut, so the two never overlap.
        n_before_test = n_items if test_cut is None else int(np.searchsorted(sorted_starts, test_cut, side="left"))
        val_cut = _derived_cut(sorted_starts, n_before_test, _share(val_fraction, n_items))
    else:
        val_cut = test_cut  # an empty val split: nothing starts at or after a cut and ends before it
    if val_cut is not None and test_cut is not None and val_cut > test_cut:
        raise DataError(
            f"val_start={_format_time(val_cut)} is after test_start={_format_time(test_cut)}; validation must "
            "come before test: pass val_start <= test_start (equal gives an empty val split), or pass test_start "
            "explicitly instead of deriving it from test_fraction."
        )

    train_mask, val_mask, test_mask = _assign_by_cuts(starts, ends, val_cut, test_cut)
    dropped_mask = ~(train_mask | val_mask | test_mask)
    assert not np.any(train_mask & val_mask | train_mask & test_mask | val_mask & test_mask), "cuts overlap"
    split = Split(
        train=np.flatnonzero(train_mask),
        val=np.flatnonzero(val_mask),
        test=np.flatnonzero(test_mask),
        dropped=np.flatnonzero(dropped_mask),
    )

    empty_val_requested = (val_start is None and val_fraction == 0) or (
        val_start is not None and test_start is not None and val_cut == test_cut
    )
    empty_test_requested = test_start is None and test_fraction == 0
    context = _cut_context(starts, split.n_dropped, val_cut, test_cut, val_fraction, test_fraction)
    if split.train.shape[0] == 0:
        first_cut_name = "val_start" if val_cut is not None else "test_start"
        first_cut = val_cut if val_cut is not None else test_cut
        raise EmptySplitError(
            f"chronological_split: the train split is empty: no item ends before {first_cut_name}="
            f"{_format_time(first_cut)} ({context}). Fix: move {first_cut_name} later, lower val_fraction / "
            "test_fraction, or provide more (earlier) items."
        )
    if split.val.shape[0] == 0 and not empty_val_requested:
        raise EmptySplitError(
            f"chronological_split: the val split is empty: no item starts at or after val_start="
            f"{_format_time(val_cut)} and ends before test_start={_format_time(test_cut)} ({context}). Fix: widen "
            "the gap between val_start and test_start or raise val_fraction; to train without validation pass "
            "val_fraction=0 (or val_start equal to test_start)."
        )
    if split.test.shape[0] == 0 and not empty_test_requested:
        raise EmptySplitError(
            f"chronological_split: the test split is empty: no item starts at or after test_start="
            f"{_format_time(test_cut)} ({context}). Fix: move test_start to at most the latest start "
            f"{_format_time(sorted_starts[-1])}, or pass test_fraction=0 when the test set comes from elsewhere."
        )
    if entities is not None:
        # Global cuts cannot leak by construction; the audit guards that claim against future edits.
        audit_chronological(split, entities, starts, ends)
    return split


def entity_split(
    entities: npt.ArrayLike,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Assigns whole entities to train / val / test, so no entity is seen in training and then evaluated.

    Fractions count entities, not items: test gets round(test_fraction * n_entities) entities (at least 1 when
    the fraction is > 0), val likewise, train the rest. The unique entities are shuffled with
    `np.random.default_rng(seed)`: the same seed gives the same split, whatever the item order.
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    _check_seed(seed)
    unique, codes = _entity_codes(entities)
    n_entities = int(unique.shape[0])
    if n_entities == 0:
        raise EmptySplitError("entity_split got no items (entities is empty); pass one entity id per item.")
    n_test = _share(test_fraction, n_entities)
    n_val = _share(val_fraction, n_entities)
    if n_test + n_val >= n_entities:
        raise EmptySplitError(
            f"entity_split: the train split would be empty: val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} of {n_entities} entities take {n_val} + {n_test}, so at least "
            f"{n_test + n_val + 1} entities are needed (entities: {_format_values(unique)}). Fix: lower the "
            "fractions, set one of them to 0, or split by time with chronological_split."
        )
    order = np.random.default_rng(seed).permutation(n_entities)  # (E,)
    role = np.zeros(n_entities, dtype=np.int8)  # 0 train, 1 val, 2 test
    role[order[:n_test]] = 2
    role[order[n_test : n_test + n_val]] = 1
    item_role = role[codes]  # (N,)
    return Split(
        train=np.flatnonzero(item_role == 0),
        val=np.flatnonzero(item_role == 1),
        test=np.flatnonzero(item_role == 2),
    )


def group_kfold(
    entities: npt.ArrayLike, n_splits: int = 5, *, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds by entity: `(train_positions, test_positions)` per fold, each entity tested once.

    Entities go, largest first (ties in a seeded random order), to the fold with the fewest items so far,
    which balances item counts across folds like scikit-learn's GroupKFold, but reproducibly shuffled.
    """
    _check_seed(seed)
    unique, codes = _entity_codes(entities)
    n_entities = int(unique.shape[0])
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or not 2 <= n_splits <= n_entities:
        raise DataError(
            f"group_kfold needs an integer n_splits between 2 and the number of entities ({n_entities}), got "
            f"{n_splits!r}; each fold must test at least one entity. Fix: lower n_splits or add entities."
        )
    items_per_entity = np.bincount(codes, minlength=n_entities)  # (E,)
    tie_break = np.random.default_rng(seed).permutation(n_entities)  # (E,)
    order = np.lexsort((tie_break, -items_per_entity))
    fold_of_entity = np.empty(n_entities, dtype=np.int64)
    loads = [(0, fold) for fold in range(int(n_splits))]  # heap of (items so far, fold)
    for entity in order.tolist():
        load, fold = heapq.heappop(loads)
        fold_of_entity[entity] = fold
        heapq.heappush(loads, (load + int(items_per_entity[entity]), fold))
    fold_of_item = fold_of_entity[codes]  # (N,)
    folds = [(np.flatnonzero(fold_of_item != fold), np.flatnonzero(fold_of_item == fold)) for fold in range(n_splits)]
    assert all(test.shape[0] > 0 for _, test in folds), "a fold got no entity"
    return folds


def stratified_split(
    labels: npt.ArrayLike, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random `(train_positions, val_positions)` that keep each class's proportion in both splits.

    Each class with n >= 2 items sends round(val_fraction * n) of them to val, clamped to [1, n - 1] when
    val_fraction > 0, so every such class is both trained on and validated; a single-item class stays in train.
    """
    _check_fraction("val_fraction", val_fraction)
    _check_seed(seed)
    classes, codes = _entity_codes(labels, name="labels")
    n_items = int(codes.shape[0])
    if n_items == 0:
        raise EmptySplitError("stratified_split got no items (labels is empty); pass one label per item.")
    items_per_class = np.bincount(codes, minlength=classes.shape[0])  # (C,)
    if val_fraction == 0:
        val_per_class = np.zeros_like(items_per_class)
    else:
        val_per_class = np.floor(val_fraction * items_per_class + 0.5).astype(np.int64)  # round half up
        val_per_class = np.clip(val_per_class, 1, np.maximum(items_per_class - 1, 0))
        if val_per_class.sum() == 0:
            raise EmptySplitError(
                f"stratified_split: the val split is empty: all {classes.shape[0]} classes have a single item, and "
                "a class's only item must stay in train. Fix: pass val_fraction=0, or provide at least 2 items "
                "for some classes."
            )
    # A random key per item, sorted within each class, gives a seeded shuffle of every class at once.
    random_key = np.random.default_rng(seed).random(n_items)  # (N,)
    order = np.lexsort((random_key, codes))  # (N,) grouped by class, shuffled within
    class_start = np.concatenate(([0], np.cumsum(items_per_class)[:-1]))  # (C,)
    rank_in_class = np.arange(n_items) - class_start[codes[order]]  # (N,)
    is_val = np.zeros(n_items, dtype=bool)
    is_val[order] = rank_in_class < val_per_class[codes[order]]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# ---- audits ------------------------------------------------------------------------------------------


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
    for position in repeated_positions[:_MAX_NAMED].tolist():
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
    starts, ends = _as_time_span(start_times, end_times)
    n_items = int(starts.shape[0])
    _check_in_range({"train": split.train, "val": split.val, "test": split.test}, n_items)
    if entities is None:
        entity_values = np.zeros(n_items, dtype=np.int64)
        codes = entity_values
    else:
        entity_values = np.asarray(entities)
        codes = _entity_codes(entities, n_items)[1]
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
        entity = "the series" if entities is None else f"entity {_format_value(entity_values[position])}"
        examples.append(
            f"{name} item {position} of {entity} starts at {_format_time(starts[position])}, but its "
            f"{_split_holding(split, earlier)} item {earlier} ends at {_format_time(ends[earlier])} (the latest end "
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
    unique, codes = _entity_codes(entities)
    _check_in_range(split.as_dict(), int(codes.shape[0]))
    presence = np.zeros((len(SPLIT_NAMES), unique.shape[0]), dtype=bool)  # (3, E)
    for row, positions in enumerate(split.as_dict().values()):
        presence[row, codes[positions]] = True
    shared = np.flatnonzero(presence.sum(axis=0) >= 2)  # (E_shared,)
    if shared.shape[0] == 0:
        return
    examples = []
    for entity in shared[:_MAX_NAMED].tolist():
        holders = [name for row, name in enumerate(SPLIT_NAMES) if presence[row, entity]]
        examples.append(f"{_format_value(unique[entity])} ({', '.join(holders)})")
    more = f" and {shared.shape[0] - _MAX_NAMED} more" if shared.shape[0] > _MAX_NAMED else ""
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
    codes = None if entities is None else _entity_codes(entities)[1]
    starts, ends = (None, None) if start_times is None else _as_time_span(start_times, end_times)
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


def _assign_by_cuts(
    starts: np.ndarray, ends: np.ndarray, val_cut: Any, test_cut: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, val, test); a missing cut means that boundary does not exist."""
    everything = np.ones(starts.shape[0], dtype=bool)
    nothing = np.zeros(starts.shape[0], dtype=bool)
    first_cut = val_cut if val_cut is not None else test_cut
    train = everything if first_cut is None else ends < first_cut
    if val_cut is None:
        val = nothing
    else:
        val = (starts >= val_cut) & (everything if test_cut is None else ends < test_cut)
    test = nothing if test_cut is None else starts >= test_cut
    return train, val, test


def _derived_cut(sorted_starts: np.ndarray, n_eligible: int, n_wanted: int) -> Any:
    """The start time above which about `n_wanted` of the first `n_eligible` sorted starts lie (None if 0)."""
    if n_wanted == 0:
        return None
    # Clamping to the first item makes the earlier split empty, which the caller reports with the cut times.
    return sorted_starts[max(n_eligible - n_wanted, 0)]


def _share(fraction: float, n: int) -> int:
    """round(fraction * n), half up, and at least 1 when the fraction is positive."""
    if fraction == 0:
        return 0
    return max(1, int(math.floor(fraction * n + 0.5)))


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(value) < 1.0
    ):
        raise DataError(f"{name} must be a number in [0, 1) (a share of the items), got {value!r}; e.g. 0.1.")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}; e.g. seed=0.")


def _as_positions(name: str, values: npt.ArrayLike) -> np.ndarray:
    """A sorted int64 copy of item positions; rejects masks and floats, which would index wrongly."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"Split.{name} must be a 1-D array of item positions, got shape {array.shape}.")
    if array.shape[0] and array.dtype.kind not in "iu":
        hint = " (a boolean mask? use np.flatnonzero(mask))" if array.dtype.kind == "b" else ""
        raise DataError(f"Split.{name} must hold integer item positions, got dtype {array.dtype}{hint}.")
    return np.sort(array.astype(np.int64))


def _check_in_range(parts: dict[str, np.ndarray], n_items: int | None) -> None:
    """Raises LeakageError for positions outside [0, n_items): they point at items that are not there."""
    for name, positions in parts.items():
        bad = positions[(positions < 0) | (positions >= n_items)] if n_items is not None else positions[positions < 0]
        if bad.shape[0]:
            valid = "[0, n_items)" if n_items is None else f"[0, {n_items})"
            raise LeakageError(
                f"the {name} split has {bad.shape[0]} item position(s) outside {valid}: "
                f"{bad[:_MAX_NAMED].tolist()}. Fix: build the split from this data set's own items (positions "
                "are indices into it)."
            )


def _n_items(**arrays: npt.ArrayLike | None) -> int | None:
    """The data set size implied by the per-item arrays given, checked to agree."""
    lengths = {name: len(np.asarray(value)) for name, value in arrays.items() if value is not None}
    if len(set(lengths.values())) > 1:
        raise DataError(f"per-item arrays differ in length: {lengths}; pass one value per item in each.")
    return next(iter(lengths.values()), None)


def _entity_codes(
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


def _as_time_span(
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
            f"{_format_time(starts[first])}, end {_format_time(ends[first])}. Fix: swap start and end times."
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


def _as_cut(name: str, value: TimePoint, times_dtype: np.dtype) -> Any:
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


def _cut_context(
    starts: np.ndarray, n_dropped: int, val_cut: Any, test_cut: Any, val_fraction: float, test_fraction: float
) -> str:
    """The facts a user needs to move a cut point: item count, time range, cuts, fractions, drops."""
    return (
        f"{starts.shape[0]} items starting from {_format_time(starts.min())} to {_format_time(starts.max())}; "
        f"val_start={_format_time(val_cut)}, test_start={_format_time(test_cut)}, val_fraction={val_fraction}, "
        f"test_fraction={test_fraction}; {n_dropped} item(s) dropped for crossing a cut"
    )


def _format_time(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return str(value)
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


def _format_value(value: Any) -> str:
    """An id as the user wrote it: 'a' or 3, not np.str_('a')."""
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


def _format_values(values: np.ndarray) -> str:
    shown = ", ".join(_format_value(v) for v in values[:_MAX_NAMED])
    return f"{shown}, ..." if values.shape[0] > _MAX_NAMED else shown
