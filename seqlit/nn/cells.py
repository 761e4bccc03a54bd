"""AWD-LSTM regularisers (locked, embedding and weight dropout) and layer-normalised LSTM / GRU layers.

Merity et al. 2017 regularise an LSTM language model without leaving the fused kernel: dropout
masks are drawn once per sequence (`LockedDropout`), per word type (`EmbeddingDropout`) or once
per forward on the recurrent matrices (`WeightDrop`). Layer normalisation (Ba et al. 2016) has to
reach inside the cell, so `LayerNormLSTM`/`LayerNormGRU` run an explicit time loop (the LSTM's
with a hand-written backward, `_LSTMRecurrence`); with `layer_norm=False` they compute exactly what
`nn.LSTM`/`nn.GRU` compute, under the same parameter names, so state dicts move between the two.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence

from seqlit.nn.encoders import RNN_CLASSES, CellType
from seqlit.nn.init import init_recurrent_

# The backward kernels autograd itself calls, looked up once (torch.ops attribute access is slow).
_TANH_BACKWARD = torch.ops.aten.tanh_backward.default
_TANH_BACKWARD_INTO = torch.ops.aten.tanh_backward.grad_input
_SIGMOID_BACKWARD_INTO = torch.ops.aten.sigmoid_backward.grad_input
_LAYER_NORM_BACKWARD = torch.ops.aten.native_layer_norm_backward.default

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

    The time loop runs in Python with a hand-written backward (`_LSTMRecurrence`): about 0.6x the
    fused `nn.LSTM`'s tokens/s on a 2-core CPU at B=64, H=256 (`benchmarks/kernels.py`), against
    0.5x for autograd through the loop. It is differentiable once (no double backward), and runs in
    float32 under autocast.
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
        # The input projection of every step in one matmul (and one layer norm); the time loop,
        # with its hand-written backward, only does the recurrent part.
        if not self.layer_norm:
            projected = F.linear(inputs, weight_ih, bias_ih + bias_hh)  # (T, B, 4H)
            return _lstm_recurrence(projected, hidden, cell, weight_hh)
        norm_ih, norm_hh, norm_cell = self.layer_norm_ih[layer], self.layer_norm_hh[layer], self.layer_norm_cell[layer]
        normalised = _per_gate_layer_norm(F.linear(inputs, weight_ih), self.num_gates, norm_ih.eps)  # (T, B, 4H)
        norms = _RecurrentNorms(
            norm_ih.weight, bias_ih + bias_hh, norm_hh.weight, norm_hh.eps,
            norm_cell.weight, norm_cell.bias, norm_cell.eps,
        )  # fmt: skip
        return _lstm_recurrence(normalised, hidden, cell, weight_hh, norms)


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
        return _per_gate_layer_norm(x, self.num_gates, self.eps) * self.weight  # (..., G*H)

    def extra_repr(self) -> str:
        return f"num_gates={self.num_gates}, hidden_size={self.hidden_size}, eps={self.eps}"


class _RecurrentNorms(NamedTuple):
    """The layer-norm parameters the LSTM time loop applies: the per-gate gains of LN_ih (its
    normalisation is done for all steps at once, before the loop) and LN_hh, the summed biases, and
    LN_c's gain and bias. Applying LN_ih's gain and the biases per step, rather than to the whole
    (T, B, 4H) projection, keeps their gradients' passes on data still in cache."""

    gain_ih: Tensor  # (4H,)
    bias: Tensor  # (4H,) bias_ih + bias_hh
    gain_hh: Tensor  # (4H,)
    eps_hh: float
    cell_weight: Tensor  # (H,)
    cell_bias: Tensor  # (H,)
    eps_cell: float


