"""Layer-normalised LSTM and GRU layers (Ba et al. 2016), written as explicit cells.

Layer normalisation has to reach inside the cell, so these run a time loop instead of the fused
kernel (the LSTM's with a hand-written backward, `seqlit.nn.lstm_recurrence`). With `layer_norm=False`
they compute exactly what `nn.LSTM`/`nn.GRU` compute, under the same parameter names, so state dicts
move between the two. `RNNEncoder(layer_norm=True)` runs them over length segments, so they never
read padding; on their own they take padded input and run every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from seqlit.nn.dropout import check_probability
from seqlit.nn.lstm_recurrence import RecurrentNorms, lstm_recurrence, per_gate_layer_norm

__all__ = ["GateLayerNorm", "LayerNormGRU", "LayerNormLSTM", "LAYER_NORM_CLASSES"]

LayerState = tuple[Tensor, ...]  # (h,) for a GRU, (h, c) for an LSTM; each (B, H)


class ExplicitRNN(nn.Module):
    """What the explicit-cell layers share: nn.LSTM/nn.GRU's parameters (same names and shapes) and
    optional per-gate layer norms on the input and recurrent projections of every layer."""

    num_gates: int
    state_parts: int  # 2 for an LSTM (h, c), 1 for a GRU (h)

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, layer_norm: bool, batch_first: bool
    ) -> None:
        super().__init__()
        _check_layer_sizes(input_size, hidden_size, num_layers)
        check_probability("dropout", dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.layer_norm = layer_norm
        self.batch_first = batch_first
        _register_recurrent_weights(self, self.num_gates, input_size, hidden_size, num_layers)
        self.layer_norm_ih = _gate_norms(layer_norm, self.num_gates, hidden_size, num_layers)
        self.layer_norm_hh = _gate_norms(layer_norm, self.num_gates, hidden_size, num_layers)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
            f"layer_norm={self.layer_norm}, batch_first={self.batch_first}"
        )


class LayerNormLSTM(ExplicitRNN):
    """A multi-layer, unidirectional LSTM written as an explicit cell, with optional layer norm.

    With `layer_norm=True` (Ba et al. 2016), each gate block is normalised on its own
    ("per gate": i, f, g, o each over its H units), separately for the input and the recurrent
    projection, and the cell state before its tanh:
    gates = LN_ih(W_ih x) + LN_hh(W_hh h) + b_ih + b_hh;  c' = f*c + i*g;  h' = o * tanh(LN_c(c')).
    LN_ih / LN_hh have a gain only (the RNN biases shift); LN_c has gain and bias. With
    `layer_norm=False` it computes exactly `nn.LSTM`; parameter names, shapes and gate order
    (i, f, g, o) are nn.LSTM's, so `load_state_dict(lstm.state_dict(), strict=False)` copies weights
    and `WeightDrop` wraps it. Padded (not packed) input only: steps past a sequence's end are run.

    The time loop runs in Python with a hand-written backward (`_LSTMRecurrence`): about 0.6x the
    fused `nn.LSTM`'s tokens/s on a 2-core CPU at B=64, H=256 (`benchmarks/kernels.py`), against
    0.5x for autograd through the loop. It is differentiable once (no double backward), and runs in
    float32 under autocast.
    """

    num_gates = 4
    state_parts = 2
    mode = "LSTM"  # torch's name for the layout: gate blocks i, f, g, o (gradient monitors read it)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        layer_norm: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout, layer_norm, batch_first)
        self.layer_norm_cell = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers) if layer_norm)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The house init (`init_recurrent_`): orthogonal recurrent and Xavier input blocks, zero
        biases, forget-gate bias 1; layer-norm gains 1 and biases 0."""
        _init_recurrent_weights_(self, forget_bias=1.0)
        for norm in [*self.layer_norm_ih, *self.layer_norm_hh, *self.layer_norm_cell]:
            norm.reset_parameters()

    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, I) and optional (h0, c0) each (L, B, H) -> output (B, T, H), (h_n, c_n) each (L, B, H)."""
        inputs = _time_major(self, x)  # (T, B, I)
        batch = inputs.shape[1]
        if hx is None:
            h0 = inputs.new_zeros(self.num_layers, batch, self.hidden_size)  # (L, B, H)
            c0 = h0  # (L, B, H)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("LayerNormLSTM hx must be a tuple (h0, c0) of (L, B, H) tensors, or None.")
            h0, c0 = hx  # (L, B, H) each
            _check_state(self, h0, batch, "h0")
            _check_state(self, c0, batch, "c0")
        layer_output = inputs  # (T, B, I)
        final_hidden, final_cell = [], []
        for layer in range(self.num_layers):
            if layer > 0:  # between layers only, as nn.LSTM
                layer_output = F.dropout(layer_output, self.dropout, self.training)  # (T, B, H)
            layer_output, hidden, cell = self._run_layer(layer, layer_output, h0[layer], c0[layer])  # (T, B, H)
            final_hidden.append(hidden)
            final_cell.append(cell)
        output = layer_output if not self.batch_first else layer_output.transpose(0, 1)  # (B, T, H)
        return output, (torch.stack(final_hidden), torch.stack(final_cell))  # (L, B, H) each

    def run_layer(
        self, layer: int, inputs: Tensor, state: LayerState, weight_hh: Tensor | None = None
    ) -> tuple[Tensor, LayerState]:
        """One layer over inputs (T, B, I) from state (h, c), each (B, H) -> outputs (T, B, H), (h, c).
        `weight_hh` replaces the layer's recurrent matrix for this call (weight drop)."""
        outputs, hidden, cell = self._run_layer(layer, inputs, state[0], state[1], weight_hh)
        return outputs, (hidden, cell)

    def _run_layer(
        self, layer: int, inputs: Tensor, hidden: Tensor, cell: Tensor, weight_hh: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """inputs (T, B, I), hidden and cell (B, H) -> outputs (T, B, H), last hidden and cell (B, H)."""
        weight_ih, own_weight_hh, bias_ih, bias_hh = _layer_weights(self, layer)
        weight_hh = own_weight_hh if weight_hh is None else weight_hh
        # The input projection of every step in one matmul (and one layer norm); the time loop,
        # with its hand-written backward, only does the recurrent part.
        if not self.layer_norm:
            projected = F.linear(inputs, weight_ih, bias_ih + bias_hh)  # (T, B, 4H)
            return lstm_recurrence(projected, hidden, cell, weight_hh)
        norm_ih, norm_hh, norm_cell = self.layer_norm_ih[layer], self.layer_norm_hh[layer], self.layer_norm_cell[layer]
        normalised = per_gate_layer_norm(F.linear(inputs, weight_ih), self.num_gates, norm_ih.eps)  # (T, B, 4H)
        norms = RecurrentNorms(
            norm_ih.weight, bias_ih + bias_hh, norm_hh.weight, norm_hh.eps,
            norm_cell.weight, norm_cell.bias, norm_cell.eps,
        )  # fmt: skip
        return lstm_recurrence(normalised, hidden, cell, weight_hh, norms)


class LayerNormGRU(ExplicitRNN):
    """A multi-layer, unidirectional GRU written as an explicit cell, with optional layer norm.

    With `layer_norm=True` the input and the recurrent projections are normalised separately and
    per gate (r, z, n each over its H units), before the biases, and the reset gate multiplies the
    normalised recurrent n-part, following torch's GRU:
    r, z = sigmoid(LN_ih(W_ih x)_rz + b_ih_rz + LN_hh(W_hh h)_rz + b_hh_rz);
    n = tanh(LN_ih(W_ih x)_n + b_in + r * (LN_hh(W_hh h)_n + b_hn));  h' = (1-z)*n + z*h.
    With `layer_norm=False` it computes exactly `nn.GRU`, under nn.GRU's parameter names, shapes and
    gate order (r, z, n). Padded (not packed) input only.
    """

    num_gates = 3
    state_parts = 1
    mode = "GRU"  # torch's name for the layout: gate blocks r, z, n

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        layer_norm: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout, layer_norm, batch_first)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The house init (`init_recurrent_`): orthogonal recurrent and Xavier input blocks, zero
        biases; layer-norm gains 1."""
        _init_recurrent_weights_(self, forget_bias=None)
        for norm in [*self.layer_norm_ih, *self.layer_norm_hh]:
            norm.reset_parameters()

    def forward(self, x: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, I) and optional h0 (L, B, H) -> output (B, T, H), h_n (L, B, H)."""
        inputs = _time_major(self, x)  # (T, B, I)
        batch = inputs.shape[1]
        if hx is None:
            h0 = inputs.new_zeros(self.num_layers, batch, self.hidden_size)  # (L, B, H)
        else:
            if not isinstance(hx, Tensor):
                raise ValueError("LayerNormGRU hx must be an (L, B, H) tensor or None (not an LSTM (h, c) tuple).")
            h0 = hx  # (L, B, H)
            _check_state(self, h0, batch, "h0")
        layer_output = inputs  # (T, B, I)
        final_hidden = []
        for layer in range(self.num_layers):
            if layer > 0:  # between layers only, as nn.GRU
                layer_output = F.dropout(layer_output, self.dropout, self.training)  # (T, B, H)
            layer_output, hidden = self._run_layer(layer, layer_output, h0[layer])  # (T, B, H), (B, H)
            final_hidden.append(hidden)
        output = layer_output if not self.batch_first else layer_output.transpose(0, 1)  # (B, T, H)
        return output, torch.stack(final_hidden)  # (B, T, H), (L, B, H)

    def run_layer(
        self, layer: int, inputs: Tensor, state: LayerState, weight_hh: Tensor | None = None
    ) -> tuple[Tensor, LayerState]:
        """One layer over inputs (T, B, I) from state (h,) of (B, H) -> outputs (T, B, H), (h,).
        `weight_hh` replaces the layer's recurrent matrix for this call (weight drop)."""
        outputs, hidden = self._run_layer(layer, inputs, state[0], weight_hh)
        return outputs, (hidden,)

    def _run_layer(
        self, layer: int, inputs: Tensor, hidden: Tensor, weight_hh: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """inputs (T, B, I), hidden (B, H) -> outputs (T, B, H), last hidden (B, H)."""
        weight_ih, own_weight_hh, bias_ih, bias_hh = _layer_weights(self, layer)
        weight_hh = own_weight_hh if weight_hh is None else weight_hh
        size = self.hidden_size
        if self.layer_norm:
            projected = self.layer_norm_ih[layer](F.linear(inputs, weight_ih)) + bias_ih  # (T, B, 3H)
            norm_hh = self.layer_norm_hh[layer]
        else:
            projected = F.linear(inputs, weight_ih, bias_ih)  # (T, B, 3H)
        recurrent_t = weight_hh.t()  # (H, 3H)
        outputs = []
        for step_projection in projected.unbind(0):  # (B, 3H)
            if self.layer_norm:
                recurrent = norm_hh(hidden @ recurrent_t) + bias_hh  # (B, 3H)
            else:
                recurrent = torch.addmm(bias_hh, hidden, recurrent_t)  # (B, 3H)
            reset_update = torch.sigmoid(step_projection[:, : 2 * size] + recurrent[:, : 2 * size])  # (B, 2H)
            reset_gate, update_gate = reset_update[:, :size], reset_update[:, size:]  # (B, H) each
            candidate = torch.tanh(
                torch.addcmul(step_projection[:, 2 * size :], reset_gate, recurrent[:, 2 * size :])
            )  # (B, H)
            hidden = candidate + update_gate * (hidden - candidate)  # (B, H), = (1-z)*n + z*h
            outputs.append(hidden)
        return torch.stack(outputs), hidden  # (T, B, H), (B, H)


class GateLayerNorm(nn.Module):
    """Layer norm over each H-unit gate block of a (..., G*H) projection, with a gain and no bias
    (the RNN biases added afterwards act as the shift)."""

    def __init__(self, num_gates: int, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_gates = num_gates
        self.hidden_size = hidden_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_gates * hidden_size))  # (G*H,)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., G*H) -> (..., G*H), each gate block zero-mean, unit-variance, then scaled."""
        return per_gate_layer_norm(x, self.num_gates, self.eps) * self.weight  # (..., G*H)

    def extra_repr(self) -> str:
        return f"num_gates={self.num_gates}, hidden_size={self.hidden_size}, eps={self.eps}"


LAYER_NORM_CLASSES: dict[str, type[LayerNormLSTM] | type[LayerNormGRU]] = {
    "gru": LayerNormGRU,
    "lstm": LayerNormLSTM,
}


def _check_layer_sizes(input_size: int, hidden_size: int, num_layers: int) -> None:
    if input_size < 1 or hidden_size < 1 or num_layers < 1:
        raise ValueError(
            f"input_size, hidden_size and num_layers must be >= 1, got {input_size}, {hidden_size} and {num_layers}."
        )


def _register_recurrent_weights(
    rnn: nn.Module, num_gates: int, input_size: int, hidden_size: int, num_layers: int
) -> None:
    """Registers nn.LSTM/nn.GRU's parameters, same names, shapes and order, on a freshly built `rnn`."""
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size
        rnn.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(num_gates * hidden_size, layer_input)))
        rnn.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(num_gates * hidden_size, hidden_size)))
        rnn.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(num_gates * hidden_size)))
        rnn.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(num_gates * hidden_size)))


