"""`seqlit.padding`: the padding statistics data, callbacks, doctor and audit share, against brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.bucketing import random_batches
from seqlit.padding import (
    compare_with_random_batching,
    padding_counts,
    padding_fraction,
    padding_ratio,
    random_batching_padding_ratio,
)

lengths_lists = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=40)


def _grid(lengths: list[int], padded_length: int | None = None) -> np.ndarray:
    """Brute force: the (B, T) grid of a right-padded batch, True on real steps, built cell by cell."""
    width = max(lengths) if padded_length is None else padded_length
    return np.array([[step < length for step in range(width)] for length in lengths], dtype=bool)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_lists, extra=st.none() | st.integers(0, 5))
def test_padding_counts_match_a_cell_by_cell_grid(lengths: list[int], extra: int | None) -> None:
    padded_length = None if extra is None else max(lengths) + extra
    grid = _grid(lengths, padded_length)
    expected = (int(grid.sum()), int((~grid).sum()))
    assert padding_counts(torch.tensor(lengths), padded_length) == expected
    assert padding_counts(np.array(lengths), padded_length) == expected  # numpy and lists too
    assert padding_counts(lengths, padded_length) == expected


def test_padding_counts_edge_cases() -> None:
    assert padding_counts(torch.tensor([], dtype=torch.long)) == (0, 0)
    assert padding_counts([5, 5, 5]) == (15, 0)
    with pytest.raises(ValueError, match="padded_length=3"):
        padding_counts([2, 4], padded_length=3)


def test_padding_fraction() -> None:
    assert padding_fraction(0, 0) == 0.0
    assert padding_fraction(6, 2) == pytest.approx(0.25)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_lists, seed=st.integers(0, 1000), size=st.integers(1, 7))
def test_padding_ratio_is_token_weighted_over_all_batches(lengths: list[int], seed: int, size: int) -> None:
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    batches = [order[start:start + size] for start in range(0, len(order), size)]
    grids = [_grid([lengths[i] for i in batch]) for batch in batches]
    real = sum(int(grid.sum()) for grid in grids)
    total = sum(grid.size for grid in grids)
    assert padding_ratio(lengths, batches) == pytest.approx((total - real) / total, abs=1e-12)
    assert padding_ratio(np.array(lengths), batches) == padding_ratio(torch.tensor(lengths), batches)


def test_padding_ratio_edge_cases() -> None:
    assert padding_ratio([2, 4, 5, 5], [[0, 1], [2, 3]]) == pytest.approx(2 / 18)  # grid 2x4 + 2x5
    assert padding_ratio([2, 4, 5, 5], [[2, 3], []]) == 0.0
    assert padding_ratio([2, 4], []) == 0.0


@settings(max_examples=40, deadline=None)
@given(lengths=lengths_lists, batch_size=st.integers(1, 9), trials=st.integers(1, 4))
def test_random_batching_ratio_is_the_mean_over_seeded_random_batches(
    lengths: list[int], batch_size: int, trials: int
) -> None:
    batchings = [random_batches(len(lengths), batch_size, seed=s) for s in range(trials)]
    expected = np.mean([padding_ratio(lengths, batches) for batches in batchings])
    assert random_batching_padding_ratio(lengths, batch_size, trials) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("lengths", "batch_size", "trials", "match"),
    [([], 2, 1, "non-empty"), ([[1, 2]], 2, 1, "1-D"), ([1.5, 2.0], 2, 1, "ints"), ([3, -1], 2, 1, ">= 0"),
     ([3, 4], 0, 1, "batch_size"), ([3, 4], 2, 0, "trials"), ([3, 4], True, 1, "batch_size")],
)
def test_random_batching_ratio_rejects_bad_input(lengths: list, batch_size: int, trials: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_batching_padding_ratio(lengths, batch_size, trials)


def test_comparison_uses_the_mean_batch_size_of_the_plan() -> None:
    lengths = [1, 2, 3, 10, 11, 12, 30, 31]
    plan = [[0, 1, 2], [3, 4, 5], [6, 7]]
    comparison = compare_with_random_batching(lengths, plan)
    assert comparison.n_batches == 3 and comparison.mean_batch_size == 3  # round(8 / 3)
    assert comparison.ratio == padding_ratio(lengths, plan)
    assert comparison.random_ratio == random_batching_padding_ratio(lengths, 3)
    assert comparison.ratio < comparison.random_ratio  # sorted batches pad less
