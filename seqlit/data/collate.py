"""Turns a list of samples into a padded `SeqBatch` with its padding statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor

from seqlit.data.functional import lengths_to_mask, pad_sequences, padding_counts
from seqlit.types import IGNORE_INDEX, SeqBatch


class Sample(TypedDict):
    """One data set item: its position, a (T, F) or (T,) input and a scalar or (T,) target."""

    index: int
    inputs: Tensor
    target: Tensor


class SequenceCollator:
    """Pads inputs (and per-step targets) of a list of samples into one `SeqBatch`.

    Sequence-level targets (scalars) are stacked to (B,); per-step targets are padded with
    `IGNORE_INDEX` so losses skip them.
    """

    def __init__(self, input_padding_value: float = 0.0, target_padding_value: int = IGNORE_INDEX) -> None:
        self.input_padding_value = input_padding_value
        self.target_padding_value = target_padding_value

    def __call__(self, samples: Sequence[Sample]) -> SeqBatch:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of samples")
        inputs = pad_sequences([s["inputs"] for s in samples], self.input_padding_value)  # (B, T, F)
        lengths = torch.tensor([int(s["inputs"].shape[0]) for s in samples], dtype=torch.long)  # (B,)
        targets = _collate_targets([s["target"] for s in samples], self.target_padding_value)
        n_tokens, n_pad = padding_counts(lengths, inputs.shape[1])
        return SeqBatch(
            inputs=inputs,
            targets=targets,
            lengths=lengths,
            mask=lengths_to_mask(lengths, inputs.shape[1]),  # (B, T)
            indices=torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),  # (B,)
            n_tokens=n_tokens,
            n_pad=n_pad,
        )


def _collate_targets(targets: list[Tensor], padding_value: int) -> Tensor:
    if all(t.dim() == 0 for t in targets):
        return torch.stack(targets)  # (B,)
    return pad_sequences(targets, padding_value)  # (B, T)
