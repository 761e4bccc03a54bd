import re
import time

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from seqlit.data.split_audit import (
    AUDIT_MODES,
    audit,
    audit_chronological,
    audit_disjoint,
    audit_entities,
    split_summary,
)
from seqlit.data.splits import (
    EmptySplitError,
    LeakageError,
    Split,
    chronological_split,
    entity_split,
    group_kfold,
    stratified_split,
)
from seqlit.errors import DataError


def panel(n_items: int = 300, n_entities: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entities, start_times, end_times) of items that span a few time units, like windows of a series."""
    rng = np.random.default_rng(seed)
    entities = rng.choice([f"store-{i}" for i in range(n_entities)], size=n_items)
    starts = rng.integers(0, 10_000, size=n_items)
    ends = starts + rng.integers(0, 30, size=n_items)
    return entities, starts, ends


def reference_leaks(split: Split, entities: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict[str, int]:
    """Brute-force count of val/test items that start at or before an earlier split's end for their entity."""
    leaks = {"val": 0, "test": 0}
    for name, earlier_names in (("val", ("train",)), ("test", ("train", "val"))):
        for position in getattr(split, name).tolist():
            same_entity = entities == entities[position]
            earlier = [p for e in earlier_names for p in getattr(split, e).tolist() if same_entity[p]]
            if earlier and starts[position] <= max(ends[p] for p in earlier):
                leaks[name] += 1
    return leaks


def all_positions(split: Split) -> np.ndarray:
    return np.sort(np.concatenate([split.train, split.val, split.test, split.dropped]))


# ---- Split -------------------------------------------------------------------------------------------


def test_split_stores_sorted_int64_copies_and_reports_sizes() -> None:
    train = np.array([5, 1, 3], dtype=np.int32)
    split = Split(train=train, val=[0], test=np.array([], dtype=np.int64))
    assert split.train.tolist() == [1, 3, 5] and split.train.dtype == np.int64
    assert train.tolist() == [5, 1, 3]  # the caller's array is untouched
    assert split.sizes() == {"train": 3, "val": 1, "test": 0}
    assert list(split.as_dict()) == ["train", "val", "test"]
    assert split.n_dropped == 0 and split.dropped.dtype == np.int64


def test_split_rejects_a_boolean_mask_with_a_hint() -> None:
    with pytest.raises(DataError, match=r"Split.train .*bool.*np.flatnonzero"):
        Split(train=np.array([True, False]), val=[], test=[])


# ---- chronological_split -----------------------------------------------------------------------------


def test_chronological_evaluation_items_come_after_training_items() -> None:
    entities, starts, ends = panel()
    split = chronological_split(starts, ends, entities=entities)
    assert ends[split.train].max() < starts[split.val].min()
    assert ends[split.val].max() < starts[split.test].min()
    # No test item precedes any train item in time, globally and not just per entity.
    assert starts[split.test].min() > starts[split.train].max()
    assert np.array_equal(all_positions(split), np.arange(len(starts)))
    n = len(starts)
    assert abs(split.test.shape[0] - 0.2 * n) <= 0.02 * n
    assert abs(split.val.shape[0] - 0.1 * n) <= 0.02 * n


def test_explicit_cut_points_are_honoured_exactly() -> None:
    starts = np.arange(10)
    split = chronological_split(starts, val_start=4, test_start=7, val_fraction=0.5, test_fraction=0.1)
    assert split.train.tolist() == [0, 1, 2, 3]
    assert split.val.tolist() == [4, 5, 6]
    assert split.test.tolist() == [7, 8, 9]
    assert split.n_dropped == 0


def test_items_crossing_a_cut_are_dropped_and_counted() -> None:
    starts = np.array([0, 1, 2, 3, 5, 6, 8, 9, 4, 7])
    ends = np.array([0, 1, 2, 6, 5, 6, 8, 9, 4, 9])  # item 3 crosses val_start=4, item 9 crosses test_start=8
    split = chronological_split(starts, ends, val_start=4, test_start=8)
    assert split.dropped.tolist() == [3, 9]
    assert split.n_dropped == 2
    assert split.train.tolist() == [0, 1, 2]
    assert split.val.tolist() == [4, 5, 8]
    assert split.test.tolist() == [6, 7]
    assert np.array_equal(all_positions(split), np.arange(10))


