"""Recurrent encoders over padded batches, run on the fused kernels without reading padding: packed
sequences on cuDNN, length segments on CPU (oneDNN has no packed kernel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlit.nn.init import init_recurrent_
from seqlit.nn.segmented import segmented_rnn

CellType = Literal["gru", "lstm"]
RNN_CLASSES: dict[str, type[nn.GRU] | type[nn.LSTM]] = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class EncoderOutput:
    """Per-step outputs (zeros on padding) and the final state of every layer and direction."""

    outputs: Tensor  # (B, T, D*H), zero on padded steps
    hidden: Tensor  # (L*D, B, H): state at the last valid step (forward) / first step (backward)
    cell: Tensor | None  # (L*D, B, H) LSTM cell state, None for GRU


class RNNEncoder(nn.Module):
    """A GRU or LSTM stack that never reads padding.

    On GPU the batch is packed (`enforce_sorted=False`) and cuDNN skips padded steps; on CPU it runs
    as one oneDNN call per length segment (`segmented_rnn`), since a packed batch would fall back to
    aten's slow per-step loop. Either way the output for a sequence is the same alone or in a padded
    batch. Recurrent weights start orthogonal and the LSTM forget-gate bias at 1.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: CellType = "gru",
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in RNN_CLASSES:
            raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(RNN_CLASSES)}.")
        if num_layers < 1 or hidden_size < 1:
            raise ValueError(f"num_layers and hidden_size must be >= 1, got {num_layers} and {hidden_size}.")
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        # nn.GRU/LSTM apply dropout between layers only; with one layer it would only warn.
        self.rnn = RNN_CLASSES[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        init_recurrent_(self.rnn)

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    def forward(
        self, inputs: Tensor, lengths: Tensor, initial_state: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> EncoderOutput:
        """inputs (B, T, F), lengths (B,) -> EncoderOutput with outputs (B, T, D*H)."""
        if inputs.device.type == "cpu":
            initial = initial_state if isinstance(initial_state, tuple) or initial_state is None else (initial_state,)
            outputs, state = segmented_rnn(self.rnn, inputs, lengths, initial)  # (B, T, D*H)
        else:
            packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, packed_state = self.rnn(packed, initial_state)
            total_length = inputs.shape[1]
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=total_length)  # (B, T, D*H)
            state = packed_state if isinstance(packed_state, tuple) else (packed_state,)
        hidden, cell = (state[0], state[1]) if len(state) == 2 else (state[0], None)  # (L*D, B, H) each
        return EncoderOutput(outputs=outputs, hidden=hidden, cell=cell)
