"""The time loop of one LSTM layer, optionally layer-normalised, with a hand-written backward.

Autograd through a Python time loop records ~25 small ops a step; `_LSTMRecurrence` writes each step
into preallocated (T, ...) buffers and its backward does one recurrent matmul a step and the weight
gradient in one matmul, as the fused kernels do (about 0.7x the fused `nn.LSTM` on 2 CPU cores, against
0.56x for autograd through the loop; `benchmarks/kernels.py`). Used by `seqlit.nn.layer_norm`.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["RecurrentNorms", "lstm_recurrence", "per_gate_layer_norm"]

# The backward kernels autograd itself calls, looked up once (torch.ops attribute access is slow).
_TANH_BACKWARD = torch.ops.aten.tanh_backward.default
_TANH_BACKWARD_INTO = torch.ops.aten.tanh_backward.grad_input
_SIGMOID_BACKWARD_INTO = torch.ops.aten.sigmoid_backward.grad_input
_LAYER_NORM_BACKWARD = torch.ops.aten.native_layer_norm_backward.default

class RecurrentNorms(NamedTuple):
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


def lstm_recurrence(
    projected: Tensor, hidden: Tensor, cell: Tensor, weight_hh: Tensor, norms: RecurrentNorms | None = None
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
        norms = None if gain_hh is None else RecurrentNorms(*parameters[:3], eps_hh, *parameters[3:], eps_cell)
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
            norms = RecurrentNorms(gain_ih, bias, gain_hh, ctx.eps[0], cell_weight, cell_bias, ctx.eps[1])
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
    projected: Tensor, hidden: Tensor, cell: Tensor, weight_hh: Tensor, norms: RecurrentNorms | None
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
    norms: RecurrentNorms | None,
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

    def __init__(self, tape: _LSTMTape, norms: RecurrentNorms, grad_projected: Tensor) -> None:
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


def per_gate_layer_norm(x: Tensor, num_gates: int, eps: float) -> Tensor:
    """x (..., G*H) -> (..., G*H), each H-unit gate block zero-mean and unit-variance (no gain)."""
    blocks = x.unflatten(-1, (num_gates, x.shape[-1] // num_gates))  # (..., G, H)
    return F.layer_norm(blocks, (blocks.shape[-1],), eps=eps).flatten(-2)  # (..., G*H)


def _autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A context that turns autocast off on `device` (a no-op where autocast knows no such device)."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()