def test_derived_cuts_use_start_time_order_not_item_order() -> None:
    starts = np.arange(20)[::-1].copy()  # latest item first
    split = chronological_split(starts, val_fraction=0.25, test_fraction=0.25)
    assert sorted(starts[split.test].tolist()) == list(range(15, 20))
    assert sorted(starts[split.val].tolist()) == list(range(10, 15))


def test_datetime64_times_with_string_and_derived_cut_points() -> None:
    days = np.arange("2021-01-01", "2021-01-11", dtype="datetime64[D]")  # 10 days
    explicit = chronological_split(days, val_start="2021-01-06", test_start=np.datetime64("2021-01-09"))
    assert explicit.train.tolist() == [0, 1, 2, 3, 4]
    assert explicit.val.tolist() == [5, 6, 7]
    assert explicit.test.tolist() == [8, 9]
    hours = days.astype("datetime64[h]") + np.timedelta64(12, "h")
    hours[6] += np.timedelta64(24, "h")  # item 6 ends on day 7 (index 7), past the derived val cut
    derived = chronological_split(days, hours, entities=np.array(["a", "b"] * 5))
    assert derived.sizes() == {"train": 6, "val": 1, "test": 2} and derived.n_dropped == 1
    summary = split_summary(derived, start_times=days, end_times=hours)
    assert summary["test"]["min_start"] == np.datetime64("2021-01-09")


def test_empty_test_split_explains_the_cut_and_the_fix() -> None:
    starts = np.arange(10)
    with pytest.raises(EmptySplitError) as caught:
        chronological_split(starts, test_start=50)
    message = str(caught.value)
    assert "test split is empty" in message
    assert "test_start=50" in message and "latest start 9" in message
    assert "test_fraction=0" in message  # the fix when the test set comes from elsewhere


def test_empty_train_and_val_splits_name_the_split_and_cut() -> None:
    starts = np.arange(10)
    with pytest.raises(EmptySplitError, match=r"train split is empty.*val_start=0.*move val_start later"):
        chronological_split(starts, val_start=0, test_start=5)
    ends = starts + np.array([0, 0, 0, 0, 0, 5, 5, 0, 0, 0])  # both items in [5, 7) cross test_start=7
    with pytest.raises(EmptySplitError, match=r"val split is empty.*val_start=5.*test_start=7.*2 item\(s\) dropped"):
        chronological_split(starts, ends, val_start=5, test_start=7)


def test_empty_val_or_test_only_when_asked_for() -> None:
    starts = np.arange(10)
    no_val = chronological_split(starts, val_fraction=0.0, test_fraction=0.2)
    assert no_val.val.shape[0] == 0 and no_val.test.tolist() == [8, 9]
    no_val_explicit = chronological_split(starts, val_start=6, test_start=6)
    assert no_val_explicit.val.shape[0] == 0 and no_val_explicit.train.tolist() == list(range(6))
    no_test = chronological_split(starts, val_fraction=0.3, test_fraction=0.0)
    assert no_test.test.shape[0] == 0 and no_test.val.tolist() == [7, 8, 9]
    # The one val candidate (start 7) runs past the derived test cut (8): an unrequested empty val is an error.
    ends = starts + np.array([0, 0, 0, 0, 0, 0, 0, 2, 0, 0])
    with pytest.raises(EmptySplitError, match=r"val split is empty.*val_start=7.*test_start=8"):
        chronological_split(starts, ends, val_fraction=0.1, test_fraction=0.2)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"val_fraction": 1.2}, r"val_fraction must be a number in \[0, 1\)"),
        ({"test_fraction": -0.1}, r"test_fraction must be a number in \[0, 1\)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "sum must be below 1"),
        ({"val_start": 8, "test_start": 3}, "val_start=8 is after test_start=3"),
        ({"test_start": "soon"}, "test_start='soon' does not match the item times"),
    ],
)
def test_bad_chronological_arguments_are_value_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        chronological_split(np.arange(10), **kwargs)


def test_bad_times_are_rejected_with_the_item() -> None:
    with pytest.raises(DataError, match=r"end before they start, e.g. item 1"):
        chronological_split([0, 5, 9], [0, 4, 9])
    with pytest.raises(DataError, match=r"missing value.*item 2"):
        chronological_split([0.0, 1.0, np.nan])
    with pytest.raises(DataError, match="one id per item"):
        chronological_split(np.arange(10), entities=["a"] * 9)


# ---- audits ------------------------------------------------------------------------------------------


def two_series() -> tuple[np.ndarray, np.ndarray, Split]:
    """Daily items of 'alice' and 'bob' and their correct chronological split."""
    entities = np.array(["alice", "bob"] * 10)
    starts = np.arange(20)
    split = chronological_split(starts, entities=entities, val_start=10, test_start=15)
    return entities, starts, split


