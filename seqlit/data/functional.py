"""Pure tensor functions for padding and masking; the collate and modules wrap them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_sequences(
    sequences: Sequence[Tensor], padding_value: float = 0.0, max_length: int | None = None
) -> Tensor:
    """Stacks variable-length (T_i, ...) tensors into a right-padded (B, T, ...) tensor.

    `max_length` pads further than the longest item (never truncates: a longer item is an error,
    because silently cutting sequences changes what the model sees).
    """
    if len(sequences) == 0:
        raise ValueError("pad_sequences got no sequences: a batch needs at least one item.")
    longest = max(int(s.shape[0]) for s in sequences)
    target_length = longest if max_length is None else max_length
    if target_length < longest:
        raise ValueError(
            f"pad_sequences: an item has {longest} steps but max_length={max_length}; "
            "raise max_length or truncate the data before batching."
        )
    first = sequences[0]
    out = first.new_full((len(sequences), target_length, *first.shape[1:]), padding_value)  # (B, T, ...)
    for row, seq in enumerate(sequences):
        out[row, : seq.shape[0]] = seq
    return out


def lengths_to_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Boolean (B, T) mask that is True on the first `lengths[b]` steps of row b."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    total = int(lengths.max()) if max_length is None else max_length
    steps = torch.arange(total, device=lengths.device)  # (T,)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def mask_to_lengths(mask: Tensor) -> Tensor:
    """Inverse of `lengths_to_mask` for right-padded masks: (B, T) bool -> (B,) long."""
    return mask.long().sum(dim=1)


def padding_counts(lengths: Tensor, padded_length: int | None = None) -> tuple[int, int]:
    """(real steps, padded steps) of a right-padded batch with these lengths."""
    total_length = int(lengths.max()) if padded_length is None else padded_length
    n_tokens = int(lengths.sum())
    return n_tokens, int(lengths.numel()) * total_length - n_tokens

