"""Batch contracts shared by data and models, and the shape legend used in every shape comment.

Shape legend: B batch, T time (padded length), H hidden, V vocab, C classes, F features,
D directions (1 or 2), L layers.

The batch is the contract between data and model: padded tensors plus `lengths` and `mask`, so a
model never has to guess where the padding is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

PAD_ID: int = 0
"""Token id used for padding in token-level inputs (vocabularies reserve it)."""

IGNORE_INDEX: int = -100
"""Target value that losses skip (matches `torch.nn.CrossEntropyLoss(ignore_index=-100)`)."""


@dataclass
class SeqBatch:
    """A padded batch of variable-length sequences.

    `inputs` is (B, T, F) float for real-valued series or (B, T) long for token ids; `targets`
    is (B,) for sequence-level labels or (B, T) for per-step targets padded with IGNORE_INDEX.
    `indices` are the dataset positions of the samples, so predictions can be put back in order.
    """

    inputs: Tensor  # (B, T, F) float or (B, T) long
    targets: Tensor  # (B,) long, or (B, T) padded with IGNORE_INDEX
    lengths: Tensor  # (B,) long, real steps per sequence
    mask: Tensor  # (B, T) bool, True on real steps
    indices: Tensor  # (B,) long, dataset positions
    n_tokens: int  # real steps in the batch
    n_pad: int  # padded steps in the batch

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def padding_ratio(self) -> float:
        """Fraction of the padded (B, T) grid that is padding."""
        total = self.n_tokens + self.n_pad
        return self.n_pad / total if total else 0.0

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SeqBatch:
        """Moves tensors to `device`; `lengths` stays on the CPU, where packing needs it."""
        return replace(
            self,
            inputs=self.inputs.to(device, non_blocking=non_blocking),
            targets=self.targets.to(device, non_blocking=non_blocking),
            mask=self.mask.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> SeqBatch:
        """Lets `DataLoader(pin_memory=True)` pin a custom batch type."""
        return replace(
            self,
            inputs=self.inputs.pin_memory(),
            targets=self.targets.pin_memory(),
            mask=self.mask.pin_memory(),
            lengths=self.lengths.pin_memory(),
            indices=self.indices.pin_memory(),
        )
