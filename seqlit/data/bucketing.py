"""Length-bucketed batching: batches of similar-length sequences, so little of each batch is padding.

`BucketBatchSampler` is rank-aware (every rank gets a disjoint share and the same number of
batches, so DDP never hangs) and survives Lightning's re-instantiation of batch samplers.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, DistributedSampler, Sampler

from seqlit.errors import DataError


class BucketBatchSampler(BatchSampler):
    """Yields batches of dataset indices with similar lengths, capped by samples and/or padded tokens.

    Each epoch, shuffled indices are split into pools, each pool is sorted by length and cut into
    batches, and the batches are shuffled; every rank builds the same global plan and takes its share.
    `sort_by_length=False` cuts the (shuffled, or data set) order into batches as it is: plain batching
    that keeps what the sampler guarantees under DDP (disjoint shares, equal batch counts, no item
    repeated, unlike a padding DistributedSampler) and its mid-epoch resume.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int | None = 32,
        max_tokens: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        bucket_size_multiplier: int | None = 100,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: Sampler[int] | None = None,
        resume_from: Callable[[], tuple[int | None, int]] | None = None,
        sort_by_length: bool = True,
    ) -> None:
        # BatchSampler.__init__ is skipped on purpose: it insists on a real sampler, while ours is
        # optional and only a source of (num_replicas, rank, epoch).
        self.lengths: list[int] = _validated_lengths(lengths)
        self.batch_size: int | None = _optional_positive_int("batch_size", batch_size)
        self.max_tokens: int | None = _optional_positive_int("max_tokens", max_tokens)
        self.bucket_size_multiplier: int | None = _optional_positive_int(
            "bucket_size_multiplier", bucket_size_multiplier
        )
        if self.batch_size is None and self.max_tokens is None:
            raise DataError(
                "BucketBatchSampler needs a cap on batch size: set batch_size (samples per batch), "
                "max_tokens (padded steps per batch), or both; both are None."
            )
        longest = max(self.lengths)
        if self.max_tokens is not None and self.max_tokens < longest:
            raise DataError(
                f"max_tokens={self.max_tokens} is smaller than the longest item (length {longest}, "
                f"index {self.lengths.index(longest)}), which could never fit in a batch; "
                f"set max_tokens >= {longest} or truncate long sequences."
            )
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.sort_by_length = bool(sort_by_length)
        # Resuming mid-epoch: `resume_from()` returns (epoch, batches already trained in it). It is
        # asked when iteration starts, not here, because Lightning may build the loader before it
        # restores the checkpoint; an init argument (not a setter) so DDP re-instantiation keeps it.
        self.resume_from = resume_from
        self.seed: int = _as_int("seed", seed)

        is_distributed_sampler = isinstance(sampler, DistributedSampler)
        self.num_replicas: int = resolve_num_replicas(num_replicas, sampler if is_distributed_sampler else None)
        self.rank: int = resolve_rank(rank, sampler if is_distributed_sampler else None)
        if not 0 <= self.rank < self.num_replicas:
            raise DataError(
                f"rank={self.rank} is outside [0, {self.num_replicas}) for num_replicas={self.num_replicas}; "
                "pass a rank between 0 and num_replicas - 1."
            )
        if len(self.lengths) < self.num_replicas:
            raise DataError(
                f"the data set has {len(self.lengths)} items but {self.num_replicas} replicas, so some rank would "
                "get no batch and DDP would hang; use fewer devices or more data."
            )
        # Lightning calls set_epoch only on `batch_sampler.sampler`, so the epoch lives there: in the
        # DistributedSampler Lightning injected, or else in our own tracker.
        self.sampler: Sampler[int] = sampler if is_distributed_sampler else _EpochTracker(len(self.lengths))
        # Mutated, never reassigned, after __init__: Lightning's patched __setattr__ records and replays
        # attribute assignments onto the re-instantiated sampler, which would leak another rank's plan.
        self._plans: dict[int, list[list[int]]] = {}

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches for the current epoch (minus those already done when resuming)."""
        plan = self._plan()
        skip = 0
        if self.resume_from is not None:
            resume_epoch, batches_done = self.resume_from()
            skip = batches_done if resume_epoch == self.epoch else 0
        for batch in plan[skip:]:
            yield list(batch)

    def __len__(self) -> int:
        """The number of batches this rank has in the current epoch, including any skipped on resume.

        Lightning counts a resumed epoch's batches from where it stopped, so the full count is
        what its progress tracking expects.
        """
        return len(self._plan())

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the shuffle; forwarded to `self.sampler`, where Lightning sets it too."""
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    @property
    def epoch(self) -> int:
        """The current epoch, always read from `self.sampler`."""
        return int(self.sampler.epoch)  # type: ignore[attr-defined]

    def _plan(self) -> list[list[int]]:
        epoch = self.epoch
        if epoch not in self._plans:
            self._plans.clear()
            self._plans[epoch] = self._build_plan(epoch)
        return self._plans[epoch]

    def _build_plan(self, epoch: int) -> list[list[int]]:
        """This rank's batches for `epoch`, from a global plan that every rank computes identically."""
        # Seeded by seed + epoch alone (never by rank) so every rank derives the same global plan.
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n_items = len(self.lengths)
        drop_short_tail = self.drop_last and self.batch_size is not None
        if not self.sort_by_length:
            order = torch.randperm(n_items, generator=generator).tolist() if self.shuffle else list(range(n_items))
            batches = _cut_into_batches(order, self.lengths, self.batch_size, self.max_tokens, drop_short_tail)
        elif self.shuffle:
            order = torch.randperm(n_items, generator=generator).tolist()
            pool_size = self._pool_size()
            batches: list[list[int]] = []
            for start in range(0, n_items, pool_size):
                # Python's sort is stable, so equal lengths keep the random order of the permutation.
                pool = sorted(order[start : start + pool_size], key=self.lengths.__getitem__)
                batches += _cut_into_batches(pool, self.lengths, self.batch_size, self.max_tokens, drop_short_tail)
            batch_order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in batch_order]
        else:
            ordered = sorted(range(n_items), key=self.lengths.__getitem__)
            batches = _cut_into_batches(ordered, self.lengths, self.batch_size, self.max_tokens, drop_short_tail)
        batches = _equalise_batch_count(batches, self.lengths, self.num_replicas, self.drop_last)
        assert len(batches) % self.num_replicas == 0, "every rank must get the same number of batches"
        return batches[self.rank :: self.num_replicas]

    def _pool_size(self) -> int:
        if self.bucket_size_multiplier is None:
            return len(self.lengths)
        if self.batch_size is not None:
            return self.bucket_size_multiplier * self.batch_size
        assert self.max_tokens is not None
        # Without a sample cap, a typical batch holds about max_tokens / median length items.
        median_length = sorted(self.lengths)[len(self.lengths) // 2]
        return self.bucket_size_multiplier * max(1, self.max_tokens // median_length)


def random_batches(n_items: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Plain shuffled batches of `batch_size` indices (last one may be short): the non-bucketed baseline.

    `seqlit.padding.random_batching_padding_ratio` simulates exactly these batches (same seeded permutation).
    """
    if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 0:
        raise DataError(f"n_items must be a non-negative int, got {n_items!r}.")
    size = _optional_positive_int("batch_size", batch_size)
    if size is None:
        raise DataError("batch_size must be a positive int, got None.")
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[start : start + size] for start in range(0, n_items, size)]


class _EpochTracker(Sampler[int]):
    """Holds the epoch where Lightning looks for it (`batch_sampler.sampler.set_epoch`)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n_items))

    def __len__(self) -> int:
        return self.n_items


def _cut_into_batches(
    ordered: Sequence[int],
    lengths: Sequence[int],
    batch_size: int | None,
    max_tokens: int | None,
    drop_short_tail: bool,
) -> list[list[int]]:
    """Greedily cuts `ordered` indices into consecutive batches within both caps."""
    batches: list[list[int]] = []
    current: list[int] = []
    current_longest = 0
    for index in ordered:
        length = lengths[index]
        longest = max(current_longest, length)
        over_count = batch_size is not None and len(current) + 1 > batch_size
        over_tokens = max_tokens is not None and (len(current) + 1) * longest > max_tokens
        if current and (over_count or over_tokens):
            batches.append(current)
            current = []
            longest = length
        current.append(index)
        current_longest = longest
    if current:
        # Only the tail ran out of items rather than hitting a cap, so it alone is dropped; batches
        # closed early by max_tokens are legitimately short and are kept.
        if not (drop_short_tail and batch_size is not None and len(current) < batch_size):
            batches.append(current)
    return batches


def _equalise_batch_count(
    batches: list[list[int]], lengths: Sequence[int], num_replicas: int, drop_last: bool
) -> list[list[int]]:
    """Makes the batch count a multiple of `num_replicas`, so ranks step in lockstep and DDP never hangs.

    drop_last drops the surplus; otherwise the largest batches are halved (keeping every index exactly
    once), and only if there are too few multi-item batches to halve are the smallest batches merged.
    """
    surplus = len(batches) % num_replicas
    if surplus == 0:
        return batches
    if drop_last:
        return batches[: len(batches) - surplus]
    batches = [list(batch) for batch in batches]
    shortfall = num_replicas - surplus
    n_items = sum(len(batch) for batch in batches)
    # Halving a batch adds one batch; at most n_items batches exist (all singletons).
    if n_items - len(batches) >= shortfall:
        for _ in range(shortfall):
            largest = max(range(len(batches)), key=lambda i: len(batches[i]))
            batch = batches[largest]
            assert len(batch) >= 2, "a multi-item batch must remain while splits are possible"
            half = len(batch) // 2
            batches[largest : largest + 1] = [batch[:half], batch[half:]]
        return batches
    warnings.warn(
        f"{len(batches)} batches over {n_items} items cannot be split into a multiple of {num_replicas} "
        f"(one equal share per replica); merging the {surplus} smallest pairs, so up to {surplus} batches "
        "exceed batch_size/max_tokens. "
        "Pass drop_last=True to drop the surplus batches instead.",
        stacklevel=3,
    )
    for _ in range(surplus):
        # The cheapest merge is among the smallest batches; a few candidates suffice since surplus < num_replicas.
        by_tokens = sorted(range(len(batches)), key=lambda i: _padded_steps(batches[i], lengths))
        candidates = by_tokens[: 2 * num_replicas]
        first, second = min(
            ((a, b) for a in candidates for b in candidates if a < b),
            key=lambda pair: _padded_steps(batches[pair[0]] + batches[pair[1]], lengths),
        )
        batches[first] = sorted(batches[first] + batches[second], key=lengths.__getitem__)
        del batches[second]
    return batches


def _padded_steps(batch: Sequence[int], lengths: Sequence[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


def _validated_lengths(lengths: Sequence[int]) -> list[int]:
    try:
        values = [operator.index(length) for length in lengths]
    except TypeError as error:
        raise DataError(f"lengths must be a sequence of ints (one per dataset item): {error}") from error
    if not values:
        raise DataError("lengths is empty; BucketBatchSampler needs the length of every dataset item.")
    shortest = min(values)
    if shortest < 1:
        raise DataError(
            f"lengths must all be >= 1, but item {values.index(shortest)} has length {shortest}; "
            "drop empty sequences from the data set."
        )
    return values


def _as_int(name: str, value: int) -> int:
    """`value` as an int; numpy and torch integers pass, bools and floats are refused."""
    if isinstance(value, bool):
        raise DataError(f"{name} must be an int, got {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise DataError(f"{name} must be an int, got {value!r}.") from None


def _optional_positive_int(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    as_int = _as_int(name, value)
    if as_int < 1:
        raise DataError(f"{name} must be a positive int or None, got {value!r}; use a value >= 1.")
    return as_int


def resolve_num_replicas(num_replicas: int | None, distributed_sampler: DistributedSampler | None) -> int:
    """Explicit argument, else the injected DistributedSampler's, else the process group's, else 1."""
    if num_replicas is not None:
        resolved = _optional_positive_int("num_replicas", num_replicas)
        assert resolved is not None, "a non-None value stays non-None"
        return resolved
    if distributed_sampler is not None:
        return int(distributed_sampler.num_replicas)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def resolve_rank(rank: int | None, distributed_sampler: DistributedSampler | None) -> int:
    """Explicit argument, else the injected DistributedSampler's, else the process group's, else 0."""
    if rank is not None:
        return _as_int("rank", rank)
    if distributed_sampler is not None:
        return int(distributed_sampler.rank)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
