"""Padding statistics: how much of a padded (B, T) batch grid is padding, for one batch, for an epoch of
batches, and for the random batching that length bucketing is judged against.

The one home of these numbers: collates (`n_tokens` / `n_pad` of every batch), the bucketing sampler's
tests, `PaddingRatioMonitor`, `seqlit doctor` and `seqlit audit` all call these functions, so their reports
agree to the digit. A leaf: it imports only numpy, torch and the standard library, so every layer may use it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Lengths = Tensor | np.ndarray | Sequence[int]


@dataclass(frozen=True)
class PaddingComparison:
    """One epoch of a loader's batches next to random batching of the same items and mean batch size."""

    ratio: float  # padded steps / all steps of the loader's batches
    random_ratio: float  # the same for plain shuffled batches (mean over seeded trials)
    n_batches: int
    mean_batch_size: int  # items per batch, rounded: the size the random batches are given


def padding_counts(lengths: Lengths, padded_length: int | None = None) -> tuple[int, int]:
    """(real steps, padded steps) of one right-padded batch whose rows have these `lengths`.

    The grid is `len(lengths) x padded_length` (default: the longest row); a row longer than the grid is a
    `ValueError`, since its steps could not all be real. An empty batch has (0, 0).
    """
    values = lengths if isinstance(lengths, Tensor) else torch.as_tensor(np.asarray(lengths, dtype=np.int64))
    if values.numel() == 0:
        return 0, 0
    longest = int(values.max())
    if padded_length is not None and longest > padded_length:
        raise ValueError(
            f"padding_counts: a row has {longest} steps but padded_length={padded_length}; pass the padded "
            "length of the batch (at least the longest row)."
        )
    n_tokens = int(values.sum())
    return n_tokens, int(values.numel()) * (longest if padded_length is None else padded_length) - n_tokens


def padding_fraction(n_tokens: int, n_pad: int) -> float:
    """Padded steps / all steps of a grid with `n_tokens` real and `n_pad` padded steps (0.0 for no grid)."""
    grid = n_tokens + n_pad
    return n_pad / grid if grid else 0.0


def padding_ratio(lengths: Lengths, batches: Iterable[Sequence[int]]) -> float:
    """Padding share of all padded (B, T) steps over `batches` of indices into `lengths`: token-weighted, i.e.
    all padding over the whole grid of the epoch, not the mean of per-batch ratios (big batches cost more).

    The figure bucketing exists to shrink; 0.0 means no step was wasted.
    """
    values = _as_int_array(lengths)
    real_steps = padded_steps = 0
    for batch in batches:
        if len(batch) == 0:
            continue
        batch_lengths = values[np.asarray(batch, dtype=np.int64)]  # (B,)
        padded_steps += int(batch_lengths.size) * int(batch_lengths.max())
        real_steps += int(batch_lengths.sum())
    return padding_fraction(real_steps, padded_steps - real_steps)


def random_batching_padding_ratio(lengths: Lengths, batch_size: int, trials: int = 5) -> float:
    """Mean padding ratio of `trials` plain shuffled batchings of `lengths`: the non-bucketed baseline.

    Trial k shuffles with `torch.randperm` seeded k and cuts batches of `batch_size` (the last may be short),
    the same batching as `seqlit.data.bucketing.random_batches(n, batch_size, seed=k)`; each trial's ratio is
    token-weighted (`padding_ratio`).
    """
    values = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"lengths must be a non-empty 1-D sequence of ints (one per item), got {values.dtype} "
            f"values of shape {values.shape}."
        )
    if (values < 0).any():
        raise ValueError(f"lengths must be >= 0, but the shortest is {int(values.min())}.")
    size = _positive_int("batch_size", batch_size)
    n_trials = _positive_int("trials", trials)
    values = values.astype(np.int64)
    n_items = int(values.size)
    real_steps = int(values.sum())
    n_full = n_items // size * size
    ratios: list[float] = []
    for seed in range(n_trials):
        order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed)).numpy()
        shuffled = values[order]
        # Vectorised over full batches, so the simulation stays cheap for millions of items.
        grid = int(shuffled[:n_full].reshape(-1, size).max(axis=1).sum()) * size
        tail = shuffled[n_full:]
        if tail.size:
            grid += int(tail.max()) * int(tail.size)
        ratios.append(padding_fraction(real_steps, grid - real_steps))
    return float(np.mean(ratios))


def compare_with_random_batching(
    lengths: Lengths, batches: Sequence[Sequence[int]], trials: int = 5
) -> PaddingComparison:
    """`padding_ratio` of `batches` and of random batches as large as theirs on average (`seqlit doctor`)."""
    values = _as_int_array(lengths)
    mean_batch = max(1, round(int(values.size) / max(1, len(batches))))
    return PaddingComparison(
        ratio=padding_ratio(values, batches),
        random_ratio=random_batching_padding_ratio(values, mean_batch, trials),
        n_batches=len(batches),
        mean_batch_size=mean_batch,
    )


def _as_int_array(lengths: Lengths) -> np.ndarray:
    values = lengths.cpu().numpy() if isinstance(lengths, Tensor) else np.asarray(lengths)
    return values.astype(np.int64, copy=False).reshape(-1)  # (N,)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive int, got {value!r}.") from None
    if as_int < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value!r}.")
    return as_int
