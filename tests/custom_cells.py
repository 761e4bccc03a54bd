"""Recurrent cells written outside seqlit, as a user would: the tests name them in YAML by import path."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class IndRNNCell(nn.Module):
    """Independently recurrent cell (Li et al. 2018): h' = relu(W x + u * h + b), u a vector, |u| <= 1."""

    def __init__(self, input_size: int, hidden_size: int, recurrent_max: float = 1.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.recurrent_max = recurrent_max
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Parameter(torch.empty(hidden_size).uniform_(0.0, recurrent_max))

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (B, I), state (h (B, H),) -> h' (B, H), (h',)."""
        recurrent = self.recurrent.clamp(-self.recurrent_max, self.recurrent_max)  # (H,)
        hidden = torch.relu(self.input(x) + recurrent * state[0])  # (B, H)
        return hidden, (hidden,)


class MinimalGRUCell(nn.Module):
    """A minimal gated unit (Zhou et al. 2016): one forget gate, h' = (1 - f) * h + f * tanh(W [x; f * h])."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.gate = nn.Linear(input_size + hidden_size, hidden_size)
        self.candidate = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        hidden = state[0]  # (B, H)
        forget = torch.sigmoid(self.gate(torch.cat([x, hidden], dim=-1)))  # (B, H)
        candidate = torch.tanh(self.candidate(torch.cat([x, forget * hidden], dim=-1)))  # (B, H)
        hidden = (1 - forget) * hidden + forget * candidate  # (B, H)
        return hidden, (hidden,)


class TwoPartCell(nn.Module):
    """A cell with a two-part state (h, m) of different widths, to check state handling is generic."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.state_sizes = (hidden_size, 3)
        self.step = nn.Linear(input_size + hidden_size + 3, hidden_size + 3)

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        mixed = torch.tanh(self.step(torch.cat([x, *state], dim=-1)))  # (B, H + 3)
        hidden, memory = mixed[:, : self.hidden_size], mixed[:, self.hidden_size :]
        return hidden, (hidden, memory)
