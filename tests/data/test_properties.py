"""Property tests for the padding contract (pad -> mask -> collate -> bucketing -> padding statistics).

They extend test_functional / test_collate / test_bucketing, which hold the first properties, to what those
leave out: lengths from 1 up to 2000, any padding value, token-id (1-D) and feature (2-D) items, grids padded
beyond the longest item, per-step targets, the seq2seq and forecasting collators, `drop_last`, and padding
statistics that must agree across the sampler's plan, the collated batches and `seqlit doctor`.
"""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from seqlit.data.bucketing import BucketBatchSampler
from seqlit.data.collate import ForecastCollator, ForecastSample, Sample, Seq2SeqCollator, Seq2SeqSample, SequenceCollator
from seqlit.data.functional import lengths_to_mask, mask_to_lengths, pad_sequences
from seqlit.padding import padding_counts, padding_ratio
from seqlit.types import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID

MAX_LENGTH = 2000

# Lengths skewed to the edges that break padding code: a single step, and very long items.
lengths_strategy = st.one_of(st.integers(1, 40), st.integers(1, MAX_LENGTH), st.sampled_from([1, 2, MAX_LENGTH]))
padding_values = st.sampled_from([0.0, -1.0, 7.5, float(IGNORE_INDEX)])


def expected_mask(lengths: list[int], total: int) -> torch.Tensor:
    """The reference mask, built row by row without broadcasting tricks."""
    mask = torch.zeros(len(lengths), total, dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, :length] = True
    return mask


def make_items(lengths: list[int], feature_shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.long:
        # Ids from 4 up, so no real token can be mistaken for PAD_ID or the padding value.
        return [torch.randint(4, 1000, (n, *feature_shape), generator=generator) for n in lengths]
    return [torch.randn((n, *feature_shape), generator=generator) for n in lengths]


# ---- pad / mask / counts ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(lengths_strategy, min_size=1, max_size=12),
    feature_shape=st.sampled_from([(), (1,), (3,)]),
    dtype=st.sampled_from([torch.float32, torch.long]),
    padding_value=padding_values,
    extra=st.one_of(st.none(), st.integers(0, 50)),
    seed=st.integers(0, 2**16),
)
def test_pad_and_mask_keep_every_real_step_and_pad_the_rest(
    lengths: list[int],
    feature_shape: tuple[int, ...],
    dtype: torch.dtype,
    padding_value: float,
    extra: int | None,
    seed: int,
) -> None:
    items = make_items(lengths, feature_shape, dtype, seed)
    originals = [item.clone() for item in items]
    grid = max(lengths) + (extra or 0)
    pad = int(padding_value) if dtype == torch.long else padding_value
    padded = pad_sequences(items, pad, max_length=None if extra is None else grid)
    assert padded.shape == (len(lengths), grid, *feature_shape) and padded.dtype == dtype
    lengths_tensor = torch.tensor(lengths)
    mask = lengths_to_mask(lengths_tensor, grid)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected_mask(lengths, grid))
    assert torch.equal(mask_to_lengths(mask), lengths_tensor)
    for row, (item, length) in enumerate(zip(originals, lengths)):
        assert torch.equal(padded[row, :length], item)
        assert torch.all(padded[row, length:] == pad)
    assert all(torch.equal(a, b) for a, b in zip(items, originals)), "the inputs are never modified"
    n_tokens, n_pad = padding_counts(lengths_tensor, grid)
    assert (n_tokens, n_pad) == (sum(lengths), len(lengths) * grid - sum(lengths))
    assert n_pad == int((~mask).sum())


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(lengths_strategy, min_size=1, max_size=8), short_by=st.integers(1, 50))
def test_a_grid_shorter_than_the_longest_item_is_refused(lengths: list[int], short_by: int) -> None:
    grid = max(lengths) - short_by
    assume(grid >= 0)
    with pytest.raises(ValueError, match="max_length"):
        pad_sequences([torch.zeros(n) for n in lengths], max_length=grid)
    with pytest.raises(ValueError, match="max_length"):
        lengths_to_mask(torch.tensor(lengths), grid)
    with pytest.raises(ValueError, match="padded_length"):
        padding_counts(torch.tensor(lengths), grid)