def _gate_norms(layer_norm: bool, num_gates: int, hidden_size: int, num_layers: int) -> nn.ModuleList:
    """One per-gate layer norm per layer, or none (no parameters) when layer norm is off."""
    return nn.ModuleList(GateLayerNorm(num_gates, hidden_size) for _ in range(num_layers) if layer_norm)


def _layer_weights(rnn: ExplicitRNN, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh (G*H,) of one layer, read by name so
    that `WeightDrop` (functional_call) can substitute any of them."""
    return (
        getattr(rnn, f"weight_ih_l{layer}"),
        getattr(rnn, f"weight_hh_l{layer}"),
        getattr(rnn, f"bias_ih_l{layer}"),
        getattr(rnn, f"bias_hh_l{layer}"),
    )


def _init_recurrent_weights_(rnn: ExplicitRNN, forget_bias: float | None) -> None:
    """`init_recurrent_` for the explicit cells (which it does not recognise as LSTMs): orthogonal
    recurrent blocks, Xavier input blocks, zero biases, forget-gate bias (LSTM) in bias_ih."""
    size = rnn.hidden_size
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            weight_ih, weight_hh, bias_ih, bias_hh = _layer_weights(rnn, layer)
            for block in weight_hh.split(size, dim=0):  # (H, H) per gate
                nn.init.orthogonal_(block)
            for block in weight_ih.split(size, dim=0):  # (H, I) per gate
                nn.init.xavier_uniform_(block)
            bias_ih.zero_()
            bias_hh.zero_()
            if forget_bias is not None:
                bias_ih[size : 2 * size] = forget_bias  # gate order i, f, g, o


def _time_major(rnn: ExplicitRNN, x: Tensor) -> Tensor:
    """Checks the input of an explicit-cell RNN and returns it as (T, B, I)."""
    name = type(rnn).__name__
    if isinstance(x, PackedSequence):
        raise TypeError(
            f"{name} takes a padded (B, T, I) tensor, not a PackedSequence: pad it (pad_packed_sequence) and "
            f"mask the outputs, or use layer_norm=False for the fused nn.LSTM/nn.GRU that skips padding."
        )
    layout = "(B, T, I)" if rnn.batch_first else "(T, B, I)"
    if x.dim() != 3 or x.shape[-1] != rnn.input_size or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{name} expects a non-empty {layout} input with I = input_size = {rnn.input_size}, got shape "
            f"{tuple(x.shape)}."
        )
    return x.transpose(0, 1) if rnn.batch_first else x  # (T, B, I)


def _check_state(rnn: ExplicitRNN, state: Tensor, batch: int, name: str) -> None:
    expected = (rnn.num_layers, batch, rnn.hidden_size)
    if not isinstance(state, Tensor) or tuple(state.shape) != expected:
        got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise ValueError(f"{type(rnn).__name__} {name} must have shape (L, B, H) = {expected}, got {got}.")
