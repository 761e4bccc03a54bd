import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.functional import lengths_to_mask, mask_to_lengths, pad_sequences, padding_counts


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