def test_audit_catches_a_late_item_moved_into_train() -> None:
    entities, starts, split = two_series()
    late = int(split.test[-1])  # position 19, bob's latest item
    leaky = Split(train=np.append(split.train, late), val=split.val, test=split.test[:-1])
    with pytest.raises(LeakageError) as caught:
        audit(leaky, mode="chronological", entities=entities, start_times=starts)
    message = str(caught.value)
    assert "entity 'bob'" in message and f"train item {late} ends at 19" in message
    assert "2 val item(s) and 2 test item(s)" in message  # bob's 11, 13 in val and 15, 17 in test
    assert "val item 11" in message and "starts at 11" in message
    assert "chronological_split" in message and "entity_split" in message
    assert "alice" not in message  # alice's items are not affected by bob's leak


def test_audit_catches_an_early_item_moved_into_test() -> None:
    entities, starts, split = two_series()
    early = 2  # alice's day-2 item
    leaky = Split(train=np.setdiff1d(split.train, [early]), val=split.val, test=np.append(split.test, early))
    with pytest.raises(LeakageError, match=r"1 test item\(s\).*test item 2 of entity 'alice' starts at 2.*val item 14"):
        audit_chronological(leaky, entities, starts)


def test_chronological_audit_is_per_entity_and_strict() -> None:
    entities = np.array(["a", "a", "b", "b"])
    starts = np.array([0, 10, 0, 5])
    ends = np.array([8, 10, 3, 5])
    # b's val item starts before a's train item ends: fine, they are different series.
    audit_chronological(Split(train=[0, 2], val=[3], test=[1]), entities, starts, ends)
    # A val item starting exactly when train ends overlaps it: leakage (needs strictly later).
    touching = np.array([0, 10, 0, 3])
    with pytest.raises(LeakageError, match="val item 3 of entity 'b' starts at 3"):
        audit_chronological(Split(train=[0, 2], val=[3], test=[1]), entities, touching, ends)
    # Without entities all items are one series, so the cross-entity overlap now counts.
    with pytest.raises(LeakageError, match="of the series"):
        audit_chronological(Split(train=[0, 2], val=[3], test=[1]), None, starts, ends)


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(1, 40),
    n_entities=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_chronological_audit_agrees_with_brute_force(n_items: int, n_entities: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    entities = rng.integers(0, n_entities, size=n_items)
    starts = rng.integers(0, 50, size=n_items)
    ends = starts + rng.integers(0, 5, size=n_items)
    role = rng.integers(0, 3, size=n_items)
    split = Split(train=np.flatnonzero(role == 0), val=np.flatnonzero(role == 1), test=np.flatnonzero(role == 2))
    expected = reference_leaks(split, entities, starts, ends)
    if expected["val"] + expected["test"] == 0:
        audit_chronological(split, entities, starts, ends)
        return
    with pytest.raises(LeakageError) as caught:
        audit_chronological(split, entities, starts, ends)
    reported = re.findall(r"(\d+) (val|test) item\(s\)", str(caught.value).split(". First:")[0])
    assert {name: int(count) for count, name in reported} == {name: n for name, n in expected.items() if n}


def test_entity_audit_catches_one_shared_entity() -> None:
    entities = np.array([f"user-{i // 3}" for i in range(60)])  # 20 users with 3 items each
    split = entity_split(entities, seed=3)
    audit(split, mode="entity", entities=entities)
    moved = int(split.test[0])
    leaky = Split(train=np.append(split.train, moved), val=split.val, test=split.test[1:])
    with pytest.raises(LeakageError) as caught:
        audit(leaky, mode="entity", entities=entities)
    message = str(caught.value)
    assert f"1 entity appears in more than one split: '{entities[moved]}' (train, test)" in message
    assert "entity_split" in message


def test_entity_audit_names_at_most_five_entities() -> None:
    entities = np.arange(8)
    halves = Split(train=np.arange(4), val=np.arange(4, 8), test=[])
    audit_entities(halves, entities)
    shared = np.array([0, 1, 2, 3, 4, 5, 6, 0])  # entity 0 in train and val, the rest only once
    with pytest.raises(LeakageError, match=r"1 entity appears.*: 0 \(train, val\)\."):
        audit_entities(halves, shared)
    many = np.array([0, 1, 2, 3, 4, 5, 6, 7] * 2)
    with pytest.raises(LeakageError, match=r"8 entities appear.*4 \(train, test\) and 3 more"):
        audit_entities(Split(train=np.arange(8), val=[], test=np.arange(8, 16)), many)


def test_disjointness_and_range_violations_are_caught() -> None:
    audit_disjoint(Split(train=[0, 1], val=[2], test=[3], dropped=[4]), n_items=5)
    with pytest.raises(LeakageError, match=r"1 item position\(s\).*2 \(train, test\)"):
        audit_disjoint(Split(train=[0, 1, 2], val=[], test=[2, 3]))
    with pytest.raises(LeakageError, match=r"3 \(val, dropped\)"):
        audit_disjoint(Split(train=[0], val=[3], test=[], dropped=[3]))
    with pytest.raises(LeakageError, match=r"1 \(twice in train\)"):
        audit_disjoint(Split(train=[0, 1, 1], val=[], test=[]))
    with pytest.raises(LeakageError, match=r"test split has 1 item position\(s\) outside \[0, 4\): \[7\]"):
        audit_disjoint(Split(train=[0], val=[1], test=[7]), n_items=4)
    with pytest.raises(LeakageError, match="outside"):
        audit(Split(train=[0], val=[1], test=[-1]), mode="none")


def test_audit_dispatch_checks_its_arguments() -> None:
    split = Split(train=[0], val=[1], test=[2])
    with pytest.raises(ValueError, match="unknown audit mode 'time'.*'chronological', 'entity', 'none'"):
        audit(split, mode="time")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs start_times"):
        audit(split, mode="chronological", entities=["a", "b", "c"])
    with pytest.raises(ValueError, match="needs entities"):
        audit(split, mode="entity")
    with pytest.raises(ValueError, match="differ in length"):
        audit(split, mode="chronological", entities=["a", "b"], start_times=[0, 1, 2])
    with pytest.raises(LeakageError, match="overlap"):  # disjointness runs in every mode
        audit(Split(train=[0, 1], val=[1], test=[2]), mode="chronological", start_times=[0, 1, 2])
    assert set(AUDIT_MODES) == {"chronological", "entity", "none"}


def test_split_summary_reports_each_split() -> None:
    entities = np.array(["a", "a", "b", "b", "c"])
    starts = np.array([0, 1, 2, 3, 4])
    ends = starts + np.array([1, 1, 0, 0, 0])
    split = Split(train=[0, 1], val=[2], test=[4], dropped=[3])
    summary = split_summary(split, entities, starts, ends)
    assert summary["train"] == {"n_items": 2, "n_entities": 1, "min_start": 0, "max_end": 2}
    assert summary["test"] == {"n_items": 1, "n_entities": 1, "min_start": 4, "max_end": 4}
    assert summary["dropped"]["n_items"] == 1
    bare = split_summary(Split(train=[0], val=[], test=[]))
    assert bare["val"] == {"n_items": 0, "n_entities": None, "min_start": None, "max_end": None}


# ---- entity_split and group_kfold --------------------------------------------------------------------


def test_entity_split_holds_out_whole_entities() -> None:
    rng = np.random.default_rng(1)
    entities = rng.integers(0, 40, size=500)
    split = entity_split(entities, val_fraction=0.1, test_fraction=0.2, seed=7)
    groups = {name: set(entities[positions].tolist()) for name, positions in split.as_dict().items()}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    assert np.array_equal(all_positions(split), np.arange(500))
    assert (len(groups["train"]), len(groups["val"]), len(groups["test"])) == (28, 4, 8)


def test_entity_split_is_seeded_and_independent_of_item_order() -> None:
    entities = np.array([f"patient-{i % 30}" for i in range(300)])
    first = entity_split(entities, seed=0)
    again = entity_split(entities, seed=0)
    other = entity_split(entities, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first.as_dict().values(), again.as_dict().values()))
    assert not np.array_equal(first.test, other.test)
    shuffled = np.random.default_rng(5).permutation(300)
    reordered = entity_split(entities[shuffled], seed=0)
    assert set(entities[shuffled][reordered.test]) == set(entities[first.test])


