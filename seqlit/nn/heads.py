"""Output heads: from one pooled vector per sequence to class logits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError
from seqlit.nn.dropout import check_probability
from seqlit.nn.init import init_linear_

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    """Dropout, then a linear layer (or a one-hidden-layer MLP with `hidden_size`) to class logits.

    Built as `ClassificationHead(input_size, n_classes, ...)` by the classifier, so YAML can swap it
    (`head: {class_path: my_heads.MyHead, init_args: {...}}`) for any module with that signature.
    """

    def __init__(self, input_size: int, n_classes: int, hidden_size: int | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        check_probability("head dropout", dropout)
        if hidden_size is not None and hidden_size < 1:
            raise SettingError(f"head hidden_size must be >= 1 or null, got {hidden_size}.")
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(input_size, hidden_size) if hidden_size else None
        self.output = nn.Linear(hidden_size or input_size, n_classes)
        for layer in (self.hidden, self.output):
            if layer is not None:
                init_linear_(layer)

    def forward(self, pooled: Tensor) -> Tensor:
        """pooled (B, D*H) -> logits (B, C)."""
        features = self.dropout(pooled)  # (B, D*H)
        if self.hidden is not None:
            features = self.dropout(torch.relu(self.hidden(features)))  # (B, hidden)
        return self.output(features)  # (B, C)