# ---- collators -------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(lengths_strategy, min_size=1, max_size=10),
    per_step_targets=st.booleans(),
    token_ids=st.booleans(),
    input_padding=padding_values,
    seed=st.integers(0, 2**16),
)
def test_sequence_collator_pads_inputs_and_targets_and_counts_padding(
    lengths: list[int], per_step_targets: bool, token_ids: bool, input_padding: float, seed: int
) -> None:
    inputs = make_items(lengths, () if token_ids else (2,), torch.long if token_ids else torch.float32, seed)
    targets = [torch.arange(n) % 5 if per_step_targets else torch.tensor(i % 3) for i, n in enumerate(lengths)]
    samples = [Sample(index=10 + i, inputs=x, target=y) for i, (x, y) in enumerate(zip(inputs, targets))]
    pad = int(input_padding) if token_ids else input_padding
    batch = SequenceCollator(input_padding_value=pad)(samples)
    longest = max(lengths)
    assert batch.lengths.tolist() == lengths and batch.indices.tolist() == [10 + i for i in range(len(lengths))]
    assert torch.equal(batch.mask, expected_mask(lengths, longest))
    for row, length in enumerate(lengths):
        assert torch.equal(batch.inputs[row, :length], inputs[row])
        assert torch.all(batch.inputs[row, length:] == pad)
    if per_step_targets:
        assert batch.targets.shape == (len(lengths), longest)
        assert torch.all(batch.targets[~batch.mask] == IGNORE_INDEX)
        assert torch.equal(batch.targets[batch.mask], torch.cat(targets))
    else:
        assert torch.equal(batch.targets, torch.stack(targets))
    assert batch.n_tokens == sum(lengths) == int(batch.mask.sum())
    assert batch.n_tokens + batch.n_pad == len(lengths) * longest
    assert 0.0 <= batch.padding_ratio <= 1.0
    assert batch.padding_ratio == pytest.approx(padding_ratio(lengths, [range(len(lengths))]), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    source_lengths=st.lists(lengths_strategy, min_size=1, max_size=8),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_seq2seq_collator_masks_sources_and_frames_targets(
    source_lengths: list[int], data: st.DataObject, seed: int
) -> None:
    target_lengths = data.draw(st.lists(st.integers(0, 60), min_size=len(source_lengths), max_size=len(source_lengths)))
    sources = make_items(source_lengths, (), torch.long, seed)
    targets = make_items(target_lengths, (), torch.long, seed + 1)
    samples = [
        Seq2SeqSample(index=i, source=s, target=t, references=[tuple(t.tolist())])
        for i, (s, t) in enumerate(zip(sources, targets))
    ]
    batch = Seq2SeqCollator()(samples)
    longest_source, longest_target = max(source_lengths), max(target_lengths)
    assert batch.source_lengths.tolist() == source_lengths
    assert torch.equal(batch.source_mask, expected_mask(source_lengths, longest_source))
    assert torch.all(batch.sources[~batch.source_mask] == PAD_ID)
    assert batch.target_inputs.shape == batch.target_outputs.shape == (len(samples), longest_target + 1)
    for row, (source, target) in enumerate(zip(sources, targets)):
        n = target.shape[0]
        assert torch.equal(batch.sources[row, : source.shape[0]], source)
        assert batch.target_inputs[row, 0] == BOS_ID
        assert torch.equal(batch.target_inputs[row, 1 : n + 1], target)
        assert torch.all(batch.target_inputs[row, n + 1 :] == PAD_ID)
        assert torch.equal(batch.target_outputs[row, :n], target)
        assert batch.target_outputs[row, n] == EOS_ID
        assert torch.all(batch.target_outputs[row, n + 1 :] == IGNORE_INDEX)
    assert batch.n_tokens == sum(source_lengths)
    assert batch.n_tokens + batch.n_pad == len(samples) * longest_source
    assert 0.0 <= batch.padding_ratio <= 1.0


@settings(max_examples=30, deadline=None)
@given(
    context_lengths=st.lists(lengths_strategy, min_size=1, max_size=8),
    horizon=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_forecast_collator_pads_contexts_and_stacks_horizons(
    context_lengths: list[int], horizon: int, seed: int
) -> None:
    contexts = make_items(context_lengths, (3,), torch.float32, seed)
    samples = [
        ForecastSample(index=i, inputs=x, target=torch.full((horizon,), float(i)),
                       target_mask=torch.arange(horizon) % 2 == 0, location=float(i), scale=1.0 + i, mase_scale=2.0)
        for i, x in enumerate(contexts)
    ]
    batch = ForecastCollator()(samples)
    longest = max(context_lengths)
    assert torch.equal(batch.mask, expected_mask(context_lengths, longest))
    assert batch.lengths.tolist() == context_lengths
    for row, (context, length) in enumerate(zip(contexts, context_lengths)):
        assert torch.equal(batch.inputs[row, :length], context)
        assert torch.all(batch.inputs[row, length:] == 0.0)
    assert batch.targets.shape == batch.target_mask.shape == (len(samples), horizon)
    assert batch.location.tolist() == [float(i) for i in range(len(samples))]
    assert batch.n_tokens == sum(context_lengths)
    assert batch.n_tokens + batch.n_pad == len(samples) * longest
    assert 0.0 <= batch.padding_ratio <= 1.0


# ---- bucketing: one epoch's plan, over ranks, with its padding statistics -------------------------------------


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_bucket_plan_partitions_the_epoch_and_its_padding_adds_up(data: st.DataObject) -> None:
    lengths = data.draw(st.lists(lengths_strategy, min_size=1, max_size=400), label="lengths")
    num_replicas = data.draw(st.integers(1, min(4, len(lengths))), label="num_replicas")
    batch_size = data.draw(st.none() | st.integers(1, 64), label="batch_size")
    token_cap = st.integers(max(lengths), 6 * max(lengths))
    max_tokens = data.draw(token_cap if batch_size is None else st.none() | token_cap, label="max_tokens")
    drop_last = data.draw(st.booleans(), label="drop_last")
    shuffle = data.draw(st.booleans(), label="shuffle")
    multiplier = data.draw(st.none() | st.integers(1, 4), label="bucket_size_multiplier")
    epoch = data.draw(st.integers(0, 5), label="epoch")
    per_rank: list[list[list[int]]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rank in range(num_replicas):
            sampler = BucketBatchSampler(lengths, batch_size=batch_size, max_tokens=max_tokens, drop_last=drop_last,
                                         shuffle=shuffle, bucket_size_multiplier=multiplier, seed=3,
                                         num_replicas=num_replicas, rank=rank)
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(sampler) == len(batches)
            per_rank.append(batches)
    merged = bool(caught)  # the documented (warned) merge of too few batches, the only way a cap is exceeded
    assert not (merged and drop_last), "drop_last drops the surplus instead of merging"

    # Every rank steps in lockstep, and no index is served twice (the ranks are disjoint).
    assert len({len(batches) for batches in per_rank}) == 1
    counts = Counter(i for batches in per_rank for batch in batches for i in batch)
    assert set(counts.values()) <= {1}
    assert set(counts) <= set(range(len(lengths)))
    if not drop_last:
        assert sorted(counts) == list(range(len(lengths))), "one epoch is a permutation of the indices"
    else:
        # Only short pool tails (< batch_size each) and the surplus batches for equal rank counts are dropped.
        n_pools = 1 if multiplier is None else -(-len(lengths) // _pool_size(lengths, batch_size, max_tokens, multiplier))
        tail = 0 if batch_size is None else n_pools * (batch_size - 1)
        biggest = len(lengths) if batch_size is None else batch_size
        assert len(lengths) - len(counts) <= tail + (num_replicas - 1) * biggest

    for batches in per_rank:
        for batch in batches:
            assert len(batch) >= 1
            if not merged:
                assert batch_size is None or len(batch) <= batch_size
                assert max_tokens is None or len(batch) * max(lengths[i] for i in batch) <= max_tokens

    # Padding statistics: the collated grid is real + pad steps, batch by batch and over the epoch.
    all_batches = [batch for batches in per_rank for batch in batches]
    real = pad = 0
    for batch in all_batches:
        batch_lengths = torch.tensor([lengths[i] for i in batch])
        n_tokens, n_pad = padding_counts(batch_lengths)
        assert n_tokens + n_pad == len(batch) * max(lengths[i] for i in batch)
        real, pad = real + n_tokens, pad + n_pad
    assert real == sum(lengths[i] for i in counts)
    ratio = padding_ratio(lengths, all_batches)
    assert 0.0 <= ratio <= 1.0
    assert ratio == pytest.approx(pad / (real + pad) if real + pad else 0.0, abs=1e-12)


def _pool_size(lengths: list[int], batch_size: int | None, max_tokens: int | None, multiplier: int) -> int:
    """The sampler's pool size (mirrors BucketBatchSampler._pool_size), to bound what drop_last may drop."""
    if batch_size is not None:
        return multiplier * batch_size
    assert max_tokens is not None
    return multiplier * max(1, max_tokens // sorted(lengths)[len(lengths) // 2])


class _LengthsDataset(torch.utils.data.Dataset):
    def __init__(self, lengths: list[int]) -> None:
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Sample:
        return Sample(index=index, inputs=torch.ones(self.lengths[index], 1), target=torch.tensor(0))


class _DataModule:
    """What `seqlit doctor` asks of a data module: setup and a training loader."""

    bucketing = True

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def setup(self, stage: str) -> None:
        pass

    def train_dataloader(self) -> DataLoader:
        return self.loader


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(lengths_strategy, min_size=2, max_size=120),
    batch_size=st.integers(1, 16),
    multiplier=st.none() | st.integers(1, 3),
)
def test_padding_ratio_agrees_across_sampler_collate_and_doctor(
    lengths: list[int], batch_size: int, multiplier: int | None
) -> None:
    from seqlit.doctor import Diagnosis, padding

    sampler = BucketBatchSampler(lengths, batch_size=batch_size, bucket_size_multiplier=multiplier, seed=1)
    loader = DataLoader(_LengthsDataset(lengths), batch_sampler=sampler, collate_fn=SequenceCollator())
    plan = list(sampler)
    collated = list(loader)
    # What PaddingRatioMonitor sums over an epoch: the collated batches' real and padded steps.
    n_tokens = sum(batch.n_tokens for batch in collated)
    n_pad = sum(batch.n_pad for batch in collated)
    assert n_tokens == sum(lengths)
    assert [batch.indices.tolist() for batch in collated] == plan
    ratio = padding_ratio(lengths, plan)
    assert n_pad / (n_tokens + n_pad) == pytest.approx(ratio, abs=1e-12)
    diagnosis = Diagnosis()
    padding(_DataModule(loader), diagnosis)
    (name, fact), = diagnosis.facts
    assert name == "padding" and fact.startswith(f"{ratio:.1%} of the padded training grid")
