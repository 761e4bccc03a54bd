"""Masked poolings from per-step encoder outputs (B, T, D*H) to one vector per sequence (B, D*H)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError
from seqlit.nn.device import to_device_async

PoolingType = Literal["last", "mean", "attention", "mean_max"]


class SequencePooling(nn.Module):
    """`last`: last valid step of the forward direction and first step of the backward one;
    `mean`: mean over valid steps; `attention`: learned masked attention over steps; `mean_max`: the mean and
    the per-feature maximum over valid steps, side by side (twice as wide: see `output_size`).

    Every mode ignores padded steps, so pooling a sequence alone or in a padded batch agrees.
    """

    def __init__(self, mode: PoolingType, input_size: int, num_directions: int = 1) -> None:
        super().__init__()
        if mode not in get_args(PoolingType):
            raise SettingError(f"unknown pooling {mode!r}; choose 'last', 'mean', 'attention' or 'mean_max'.")
        if input_size % num_directions:
            raise ValueError(f"input_size {input_size} is not divisible by num_directions {num_directions}")
        self.mode = mode
        self.output_size = 2 * input_size if mode == "mean_max" else input_size
        self.num_directions = num_directions
        self.attention = AttentionPooling(input_size) if mode == "attention" else None

    def forward(self, outputs: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        """outputs (B, T, D*H), mask (B, T) bool, lengths (B,) -> (B, D*H)."""
        if self.mode == "mean":
            return masked_mean(outputs, mask)
        if self.mode == "mean_max":
            return torch.cat([masked_mean(outputs, mask), masked_max(outputs, mask)], dim=-1)  # (B, 2*D*H)
        if self.mode == "attention":
            assert self.attention is not None
            pooled, _ = self.attention(outputs, mask)
            return pooled
        return last_valid_step(outputs, lengths, self.num_directions)


class AttentionPooling(nn.Module):
    """Additive attention with a learned query: score_t = v · tanh(W h_t), softmax over valid steps."""

    def __init__(self, input_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        attention_size = attention_size or input_size
        self.project = nn.Linear(input_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, outputs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """outputs (B, T, H), mask (B, T) -> pooled (B, H), weights (B, T) (zero on padding)."""
        scores = self.score(torch.tanh(self.project(outputs))).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T)
        pooled = torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)  # (B, H)
        return pooled, weights


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of (B, T, H) `values`, counting only steps where the (B, T) mask is True."""
    weights = mask.unsqueeze(-1).to(values.dtype)  # (B, T, 1)
    total = (values * weights).sum(dim=1)  # (B, H)
    return total / weights.sum(dim=1).clamp_min(1.0)  # (B, H)


def masked_max(values: Tensor, mask: Tensor) -> Tensor:
    """Per-feature maximum over the valid steps of (B, T, H) `values`; a sequence with none gives zeros."""
    lowest = torch.finfo(values.dtype).min
    peak = values.masked_fill(~mask.unsqueeze(-1), lowest).amax(dim=1)  # (B, H)
    return torch.where(mask.any(dim=1, keepdim=True), peak, torch.zeros_like(peak))  # (B, H)


def last_valid_step(outputs: Tensor, lengths: Tensor, num_directions: int = 1) -> Tensor:
    """Forward half at step `length - 1`, backward half at step 0: (B, T, D*H) -> (B, D*H).

    For a bidirectional RNN the backward direction has read the whole sequence at step 0, so
    taking its last padded step would return a state that has only seen padding.
    """
    batch = torch.arange(outputs.shape[0], device=outputs.device)  # (B,)
    last = (to_device_async(lengths, outputs.device) - 1).clamp_min(0)  # (B,)
    if num_directions == 1:
        return outputs[batch, last]  # (B, H)
    hidden = outputs.shape[-1] // 2
    forward = outputs[batch, last, :hidden]  # (B, H)
    backward = outputs[:, 0, hidden:]  # (B, H)
    return torch.cat([forward, backward], dim=-1)  # (B, 2H)
