"""AWD-LSTM regularisers (locked, embedding and weight dropout) and layer-normalised LSTM / GRU layers.

Merity et al. 2017 regularise an LSTM language model without leaving the fused kernel: dropout
masks are drawn once per sequence (`LockedDropout`), per word type (`EmbeddingDropout`) or once
per forward on the recurrent matrices (`WeightDrop`). Layer normalisation (Ba et al. 2016) has to
reach inside the cell, so `LayerNormLSTM`/`LayerNormGRU` run an explicit time loop; with
`layer_norm=False` they compute exactly what `nn.LSTM`/`nn.GRU` compute, under the same
parameter names, so state dicts move between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence

from seqlit.nn.encoders import RNN_CLASSES, CellType
from seqlit.nn.init import init_recurrent_

__all__ = [
    "EmbeddingDropout",
    "LayerNormGRU",
    "LayerNormLSTM",
    "LockedDropout",
    "WeightDrop",
    "recurrent_layer",
]

def recurrent_layer(
    cell: CellType,
    input_size: int,
    hidden_size: int,
    *,
    layer_norm: bool = False,
    weight_drop: float = 0.0,
) -> nn.Module:
    """One batch-first recurrent layer: fused `nn.LSTM`/`nn.GRU` unless layer norm is asked for
    (which needs the explicit cell), orthogonally initialised, weight-dropped when `weight_drop > 0`.

    Whatever the choice, the result is called as `(x (B, T, I), state) -> (out (B, T, H), state)`,
    with torch's state contract (`(h, c)` for an LSTM, `h` for a GRU, each (1, B, H)).
    """
    if cell not in RNN_CLASSES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(RNN_CLASSES)}.")
    _check_probability("weight_drop", weight_drop)
    rnn: nn.Module
    if layer_norm:
        rnn = LAYER_NORM_CLASSES[cell](input_size, hidden_size, layer_norm=True)  # initialised inside
    else:
        fused = RNN_CLASSES[cell](input_size, hidden_size, batch_first=True)
        init_recurrent_(fused)
        rnn = fused
    return WeightDrop(rnn, weight_drop) if weight_drop > 0 else rnn


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence and feature, shared by every time step.

    Redrawing the mask each step (plain `nn.Dropout` on (B, T, H)) lets the net average the noise
    away along the sequence; a locked mask removes the same units for the whole sequence
    (Gal & Ghahramani 2016), which is what regularises a recurrent net.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        _check_probability("LockedDropout p", p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, H, ...) batch first -> same shape, units zeroed per (sequence, feature)."""
        if not self.training or self.p == 0.0:
            return x
        if x.dim() < 2:
            raise ValueError(f"LockedDropout expects a batch-first (B, T, H) tensor, got shape {tuple(x.shape)}.")
        mask_shape = (x.shape[0], 1, *x.shape[2:])
        mask = x.new_empty(mask_shape).bernoulli_(1.0 - self.p).div_(1.0 - self.p)  # (B, 1, H)
        return x * mask  # (B, T, H)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(nn.Embedding):
    """An `nn.Embedding` that, in training, drops whole word types (Gal & Ghahramani 2016; AWD-LSTM).

    One keep/drop draw per vocabulary row, scaled by 1/(1-p): every occurrence of a dropped word is
    zero in that forward, so the model cannot lean on a word's identity. `weight` stays the
    ordinary Parameter, so `decoder.weight = embedding.weight` ties it to an output layer.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        *,
        dropout: float = 0.0,
        **embedding_kwargs: Any,
    ) -> None:
        super().__init__(
            num_embeddings,
            embedding_dim,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
            **embedding_kwargs,
        )
        _check_probability("EmbeddingDropout dropout", dropout)
        self.dropout = dropout

    def forward(self, input: Tensor) -> Tensor:
        """input (*) token ids -> (*, E); rows of dropped word types are zero."""
        embedded = super().forward(input)  # (*, E)
        if not self.training or self.dropout == 0.0:
            return embedded
        # Same result and gradient as F.embedding(input, weight * keep) (AWD-LSTM's embedded_dropout),
        # but scales the looked-up rows instead of copying the (V, E) matrix; keeps max_norm's in-place
        # renorm on the real weight and sparse gradients working.
        keep = self.weight.new_empty((self.num_embeddings, 1)).bernoulli_(1.0 - self.dropout)  # (V, 1)
        keep = keep.div_(1.0 - self.dropout)  # (V, 1)
        return embedded * keep[input]  # (*, E)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.dropout}"


class WeightDrop(nn.Module):
    """DropConnect on an RNN's hidden-to-hidden matrices, one mask per forward (AWD-LSTM).

    Unlike Keras' `recurrent_dropout`, which masks h at every step and so forces a per-step cell,
    the dropped matrix is handed to the wrapped `nn.LSTM`/`nn.GRU`, so the fused (cuDNN / oneDNN)
    kernel still runs; every step of every sequence in the batch sees the same dropped matrix.

    The trainable weights stay where they were (`module.weight_hh_l0`, a Parameter), so the state
    dict is the wrapped RNN's under a `module.` prefix; each training forward passes
    `dropout(weight)` through `torch.func.functional_call` and nothing dropped outlives the call.
    """

    def __init__(self, rnn: nn.Module, p: float, weight_names: Sequence[str] | None = None) -> None:
        super().__init__()
        _check_probability("WeightDrop p", p)
        parameter_names = [name for name, _ in rnn.named_parameters()]
        if weight_names is None:
            weight_names = [name for name in parameter_names if name.rpartition(".")[2].startswith("weight_hh")]
            if not weight_names:
                raise ValueError(
                    f"{type(rnn).__name__} has no parameter named weight_hh*; pass weight_names= from "
                    f"{parameter_names}."
                )
        unknown = [name for name in weight_names if name not in parameter_names]
        if unknown:
            raise ValueError(
                f"WeightDrop weight_names {unknown} are not parameters of {type(rnn).__name__}; "
                f"choose from {parameter_names}."
            )
        self.module = rnn
        self.p = p
        self.weight_names: tuple[str, ...] = tuple(weight_names)

    @property
    def input_size(self) -> int:
        return int(self.module.input_size)

    @property
    def hidden_size(self) -> int:
        return int(self.module.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.module.num_layers)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the wrapped RNN (same arguments, same return value) with dropped recurrent weights."""
        if not self.training or self.p == 0.0:
            return self.module(*args, **kwargs)
        dropped = {
            name: F.dropout(self.module.get_parameter(name), self.p, training=True)  # (G*H, H) each
            for name in self.weight_names
        }
        try:
            return functional_call(self.module, dropped, args, kwargs)
        finally:
            self._point_flat_weights_at_parameters()

    def flatten_parameters(self) -> None:
        """Passes through to the wrapped RNN, for code that calls `rnn.flatten_parameters()`."""
        flatten = getattr(self.module, "flatten_parameters", None)
        if callable(flatten):
            flatten()

    def extra_repr(self) -> str:
        return f"p={self.p}, weight_names={list(self.weight_names)}"

    def _point_flat_weights_at_parameters(self) -> None:
        # functional_call restores the Parameter behind RNNBase.__setattr__'s back, so its
        # `_flat_weights` list would keep the dropped tensor until the next forward notices; a direct
        # `flatten_parameters()` call in between would flatten that. Re-assigning the Parameter
        # goes through __setattr__, which re-points the list (no copy, no flattening here).
        for name in self.weight_names:
            owner_name, _, leaf = name.rpartition(".")
            owner = self.module.get_submodule(owner_name)
            if isinstance(owner, nn.RNNBase):
                setattr(owner, leaf, owner.get_parameter(leaf))


