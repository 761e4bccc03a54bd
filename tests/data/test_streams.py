"""Contiguous streams for truncated BPTT: layout, chunk plans, rank shards."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.streams import ChunkBatchSampler, StreamChunks, batchify, chunk_lengths
from seqlit.errors import DataError


def test_batchify_rows_are_contiguous_stretches_and_drop_only_the_tail() -> None:
    ids = torch.arange(23)
    rows = batchify(ids, 4)  # (4, 5)
    assert rows.shape == (4, 5)
    assert rows[1].tolist() == [5, 6, 7, 8, 9]
    assert rows.flatten().tolist() == list(range(20))


def test_batchify_refuses_a_split_too_small_for_the_streams() -> None:
    with pytest.raises(DataError, match="smaller batch size"):
        batchify(torch.arange(7), 4)


@settings(max_examples=60, deadline=None)
@given(n_steps=st.integers(1, 5000), bptt=st.integers(1, 200), variable=st.booleans(), seed=st.integers(0, 10))
def test_chunks_cover_every_step_exactly_once(n_steps: int, bptt: int, variable: bool, seed: int) -> None:
    lengths = chunk_lengths(n_steps, bptt, variable, torch.Generator().manual_seed(seed))
    assert sum(lengths) == n_steps
    assert all(length >= 1 for length in lengths)
    assert len(lengths) == -(-n_steps // bptt)  # an epoch has the same number of chunks either way


def test_variable_lengths_vary_around_bptt_and_change_with_the_epoch() -> None:
    first = chunk_lengths(70 * 500, 70, True, torch.Generator().manual_seed(0))
    second = chunk_lengths(70 * 500, 70, True, torch.Generator().manual_seed(1))
    assert len(set(first)) > 10 and first != second
    assert 60 < sum(first) / len(first) < 80
    assert min(first) >= 5


def test_consecutive_batches_continue_each_stream() -> None:
    rows = batchify(torch.arange(1000), 4)  # (4, 250)
    dataset = StreamChunks(rows)
    sampler = ChunkBatchSampler(row_length=250, batch_size=4, bptt=30, num_replicas=1, rank=0)
    batches = [dataset.collate([dataset[key] for key in keys], 30) for keys in sampler]
    assert len(batches) == len(sampler) == 9  # ceil(249 / 30)
    for row in range(4):
        inputs = torch.cat([batch.inputs[row] for batch in batches])
        targets = torch.cat([batch.targets[row] for batch in batches])
        assert inputs.tolist() == rows[row, :-1].tolist()  # every position once, in order
        assert targets.tolist() == rows[row, 1:].tolist()  # always the next token
    assert batches[0].nominal_length == 30 and batches[-1].inputs.shape[1] == 249 - 8 * 30


def test_ranks_get_disjoint_contiguous_shards_and_equal_batch_counts() -> None:
    ids = torch.arange(4000)
    rows = batchify(ids, 2 * 3)  # 3 streams on each of 2 ranks
    seen = []
    counts = []
    for rank in range(2):
        sampler = ChunkBatchSampler(rows.shape[1], 3, 25, variable_length=True, seed=3, num_replicas=2, rank=rank)
        keys = [key for batch in sampler for key in batch]
        counts.append(len(sampler))
        shard = sorted({row for row, _, _ in keys})
        assert shard == list(range(3 * rank, 3 * rank + 3))
        seen.extend(rows[shard].flatten().tolist())
        # rank 0 holds the first half of the corpus, rank 1 the second
    assert counts[0] == counts[1]
    assert sorted(seen) == list(range(rows.numel()))
    assert max(rows[:3].flatten()) < min(rows[3:].flatten())


def test_epoch_changes_variable_plan_and_resume_skips_finished_chunks() -> None:
    sampler = ChunkBatchSampler(2000, 2, 40, variable_length=True, seed=0, num_replicas=1, rank=0)
    epoch0 = sampler.chunk_plan()
    sampler.set_epoch(1)
    assert sampler.chunk_plan() != epoch0
    resumed = ChunkBatchSampler(
        2000, 2, 40, variable_length=True, seed=0, num_replicas=1, rank=0, resume_from=lambda: (1, 5)
    )
    resumed.set_epoch(1)
    assert [batch[0][1:] for batch in resumed] == [tuple(chunk) for chunk in sampler.chunk_plan()[5:]]
