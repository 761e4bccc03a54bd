import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.functional import (
    lengths_to_mask,
    mask_to_lengths,
    pad_sequences,
    step_dropout,
    time_jitter,
    token_dropout,
)
from seqlit.padding import padding_counts


def test_pad_sequences_right_pads_and_keeps_values() -> None:
    a, b = torch.ones(3, 2), torch.full((1, 2), 2.0)
    padded = pad_sequences([a, b], padding_value=-1.0)
    assert padded.shape == (2, 3, 2)
    assert torch.equal(padded[0], a)
    assert torch.equal(padded[1, 0], torch.tensor([2.0, 2.0]))
    assert torch.all(padded[1, 1:] == -1.0)


def test_pad_sequences_refuses_to_truncate() -> None:
    with pytest.raises(ValueError, match="max_length"):
        pad_sequences([torch.ones(5)], max_length=3)


def test_pad_sequences_rejects_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pad_sequences([])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40))
def test_mask_lengths_and_padding_counts_agree(lengths_list: list[int]) -> None:
    lengths = torch.tensor(lengths_list)
    mask = lengths_to_mask(lengths)
    assert mask.shape == (len(lengths_list), max(lengths_list))
    assert torch.equal(mask_to_lengths(mask), lengths)
    # right padding: every True precedes every False in a row
    assert torch.all(mask[:, :-1] | ~mask[:, 1:])
    n_tokens, n_pad = padding_counts(lengths)
    assert n_tokens == int(mask.sum()) == sum(lengths_list)
    assert n_tokens + n_pad == mask.numel()


def test_time_jitter_scales_noise_per_series_and_leaves_padding_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(1, 400, 1), 1000 * torch.randn(1, 400, 1)])  # (2, 400, 1): two scales
    mask = torch.ones(2, 400, dtype=torch.bool)
    mask[0, 300:] = False
    jittered = time_jitter(values, mask, sigma=0.1, generator=generator)
    noise = jittered - values
    assert torch.equal(noise[0, 300:], torch.zeros(100, 1))  # padded steps untouched
    ratios = [float(noise[b][mask[b]].std() / values[b][mask[b]].std()) for b in range(2)]
    assert all(0.07 < r < 0.13 for r in ratios)  # ~sigma relative to each series' own spread
    assert torch.equal(time_jitter(values, mask, sigma=0.0), values)


def test_step_and_token_dropout_rates_padding_and_protection() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.ones(4, 1000, 2)
    mask = torch.ones(4, 1000, dtype=torch.bool)
    mask[:, 800:] = False
    dropped_values, dropped = step_dropout(values, mask, p=0.25, fill=-1.0, generator=generator)
    assert not dropped[:, 800:].any()
    assert 0.22 < float(dropped[:, :800].float().mean()) < 0.28
    assert torch.equal(dropped_values[dropped], torch.full((int(dropped.sum()), 2), -1.0))
    ids = torch.randint(4, 50, (4, 1000))
    protected = torch.zeros_like(ids, dtype=torch.bool)
    protected[:, 0] = True
    noisy = token_dropout(ids, p=0.1, replacement=1, protected=protected, generator=generator)
    assert torch.equal(noisy[:, 0], ids[:, 0])
    assert 0.08 < float((noisy == 1).float().mean()) < 0.12
    with pytest.raises(ValueError, match="switch the augmentation off"):
        token_dropout(ids, p=1.5, replacement=1)
