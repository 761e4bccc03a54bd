"""Splits of items (whole sequences) into train / val / test without leakage; `seqlit.data.split_audit` holds
the audits that prove it.

A split is a set of item *positions* (indices into the data set). `chronological_split` cuts by time,
`entity_split` / `group_kfold` hold out whole entities, `stratified_split` keeps class proportions.
Every DataModule runs `split_audit.audit` on the split it uses, so a leak fails loudly instead of inflating metrics.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from seqlit.data.split_values import TimePoint, as_cut, as_time_span, entity_codes, format_time, format_values
from seqlit.errors import DataError

__all__ = [
    "EmptySplitError",
    "LeakageError",
    "SPLIT_NAMES",
    "Split",
    "chronological_split",
    "entity_split",
    "group_kfold",
    "stratified_split",
]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


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
    starts, ends = as_time_span(start_times, end_times)
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
        entity_codes(entities, n_items)  # a bad entity array should fail before any splitting work

    sorted_starts = np.sort(starts)  # (N,)
    test_cut = (
        as_cut("test_start", test_start, starts.dtype)
        if test_start is not None
        else _derived_cut(sorted_starts, n_items, _share(test_fraction, n_items))
    )
    if val_start is not None:
        val_cut = as_cut("val_start", val_start, starts.dtype)
    elif val_fraction > 0:
        # The val share is counted among the items that start before the test cut, so the two never overlap.
        n_before_test = n_items if test_cut is None else int(np.searchsorted(sorted_starts, test_cut, side="left"))
        val_cut = _derived_cut(sorted_starts, n_before_test, _share(val_fraction, n_items))
    else:
        val_cut = test_cut  # an empty val split: nothing starts at or after a cut and ends before it
    if val_cut is not None and test_cut is not None and val_cut > test_cut:
        raise DataError(
            f"val_start={format_time(val_cut)} is after test_start={format_time(test_cut)}; validation must "
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
            f"{format_time(first_cut)} ({context}). Fix: move {first_cut_name} later, lower val_fraction / "
            "test_fraction, or provide more (earlier) items."
        )
    if split.val.shape[0] == 0 and not empty_val_requested:
        raise EmptySplitError(
            f"chronological_split: the val split is empty: no item starts at or after val_start="
            f"{format_time(val_cut)} and ends before test_start={format_time(test_cut)} ({context}). Fix: widen "
            "the gap between val_start and test_start or raise val_fraction; to train without validation pass "
            "val_fraction=0 (or val_start equal to test_start)."
        )
    if split.test.shape[0] == 0 and not empty_test_requested:
        raise EmptySplitError(
            f"chronological_split: the test split is empty: no item starts at or after test_start="
            f"{format_time(test_cut)} ({context}). Fix: move test_start to at most the latest start "
            f"{format_time(sorted_starts[-1])}, or pass test_fraction=0 when the test set comes from elsewhere."
        )
    if entities is not None:
        # Imported here, not at the top: split_audit imports this module, so a top-level import would be a cycle.
        from seqlit.data.split_audit import audit_chronological

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
    unique, codes = entity_codes(entities)
    n_entities = int(unique.shape[0])
    if n_entities == 0:
        raise EmptySplitError("entity_split got no items (entities is empty); pass one entity id per item.")
    n_test = _share(test_fraction, n_entities)
    n_val = _share(val_fraction, n_entities)
    if n_test + n_val >= n_entities:
        raise EmptySplitError(
            f"entity_split: the train split would be empty: val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} of {n_entities} entities take {n_val} + {n_test}, so at least "
            f"{n_test + n_val + 1} entities are needed (entities: {format_values(unique)}). Fix: lower the "
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
    unique, codes = entity_codes(entities)
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
    classes, codes = entity_codes(labels, name="labels")
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


# ---- helpers -----------------------------------------------------------------------------------------


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


def _cut_context(
    starts: np.ndarray, n_dropped: int, val_cut: Any, test_cut: Any, val_fraction: float, test_fraction: float
) -> str:
    """The facts a user needs to move a cut point: item count, time range, cuts, fractions, drops."""
    return (
        f"{starts.shape[0]} items starting from {format_time(starts.min())} to {format_time(starts.max())}; "
        f"val_start={format_time(val_cut)}, test_start={format_time(test_cut)}, val_fraction={val_fraction}, "
        f"test_fraction={test_fraction}; {n_dropped} item(s) dropped for crossing a cut"
    )