class _ExplicitRNN(nn.Module):
    """What the explicit-cell layers share: nn.LSTM/nn.GRU's parameters (same names and shapes) and
    optional per-gate layer norms on the input and recurrent projections of every layer."""

    num_gates: int

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, layer_norm: bool, batch_first: bool
    ) -> None:
        super().__init__()
        _check_layer_sizes(input_size, hidden_size, num_layers)
        _check_probability("dropout", dropout)
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


class LayerNormLSTM(_ExplicitRNN):
    """A multi-layer, unidirectional LSTM written as an explicit cell, with optional layer norm.

    With `layer_norm=True` (Ba et al. 2016), each gate block is normalised on its own
    ("per gate": i, f, g, o each over its H units), separately for the input and the recurrent
    projection, and the cell state before its tanh:
    gates = LN_ih(W_ih x) + LN_hh(W_hh h) + b_ih + b_hh;  c' = f*c + i*g;  h' = o * tanh(LN_c(c')).
    LN_ih / LN_hh have a gain only (the RNN biases shift); LN_c has gain and bias. With
    `layer_norm=False` it computes exactly `nn.LSTM`; parameter names, shapes and gate order
    (i, f, g, o) are nn.LSTM's, so `load_state_dict(lstm.state_dict(), strict=False)` copies weights
    and `WeightDrop` wraps it. Padded (not packed) input only: steps past a sequence's end are run.
    """

    num_gates = 4

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

    def _run_layer(self, layer: int, inputs: Tensor, hidden: Tensor, cell: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """inputs (T, B, I), hidden and cell (B, H) -> outputs (T, B, H), last hidden and cell (B, H)."""
        weight_ih, weight_hh, bias_ih, bias_hh = _layer_weights(self, layer)
        size = self.hidden_size
        # The input projection of every step in one matmul; the loop only does the recurrent one.
        if self.layer_norm:
            projected = self.layer_norm_ih[layer](F.linear(inputs, weight_ih)) + (bias_ih + bias_hh)  # (T, B, 4H)
            norm_hh, norm_cell = self.layer_norm_hh[layer], self.layer_norm_cell[layer]
        else:
            projected = F.linear(inputs, weight_ih, bias_ih + bias_hh)  # (T, B, 4H)
        recurrent_t = weight_hh.t()  # (H, 4H)
        outputs = []
        for step_projection in projected.unbind(0):  # (B, 4H)
            if self.layer_norm:
                gates = step_projection + norm_hh(hidden @ recurrent_t)  # (B, 4H)
            else:
                gates = torch.addmm(step_projection, hidden, recurrent_t)  # (B, 4H)
            squashed = torch.sigmoid(gates)  # (B, 4H); the g block is replaced by its tanh below
            input_gate, forget_gate, output_gate = (
                squashed[:, :size],
                squashed[:, size : 2 * size],
                squashed[:, 3 * size :],
            )  # (B, H) each
            candidate = torch.tanh(gates[:, 2 * size : 3 * size])  # (B, H)
            cell = torch.addcmul(forget_gate * cell, input_gate, candidate)  # (B, H)
            hidden = output_gate * torch.tanh(norm_cell(cell) if self.layer_norm else cell)  # (B, H)
            outputs.append(hidden)
        return torch.stack(outputs), hidden, cell  # (T, B, H), (B, H), (B, H)


class LayerNormGRU(_ExplicitRNN):
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

    def _run_layer(self, layer: int, inputs: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """inputs (T, B, I), hidden (B, H) -> outputs (T, B, H), last hidden (B, H)."""
        weight_ih, weight_hh, bias_ih, bias_hh = _layer_weights(self, layer)
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
        blocks = x.unflatten(-1, (self.num_gates, self.hidden_size))  # (..., G, H)
        normalised = F.layer_norm(blocks, (self.hidden_size,), eps=self.eps)  # (..., G, H)
        return normalised.flatten(-2) * self.weight  # (..., G*H)

    def extra_repr(self) -> str:
        return f"num_gates={self.num_gates}, hidden_size={self.hidden_size}, eps={self.eps}"


LAYER_NORM_CLASSES: dict[str, type[LayerNormLSTM] | type[LayerNormGRU]] = {
    "gru": LayerNormGRU,
    "lstm": LayerNormLSTM,
}
ExplicitRNN = _ExplicitRNN


def _check_probability(name: str, p: float) -> None:
    """Rejects dropout rates outside [0, 1) (1 would zero everything and divide by zero)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}; use 0 to disable it (typical values are 0.1-0.5).")


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
