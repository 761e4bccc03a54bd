"""The two small contracts every recurrent part of seqlit follows, so any task can use any cell or layer.

**A recurrent layer** (what tasks and networks call; `seqlit.nn.RNNEncoder` is the built-in one) has
`input_size`, `hidden_size` (per direction), `num_layers`, `bidirectional`, `output_size` (D*H) and
`state_sizes` (the width of each state part: `(H,)` for a GRU, `(H, H)` for an LSTM), and

    forward(inputs (B, T, I), lengths (B,) | None = None, state | None = None) -> (outputs, state)

`outputs` is (B, T, D*H) and zero past each sequence's length; `state` is a tuple of parts, each
(L*D, B, S_k) in torch's layer-major order (layer 0 forward, layer 0 backward, layer 1 forward, ...),
holding every layer and direction's state at the sequence's last valid step (a backward direction's at its
first). `lengths=None` means every row has all T steps. A sequence's outputs and final state must be the
same alone or inside a padded batch. `state=None` starts from zeros.

**A recurrent cell** (the easy way to bring your own recurrence) is an `nn.Module` built as
`Cell(input_size, hidden_size)`, with a `hidden_size` attribute, optionally `state_sizes` (default
`(hidden_size,)`), and

    forward(x (B, I), state: tuple of (B, S_k)) -> (h (B, H), new state)

`RNNEncoder(cell=my_module.MyCell)` stacks it into layers and directions, runs it over length segments
(so padding is never computed and never leaks into the state) and makes it a recurrent layer. torch's own
`nn.RNNCell`, `nn.GRUCell` and `nn.LSTMCell` are accepted as they are.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]  # parts (L*D, B, S_k): (h,) for a GRU, (h, c) for an LSTM

__all__ = ["EncoderOutput", "RecurrentCell", "RecurrentLayer", "State", "check_recurrent_layer", "zero_state"]


class EncoderOutput(NamedTuple):
    """What a recurrent layer returns; unpacks as `outputs, state = layer(...)`."""

    outputs: Tensor  # (B, T, D*H), zero on padded steps
    state: State  # parts (L*D, B, S_k) at each sequence's last valid step

    @property
    def hidden(self) -> Tensor:
        """(L*D, B, H): the first state part, the hidden state h."""
        return self.state[0]

    @property
    def cell(self) -> Tensor | None:
        """(L*D, B, H) LSTM cell state, None for a one-part (GRU-like) state."""
        return self.state[1] if len(self.state) > 1 else None


@runtime_checkable
class RecurrentLayer(Protocol):
    """See the module docstring."""

    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool

    @property
    def output_size(self) -> int: ...

    @property
    def state_sizes(self) -> tuple[int, ...]: ...

    def __call__(self, inputs: Tensor, lengths: Tensor | None = None, state: State | None = None) -> EncoderOutput:
        ...


@runtime_checkable
class RecurrentCell(Protocol):
    """See the module docstring."""

    hidden_size: int

    def __call__(self, x: Tensor, state: State) -> tuple[Tensor, State]: ...


_LAYER_ATTRIBUTES = ("input_size", "hidden_size", "num_layers", "bidirectional", "output_size", "state_sizes")


def check_recurrent_layer(layer: nn.Module, owner: str) -> nn.Module:
    """Returns `layer` if it has the recurrent-layer attributes, else raises naming what is missing."""
    missing = [name for name in _LAYER_ATTRIBUTES if not hasattr(layer, name)]
    if missing:
        raise TypeError(
            f"{owner} needs a recurrent layer (see seqlit.nn.protocol), but {type(layer).__name__} has no "
            f"{', '.join(missing)}. Build it from seqlit.nn.RNNEncoder, or give your class these attributes and "
            "forward(inputs, lengths=None, state=None) -> (outputs, state)."
        )
    return layer


def zero_state(layer: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
    """The all-zero state of `layer` for `batch_size` rows: parts (L*D, B, S_k)."""
    slots = layer.num_layers * (2 if layer.bidirectional else 1)
    return tuple(torch.zeros(slots, batch_size, size, device=device, dtype=dtype) for size in layer.state_sizes)
