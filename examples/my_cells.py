"""A recurrent cell written outside seqlit: any module built as Cell(input_size, hidden_size) with a
`hidden_size` and forward(x, state) -> (h, state). See README "Extending seqlit"."""

import torch
from torch import nn


class IndRNNCell(nn.Module):
    """Independently recurrent cell (Li et al. 2018): h' = relu(W x + u * h + b), one recurrent weight per unit."""

    def __init__(self, input_size: int, hidden_size: int, recurrent_max: float = 1.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.recurrent_max = recurrent_max
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Parameter(torch.empty(hidden_size).uniform_(0.0, recurrent_max))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x (B, I), state (h (B, H),) -> h' (B, H), (h',)."""
        recurrent = self.recurrent.clamp(-self.recurrent_max, self.recurrent_max)  # (H,)
        hidden = torch.relu(self.input(x) + recurrent * state[0])  # (B, H)
        return hidden, (hidden,)