def test_entity_split_needs_enough_entities() -> None:
    with pytest.raises(EmptySplitError, match=r"at least 3 entities.*'a', 'b'.*lower the fractions"):
        entity_split(["a", "b", "a"], val_fraction=0.1, test_fraction=0.2)
    small = entity_split(["a", "b", "a"], val_fraction=0.0, test_fraction=0.2)
    assert small.val.shape[0] == 0 and small.sizes()["train"] + small.sizes()["test"] == 3
    with pytest.raises(DataError, match="cannot be ordered"):
        entity_split(np.array(["a", 1, None], dtype=object))
    with pytest.raises(DataError, match="seed must be a non-negative integer"):
        entity_split(["a", "b"], seed=-1)


def test_group_kfold_tests_every_entity_exactly_once() -> None:
    rng = np.random.default_rng(2)
    entities = rng.choice([f"e{i}" for i in range(23)], size=400)
    folds = group_kfold(entities, n_splits=5, seed=4)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(400))  # each item, hence each entity, tested once
    for train, test in folds:
        assert not set(entities[train]) & set(entities[test])
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(400))
    sizes = [test.shape[0] for _, test in folds]
    assert max(sizes) - min(sizes) <= np.bincount(np.unique(entities, return_inverse=True)[1]).max()
    again = group_kfold(entities, n_splits=5, seed=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_group_kfold_rejects_impossible_fold_counts() -> None:
    with pytest.raises(DataError, match=r"n_splits between 2 and the number of entities \(3\), got 4"):
        group_kfold(["a", "b", "c"], n_splits=4)
    with pytest.raises(DataError, match="n_splits"):
        group_kfold(["a", "b", "c"], n_splits=1)


# ---- stratified_split --------------------------------------------------------------------------------


def test_stratified_split_keeps_class_proportions() -> None:
    counts = {"ae": 97, "ei": 40, "oo": 11, "uu": 3, "ii": 2, "rare": 1}
    labels = np.random.default_rng(0).permutation(np.repeat(list(counts), list(counts.values())))
    train, val = stratified_split(labels, val_fraction=0.2, seed=3)
    assert not set(train.tolist()) & set(val.tolist())
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    for label, n in counts.items():
        n_val = int((labels[val] == label).sum())
        assert abs(n_val - 0.2 * n) <= 1, label
        if n >= 2:
            assert n_val >= 1 and (labels[train] == label).sum() >= 1, label
    assert (labels[val] == "rare").sum() == 0  # a single item must stay in train
    again_train, again_val = stratified_split(labels, val_fraction=0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    _, other_val = stratified_split(labels, val_fraction=0.2, seed=4)
    assert not np.array_equal(val, other_val)


def test_stratified_split_edge_cases() -> None:
    train, val = stratified_split(["x", "y", "x"], val_fraction=0.0)
    assert train.tolist() == [0, 1, 2] and val.shape[0] == 0
    with pytest.raises(EmptySplitError, match="single item"):
        stratified_split(["x", "y", "z"], val_fraction=0.3)


# ---- properties and scale ----------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    n_items=st.integers(10, 80),
    n_entities=st.integers(1, 6),
    max_duration=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_chronological_split_never_leaks(n_items: int, n_entities: int, max_duration: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    entities = rng.choice([f"entity-{i}" for i in range(n_entities)], size=n_items)
    starts = rng.integers(0, 10_000, size=n_items)
    ends = starts + rng.integers(0, max_duration + 1, size=n_items)
    try:
        split = chronological_split(starts, ends, entities=entities)
    except EmptySplitError:
        reject()  # e.g. every val candidate crosses the test cut: a refusal, not a leak
    audit(split, mode="chronological", entities=entities, start_times=starts, end_times=ends)
    assert reference_leaks(split, entities, starts, ends) == {"val": 0, "test": 0}
    for entity in np.unique(entities):
        train_end = ends[split.train][entities[split.train] == entity]
        evaluated = np.concatenate([split.val, split.test])
        later = starts[evaluated][entities[evaluated] == entity]
        if train_end.size and later.size:
            assert later.min() > train_end.max()
    assert np.array_equal(all_positions(split), np.arange(n_items))


def test_audits_scale_to_100k_items() -> None:
    rng = np.random.default_rng(0)
    n_items = 100_000
    entities = rng.integers(0, 5_000, size=n_items)
    starts = rng.integers(0, 10**9, size=n_items)
    ends = starts + rng.integers(0, 10**5, size=n_items)
    began = time.perf_counter()
    split = chronological_split(starts, ends, entities=entities)
    audit(split, mode="chronological", entities=entities, start_times=starts, end_times=ends)
    by_entity = entity_split(entities)
    audit(by_entity, mode="entity", entities=entities)
    assert time.perf_counter() - began < 5.0
    assert split.sizes()["test"] == 20_000
