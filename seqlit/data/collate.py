"""Turns a list of samples into a padded `SeqBatch` (or `Seq2SeqBatch`, `ForecastBatch`) with its padding statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor

from seqlit.data.functional import lengths_to_mask, pad_sequences
from seqlit.padding import padding_counts
from seqlit.types import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, ForecastBatch, Seq2SeqBatch, SeqBatch


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


class Seq2SeqSample(TypedDict):
    """One source/target item: (S,) source ids, (T,) target ids without BOS/EOS (None at predict time)
    and every acceptable target (id tuples without BOS/EOS; empty at predict time)."""

    index: int
    source: Tensor
    target: Tensor | None
    references: list[tuple[int, ...]]


class Seq2SeqCollator:
    """Pads a list of `Seq2SeqSample`s into one `Seq2SeqBatch` for teacher-forced training.

    The decoder reads `BOS y` and predicts `y EOS`; the predicted side is padded with IGNORE_INDEX so
    padding never counts in the loss. Padding statistics are over the source grid, which bucketing sorts by.
    """

    def __call__(self, samples: Sequence[Seq2SeqSample]) -> Seq2SeqBatch:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of samples")
        sources = pad_sequences([s["source"] for s in samples], PAD_ID)  # (B, S)
        source_lengths = torch.tensor([int(s["source"].shape[0]) for s in samples], dtype=torch.long)  # (B,)
        n_tokens, n_pad = padding_counts(source_lengths, sources.shape[1])
        targets = [s["target"] for s in samples]
        if all(t is None for t in targets):
            target_inputs = torch.empty((len(samples), 0), dtype=torch.long)  # (B, 0)
            target_outputs = torch.empty((len(samples), 0), dtype=torch.long)  # (B, 0)
        elif any(t is None for t in targets):
            raise ValueError("a batch mixes samples with and without targets; collate predict items separately")
        else:
            target_inputs, target_outputs = shift_targets([t for t in targets if t is not None])
        return Seq2SeqBatch(
            sources=sources,
            source_lengths=source_lengths,
            source_mask=lengths_to_mask(source_lengths, sources.shape[1]),  # (B, S)
            target_inputs=target_inputs,
            target_outputs=target_outputs,
            references=[list(s["references"]) for s in samples],
            indices=torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),  # (B,)
            n_tokens=n_tokens,
            n_pad=n_pad,
        )


def shift_targets(targets: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """(T_i,) target ids -> decoder inputs `BOS y` padded with PAD_ID and outputs `y EOS` padded with IGNORE_INDEX.

    Both are (B, T + 1) with T the longest target, so position t of the inputs predicts position t of the outputs.
    """
    bos = torch.tensor([BOS_ID], dtype=torch.long)
    eos = torch.tensor([EOS_ID], dtype=torch.long)
    inputs = pad_sequences([torch.cat([bos, t.long()]) for t in targets], PAD_ID)  # (B, T+1)
    outputs = pad_sequences([torch.cat([t.long(), eos]) for t in targets], IGNORE_INDEX)  # (B, T+1)
    return inputs, outputs


class ForecastSample(TypedDict):
    """One forecasting window: scaled (T, F) context, (H,) scaled targets with their mask, and the
    window's affine scaling and MASE denominator."""

    index: int
    inputs: Tensor
    target: Tensor
    target_mask: Tensor
    location: float
    scale: float
    mase_scale: float


class ForecastCollator:
    """Pads forecasting windows' contexts (at the end) into one `ForecastBatch`; horizons are equal length."""

    def __call__(self, samples: Sequence[ForecastSample]) -> ForecastBatch:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of samples")
        inputs = pad_sequences([s["inputs"] for s in samples], 0.0)  # (B, T, F)
        lengths = torch.tensor([int(s["inputs"].shape[0]) for s in samples], dtype=torch.long)  # (B,)
        n_tokens, n_pad = padding_counts(lengths, inputs.shape[1])
        return ForecastBatch(
            inputs=inputs,
            lengths=lengths,
            mask=lengths_to_mask(lengths, inputs.shape[1]),  # (B, T)
            targets=torch.stack([s["target"] for s in samples]),  # (B, H)
            target_mask=torch.stack([s["target_mask"] for s in samples]),  # (B, H)
            location=torch.tensor([s["location"] for s in samples], dtype=torch.float64),  # (B,)
            scale=torch.tensor([s["scale"] for s in samples], dtype=torch.float64),  # (B,)
            mase_scale=torch.tensor([s["mase_scale"] for s in samples], dtype=torch.float64),  # (B,)
            indices=torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),  # (B,)
            n_tokens=n_tokens,
            n_pad=n_pad,
        )
