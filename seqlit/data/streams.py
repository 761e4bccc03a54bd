"""Contiguous token streams for truncated BPTT: B parallel streams cut into chunks of (about) k steps.

The corpus is one long id sequence. `batchify` lays it out as rows, each a contiguous stretch of
text; batch i holds the i-th chunk of every row, so row b of batch i+1 continues row b of batch i and
a model can carry its hidden state across batches. Under DDP each rank takes its own block of rows,
i.e. a contiguous shard of the corpus, and every rank has the same number of chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, Sampler

from seqlit.data.bucketing import resolve_num_replicas, resolve_rank
from seqlit.errors import DataError
from seqlit.types import LMBatch

ChunkKey = tuple[int, int, int]  # (row, start, length): inputs row[start:start+length], targets one step later


def batchify(ids: Tensor, n_rows: int) -> Tensor:
    """ids (N,) -> (n_rows, N // n_rows): row r is the r-th contiguous stretch; the tail that does not fill a row is dropped."""
    if ids.dim() != 1:
        raise ValueError(f"batchify takes a 1-D id sequence, got shape {tuple(ids.shape)}.")
    row_length = ids.numel() // n_rows
    if row_length < 2:
        raise DataError(
            f"{ids.numel()} tokens cannot fill {n_rows} streams with at least 2 tokens each (one input, one "
            "target); use a smaller batch size (data.loader.batch_size, or eval_batch_size for val/test), fewer "
            "devices, or more text in this split."
        )
    return ids[: n_rows * row_length].view(n_rows, row_length)  # (R, N // R)


def chunk_lengths(
    n_steps: int, bptt: int, variable: bool = False, generator: torch.Generator | None = None
) -> list[int]:
    """Lengths of consecutive chunks that cover `n_steps` predicted steps exactly once.

    Fixed: `bptt` steps each (the last may be shorter). Variable (AWD-LSTM, Merity et al. 2018): the same
    number of chunks, each drawn around `bptt` (95%) or `bptt / 2` (5%) with std 5 and at least 5 steps,
    then rescaled to sum to `n_steps`, so an epoch still visits every token once and has a fixed length.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}.")
    n_chunks = math.ceil(n_steps / bptt)
    if not variable or n_chunks == 1:
        return [min(bptt, n_steps - start) for start in range(0, n_steps, bptt)]
    halve = torch.rand(n_chunks, generator=generator) >= 0.95
    centres = torch.where(halve, bptt / 2.0, float(bptt))
    drawn = (centres + 5.0 * torch.randn(n_chunks, generator=generator)).clamp(min=5.0)
    scaled = drawn * (n_steps / float(drawn.sum()))
    lengths = scaled.floor().long().clamp(min=1)
    # Largest remainders take the steps lost to flooring; a surplus (from the clamp) comes off the longest.
    shortfall = n_steps - int(lengths.sum())
    if shortfall > 0:
        order = torch.argsort(scaled - scaled.floor(), descending=True)
        lengths[order[:shortfall]] += 1
    while shortfall < 0:
        lengths[int(lengths.argmax())] -= 1
        shortfall += 1
    assert int(lengths.sum()) == n_steps
    return lengths.tolist()


class StreamChunks(Dataset[Tensor]):
    """Rows of a batchified stream; item (row, start, length) is row[start : start + length + 1] (inputs and targets)."""

    def __init__(self, streams: Tensor, chars_per_token: float = 1.0) -> None:
        self.streams = streams  # (R, L)
        self.chars_per_token = float(chars_per_token)

    def __len__(self) -> int:
        return int(self.streams.shape[0])

    def __getitem__(self, key: ChunkKey) -> Tensor:  # type: ignore[override]
        row, start, length = key
        return self.streams[row, start : start + length + 1]  # (length + 1,)

    def collate(self, pieces: list[Tensor], nominal_length: int | None = None) -> LMBatch:
        """The chunks of one batch -> LMBatch with inputs (B, T) and targets (B, T) one step ahead."""
        block = torch.stack(pieces)  # (B, T + 1)
        return LMBatch(
            inputs=block[:, :-1],
            targets=block[:, 1:],
            chars_per_token=self.chars_per_token,
            nominal_length=block.shape[1] - 1 if nominal_length is None else nominal_length,
        )


class ChunkBatchSampler(BatchSampler):
    """Yields, in order, the chunk keys of this rank's `batch_size` rows: batch i is chunk i of every row.

    Chunk lengths are fixed at `bptt` or, with `variable_length`, redrawn each epoch from (seed, epoch).
    Rank r owns rows [r * batch_size, (r + 1) * batch_size), a contiguous shard of the corpus. Accepts
    `sampler=` so Lightning's DDP re-instantiation keeps it, and reads the epoch from that sampler.
    """

    def __init__(
        self,
        row_length: int,
        batch_size: int,
        bptt: int,
        variable_length: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: Sampler[int] | None = None,
        resume_from: Callable[[], tuple[int | None, int]] | None = None,
    ) -> None:
        # BatchSampler.__init__ is skipped on purpose: the sampler is only a source of (replicas, rank, epoch).
        if row_length < 2:
            raise DataError(f"streams of {row_length} tokens are too short for one input and one target.")
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size and bptt must be >= 1, got {batch_size} and {bptt}.")
        self.row_length = int(row_length)
        self.batch_size = int(batch_size)
        self.bptt = int(bptt)
        self.variable_length = bool(variable_length)
        self.seed = int(seed)
        self.drop_last = False
        distributed = sampler if isinstance(sampler, DistributedSampler) else None
        self.num_replicas = resolve_num_replicas(num_replicas, distributed)
        self.rank = resolve_rank(rank, distributed)
        if not 0 <= self.rank < self.num_replicas:
            raise DataError(f"rank={self.rank} is outside [0, {self.num_replicas}); pass 0 <= rank < num_replicas.")
        self.resume_from = resume_from
        # Lightning calls set_epoch on `batch_sampler.sampler`, so the epoch is kept there.
        self.sampler = sampler if sampler is not None and hasattr(sampler, "set_epoch") else _EpochHolder()

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    @property
    def rows(self) -> range:
        """The stream rows this rank reads (its contiguous shard)."""
        return range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def chunk_plan(self) -> list[tuple[int, int]]:
        """(start, length) of every chunk this epoch; the same on every rank."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        lengths = chunk_lengths(self.row_length - 1, self.bptt, self.variable_length, generator)
        starts = [0, *torch.tensor(lengths).cumsum(0).tolist()[:-1]]
        return list(zip(starts, lengths))

    def __iter__(self) -> Iterator[list[ChunkKey]]:
        plan = self.chunk_plan()
        skip = 0
        if self.resume_from is not None:
            resume_epoch, batches_done = self.resume_from()
            skip = batches_done if resume_epoch == self.epoch else 0
        for start, length in plan[skip:]:
            yield [(row, start, length) for row in self.rows]

    def __len__(self) -> int:
        return len(self.chunk_plan())


class _EpochHolder(Sampler[int]):
    """Keeps the epoch Lightning sets through `batch_sampler.sampler.set_epoch`."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


__all__ = ["ChunkBatchSampler", "StreamChunks", "batchify", "chunk_lengths"]