def _lstm_recurrence(
    projected: Tensor, hidden: Tensor, cell: Tensor, weight_hh: Tensor, norms: _RecurrentNorms | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """projected (T, B, 4H), hidden and cell (B, H) -> outputs (T, B, H), last hidden and cell (B, H).
    Without `norms`, projected is the input part of the gates, W_ih x + b_ih + b_hh; with them, it is
    LN_ih(W_ih x) before its gain, and the rest of the layer norms and the biases are applied here.

    Under autocast the loop runs in float32 (or whatever the widest input is): the layer-norm
    statistics and the cell state need it, and the hand-written kernels below pick no dtypes."""
    tensors = [projected, hidden, cell, weight_hh]
    if norms is not None:
        tensors += [norms.gain_ih, norms.bias, norms.gain_hh, norms.cell_weight, norms.cell_bias]
    dtype = functools.reduce(torch.promote_types, [tensor.dtype for tensor in tensors])
    tensors = [tensor.to(dtype) for tensor in tensors]
    if norms is None:
        return _LSTMRecurrence.apply(*tensors, None, None, None, None, None, 0.0, 0.0)
    return _LSTMRecurrence.apply(*tensors, norms.eps_hh, norms.eps_cell)


class _LSTMRecurrence(torch.autograd.Function):
    """The time loop of one LSTM layer (optionally layer-normalised) with a hand-written backward.

    Autograd through a Python loop records ~25 small ops a step, zero-fills a (B, 4H) gradient for
    every gate slice and runs a small weight-gradient matmul per step. Here the forward writes each
    step into preallocated (T, ...) buffers and the backward does one recurrent matmul a step and the
    weight gradient in one (4H, T*B) @ (T*B, H) matmul, as the fused kernels do. Same formulas and
    torch kernels (layer norm included) as the autograd version; not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        projected: Tensor,
        hidden: Tensor,
        cell: Tensor,
        weight_hh: Tensor,
        gain_ih: Tensor | None,
        bias: Tensor | None,
        gain_hh: Tensor | None,
        cell_weight: Tensor | None,
        cell_bias: Tensor | None,
        eps_hh: float,
        eps_cell: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        parameters = (gain_ih, bias, gain_hh, cell_weight, cell_bias)
        norms = None if gain_hh is None else _RecurrentNorms(*parameters[:3], eps_hh, *parameters[3:], eps_cell)
        with _autocast_disabled(projected.device):
            tape = _lstm_forward_steps(projected, hidden, cell, weight_hh, norms)
        ctx.steps = projected.shape[0]
        ctx.eps = (eps_hh, eps_cell)
        ctx.save_for_backward(hidden, weight_hh, *parameters, *tape.to_list())
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None: no zeros added each step
        outputs = tape.outputs  # (T, B, H)
        return outputs, outputs[-1].clone(), tape.cells[-1].clone()  # (T, B, H), (B, H), (B, H)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_outputs: Tensor | None, grad_hidden: Tensor | None, grad_cell: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        hidden, weight_hh, gain_ih, bias, gain_hh, cell_weight, cell_bias, *taped = ctx.saved_tensors
        tape = _LSTMTape.from_list(taped, ctx.steps)
        norms = None
        if gain_hh is not None:
            norms = _RecurrentNorms(gain_ih, bias, gain_hh, ctx.eps[0], cell_weight, cell_bias, ctx.eps[1])
        grads = _lstm_backward_steps(tape, hidden, weight_hh, norms, grad_outputs, grad_hidden, grad_cell)
        weight_grad = _recurrent_weight_grad(grads.recurrent, tape.outputs, hidden) if ctx.needs_input_grad[3] else None
        return (
            grads.projected, grads.hidden, grads.cell, weight_grad,
            grads.gain_ih, grads.bias, grads.gain_hh, grads.cell_weight, grads.cell_bias, None, None,
        )  # fmt: skip


@dataclass
class _LSTMTape:
    """What the forward keeps for the backward: (T, ...) buffers, plus the per-step tensors of the
    layer-normalised path as they came out of the kernels (copying them into buffers costs a pass)."""

    outputs: Tensor  # (T, B, H) hidden state after each step
    cells: Tensor  # (T+1, B, H) cell state before the first and after each step
    activations: Tensor  # (T, B, 4H) sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    cell_tanh: Tensor  # (T, B, H) tanh(LN_c(c)) or tanh(c)
    normalised_input: Tensor | None = None  # (T, B, 4H) LN_ih(W_ih x) before its gain (the loop's input)
    recurrent: list[Tensor] = field(default_factory=list)  # T x (B, 4, H) W_hh h per gate, before LN_hh
    normalised: list[Tensor] = field(default_factory=list)  # T x (B, 4H) LN_hh(W_hh h), before its gain
    hh_stats: list[Tensor] = field(default_factory=list)  # 2T x (B, 4, 1): mean, 1/std of each step
    cell_stats: list[Tensor] = field(default_factory=list)  # 2T x (B, 1): the same for LN_c

    def to_list(self) -> list[Tensor | None]:
        """Everything, flat, for `ctx.save_for_backward` (which version-checks it)."""
        return [
            self.outputs, self.cells, self.activations, self.cell_tanh, self.normalised_input,
            *self.recurrent, *self.normalised, *self.hh_stats, *self.cell_stats,
        ]  # fmt: skip

    @classmethod
    def from_list(cls, tensors: list[Tensor | None], steps: int) -> _LSTMTape:
        """The inverse of `to_list`, given the number of steps."""
        outputs, cells, activations, cell_tanh, normalised_input, *per_step = tensors  # per_step: no None
        recurrent, normalised = per_step[:steps], per_step[steps : 2 * steps]
        hh_stats, cell_stats = per_step[2 * steps : 4 * steps], per_step[4 * steps :]
        return cls(
            outputs, cells, activations, cell_tanh, normalised_input,  # type: ignore[arg-type]
            recurrent, normalised, hh_stats, cell_stats,  # type: ignore[arg-type]
        )  # fmt: skip


class _GateViews(NamedTuple):
    """Per-step views of a (T, B, 4H) gate tensor, made up front by `unbind` (in C++): slicing each
    step in the Python loop costs more than the small kernels themselves."""

    whole: tuple[Tensor, ...]  # T x (B, 4H)
    input_forget: tuple[Tensor, ...]  # T x (B, 2H), i and f side by side (one sigmoid for both)
    input: tuple[Tensor, ...]  # T x (B, H)
    forget: tuple[Tensor, ...]  # T x (B, H)
    candidate: tuple[Tensor, ...]  # T x (B, H)
    output: tuple[Tensor, ...]  # T x (B, H)


def _gate_views(gates: Tensor) -> _GateViews:
    """gates (T, B, 4H), gate order i, f, g, o -> per-step views of each block."""
    size = gates.shape[-1] // 4
    blocks = gates.unflatten(-1, (4, size)).unbind(-2)  # 4 x (T, B, H)
    return _GateViews(gates.unbind(0), gates[..., : 2 * size].unbind(0), *(block.unbind(0) for block in blocks))


def _lstm_forward_steps(
    projected: Tensor, hidden: Tensor, cell: Tensor, weight_hh: Tensor, norms: _RecurrentNorms | None
) -> _LSTMTape:
    """Runs the cell over projected (T, B, 4H) from hidden and cell (B, H); no autograd inside."""
    steps, batch, gate_size = projected.shape
    size = gate_size // 4
    tape = _LSTMTape(
        outputs=projected.new_empty(steps, batch, size),
        cells=projected.new_empty(steps + 1, batch, size),
        activations=projected.new_empty(steps, batch, gate_size),
        cell_tanh=projected.new_empty(steps, batch, size),
    )
    if norms is not None:
        tape.normalised_input = projected
    tape.cells[0] = cell
    recurrent_t = weight_hh.t().contiguous()  # (H, 4H); contiguous: faster matmuls than a transposed view
    step_projected, gates = projected.unbind(0), _gate_views(tape.activations)  # T x (B, 4H); views
    cells, squashed, outputs = tape.cells.unbind(0), tape.cell_tanh.unbind(0), tape.outputs.unbind(0)  # (B, H)
    for step in range(steps):
        # The gates' pre-activations are written into the activations buffer and activated in place.
        if norms is None:
            torch.addmm(step_projected[step], hidden, recurrent_t, out=gates.whole[step])  # (B, 4H)
        else:
            recurrent = torch.mm(hidden, recurrent_t).view(batch, 4, size)  # (B, 4, H)
            normalised, mean, rstd = torch.native_layer_norm(recurrent, (size,), None, None, norms.eps_hh)
            normalised = normalised.view(batch, gate_size)  # (B, 4H)
            step_gates = torch.addcmul(norms.bias, step_projected[step], norms.gain_ih, out=gates.whole[step])
            step_gates.addcmul_(normalised, norms.gain_hh)  # (B, 4H)
            tape.recurrent.append(recurrent)
            tape.normalised.append(normalised)
            tape.hh_stats += (mean, rstd)  # (B, 4, 1) each
        gates.input_forget[step].sigmoid_()
        gates.candidate[step].tanh_()
        gates.output[step].sigmoid_()
        cell = torch.mul(gates.forget[step], cells[step], out=cells[step + 1])  # (B, H)
        cell.addcmul_(gates.input[step], gates.candidate[step])
        if norms is None:
            torch.tanh(cell, out=squashed[step])
        else:
            normalised_cell, mean, rstd = torch.native_layer_norm(
                cell, (size,), norms.cell_weight, norms.cell_bias, norms.eps_cell
            )  # (B, H), (B, 1), (B, 1)
            torch.tanh(normalised_cell, out=squashed[step])
            tape.cell_stats += (mean, rstd)
        hidden = torch.mul(gates.output[step], squashed[step], out=outputs[step])  # (B, H)
    return tape


class _LSTMGrads(NamedTuple):
    """Gradients the backward loop produces (the recurrent weight's comes after, in one matmul)."""

    projected: Tensor  # (T, B, 4H), also the gradient of the gates' pre-activations
    recurrent: Tensor  # (T, B, 4H) gradient of W_hh h (before LN_hh when layer-normalised)
    hidden: Tensor  # (B, H) initial hidden state
    cell: Tensor  # (B, H) initial cell state
    gain_ih: Tensor | None = None  # (4H,)
    bias: Tensor | None = None  # (4H,)
    gain_hh: Tensor | None = None  # (4H,)
    cell_weight: Tensor | None = None  # (H,)
    cell_bias: Tensor | None = None  # (H,)


def _lstm_backward_steps(
    tape: _LSTMTape,
    hidden: Tensor,
    weight_hh: Tensor,
    norms: _RecurrentNorms | None,
    grad_outputs: Tensor | None,
    grad_hidden: Tensor | None,
    grad_cell: Tensor | None,
) -> _LSTMGrads:
    """Backpropagates through the steps in reverse: grad_outputs (T, B, H), grad_hidden and grad_cell
    (B, H) of the last state, each None when unused."""
    steps, batch, gate_size = tape.activations.shape
    size = gate_size // 4
    grad_h = grad_hidden if grad_hidden is not None else hidden.new_zeros(batch, size)  # (B, H)
    grad_c = grad_cell if grad_cell is not None else hidden.new_zeros(batch, size)  # (B, H)
    grad_projected = tape.activations.new_empty(steps, batch, gate_size)  # (T, B, 4H)
    gates, grad_gates = _gate_views(tape.activations), _gate_views(grad_projected)  # per-step views
    scratch = _gate_views(grad_projected.new_empty(1, batch, gate_size))  # gradient of the activations, reused
    grad_if, grad_i, grad_f, grad_g, grad_o = (views[0] for views in scratch[1:])  # (B, 2H), (B, H) x 4
    cells, squashed = tape.cells.unbind(0), tape.cell_tanh.unbind(0)  # (B, H) views
    step_grad_outputs = grad_outputs.unbind(0) if grad_outputs is not None else None  # T x (B, H)
    norm_grads = None if norms is None else _RecurrentNormGrads(tape, norms, grad_projected)
    for step in range(steps - 1, -1, -1):
        if step_grad_outputs is not None:
            grad_h = grad_h + step_grad_outputs[step]  # (B, H)
        torch.mul(grad_h, squashed[step], out=grad_o)
        grad_squashed = _TANH_BACKWARD(grad_h * gates.output[step], squashed[step])  # (B, H)
        if norm_grads is None:
            grad_c = grad_c + grad_squashed  # (B, H)
        else:
            grad_c = grad_c + norm_grads.cell_norm(step, grad_squashed)  # (B, H)
        torch.mul(grad_c, gates.candidate[step], out=grad_i)
        torch.mul(grad_c, cells[step], out=grad_f)
        torch.mul(grad_c, gates.input[step], out=grad_g)
        grad_c = grad_c * gates.forget[step]  # (B, H), to the previous step
        _SIGMOID_BACKWARD_INTO(grad_if, gates.input_forget[step], grad_input=grad_gates.input_forget[step])
        _SIGMOID_BACKWARD_INTO(grad_o, gates.output[step], grad_input=grad_gates.output[step])
        _TANH_BACKWARD_INTO(grad_g, gates.candidate[step], grad_input=grad_gates.candidate[step])
        if norm_grads is None:
            grad_h = torch.mm(grad_gates.whole[step], weight_hh)  # (B, H)
        else:
            grad_h = torch.mm(norm_grads.recurrent_norm(step, grad_gates.whole[step]), weight_hh)
    if norm_grads is None:
        return _LSTMGrads(grad_projected, grad_projected, grad_h, grad_c)
    return norm_grads.finish(grad_h, grad_c)


class _RecurrentNormGrads:
    """The layer-norm part of the LSTM backward: per step through LN_c and LN_hh and the gains and
    biases, their parameter gradients gathered per step and reduced once at the end."""

    def __init__(self, tape: _LSTMTape, norms: _RecurrentNorms, grad_projected: Tensor) -> None:
        _, batch, gate_size = grad_projected.shape
        self.tape, self.norms = tape, norms
        self.grad_projected = grad_projected  # (T, B, 4H)
        assert tape.normalised_input is not None  # the forward keeps it whenever it has norms
        self.normalised_input = tape.normalised_input.unbind(0)  # T x (B, 4H)
        self.scaled = grad_projected.new_empty(batch, gate_size)  # (B, 4H) scratch: gradient times gain
        self.scaled_blocks = self.scaled.view(batch, 4, gate_size // 4)  # (B, 4, H)
        # (B, 4H) each, summed over B at the end
        self.gain_ih_rows, self.gain_hh_rows, self.bias_rows = grad_projected.new_zeros(3, batch, gate_size)
        self.recurrent: list[Tensor] = []  # (B, 4H) per step, last step first
        self.cell_weight: list[Tensor] = []  # (H,) per step
        self.cell_bias: list[Tensor] = []  # (H,) per step

    def cell_norm(self, step: int, grad_normalised: Tensor) -> Tensor:
        """grad_normalised (B, H) of LN_c's output -> gradient (B, H) of the cell state before it."""
        tape, norms = self.tape, self.norms
        grad_cell, grad_weight, grad_bias = _LAYER_NORM_BACKWARD(
            grad_normalised, tape.cells[step + 1], (grad_normalised.shape[1],),
            tape.cell_stats[2 * step], tape.cell_stats[2 * step + 1], norms.cell_weight, norms.cell_bias,
            (True, True, True),
        )  # fmt: skip
        self.cell_weight.append(grad_weight)
        self.cell_bias.append(grad_bias)
        return grad_cell

    def recurrent_norm(self, step: int, grad_gates: Tensor) -> Tensor:
        """grad_gates (B, 4H) of the pre-activations -> gradient (B, 4H) of W_hh h, before LN_hh.
        grad_gates is then scaled in place into the gradient of LN_ih's normalised input."""
        tape, norms = self.tape, self.norms
        self.gain_ih_rows.addcmul_(grad_gates, self.normalised_input[step])
        self.gain_hh_rows.addcmul_(grad_gates, tape.normalised[step])
        self.bias_rows += grad_gates
        torch.mul(grad_gates, norms.gain_hh, out=self.scaled)
        grad_recurrent = _LAYER_NORM_BACKWARD(
            self.scaled_blocks, tape.recurrent[step], (self.scaled_blocks.shape[2],),
            tape.hh_stats[2 * step], tape.hh_stats[2 * step + 1], None, None, (True, False, False),
        )[0].view(grad_gates.shape)  # fmt: skip
        grad_gates.mul_(norms.gain_ih)
        self.recurrent.append(grad_recurrent)
        return grad_recurrent

    def finish(self, grad_hidden: Tensor, grad_cell: Tensor) -> _LSTMGrads:
        """All the gradients, once the loop has reached the first step."""
        recurrent = torch.stack(self.recurrent[::-1])  # (T, B, 4H)
        return _LSTMGrads(
            self.grad_projected, recurrent, grad_hidden, grad_cell,
            self.gain_ih_rows.sum(0), self.bias_rows.sum(0), self.gain_hh_rows.sum(0),
            torch.stack(self.cell_weight).sum(0), torch.stack(self.cell_bias).sum(0),
        )  # fmt: skip


def _recurrent_weight_grad(grad_recurrent: Tensor, outputs: Tensor, hidden: Tensor) -> Tensor:
    """grad_recurrent (T, B, 4H), outputs (T, B, H), initial hidden (B, H) -> grad of W_hh (4H, H),
    all steps in one matmul against the hidden state each step started from."""
    steps, batch, gate_size = grad_recurrent.shape
    previous = torch.cat([hidden.unsqueeze(0), outputs[:-1]])  # (T, B, H)
    return grad_recurrent.view(steps * batch, gate_size).t() @ previous.view(steps * batch, -1)  # (4H, H)


def _per_gate_layer_norm(x: Tensor, num_gates: int, eps: float) -> Tensor:
    """x (..., G*H) -> (..., G*H), each H-unit gate block zero-mean and unit-variance (no gain)."""
    blocks = x.unflatten(-1, (num_gates, x.shape[-1] // num_gates))  # (..., G, H)
    return F.layer_norm(blocks, (blocks.shape[-1],), eps=eps).flatten(-2)  # (..., G*H)


def _autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A context that turns autocast off on `device` (a no-op where autocast knows no such device)."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


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
