"""LayerNormLSTM / LayerNormGRU: equal to torch's RNNs without layer norm, the formula with it, exact gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqlit.nn.layer_norm import LayerNormGRU, LayerNormLSTM

BATCH, STEPS, INPUT, HIDDEN = 3, 6, 4, 5
EXPLICIT = {"lstm": LayerNormLSTM, "gru": LayerNormGRU}
FUSED = {"lstm": nn.LSTM, "gru": nn.GRU}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _initial_state(cell: str, num_layers: int, dtype: torch.dtype) -> Tensor | tuple[Tensor, Tensor]:
    hidden = torch.randn(num_layers, BATCH, HIDDEN, dtype=dtype)  # (L, B, H)
    if cell == "gru":
        return hidden
    return hidden, torch.randn(num_layers, BATCH, HIDDEN, dtype=dtype)  # (L, B, H) each


def _flatten_state(state: Tensor | tuple[Tensor, ...]) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def _with_weight(rnn: nn.Module, name: str, weight: Tensor) -> nn.Module:
    """A copy of `rnn` with one parameter replaced (a plain RNN using a given dropped matrix)."""
    clone = copy.deepcopy(rnn)
    clone.load_state_dict({**rnn.state_dict(), name: weight.detach()})
    return clone


def _capture(rnn: nn.Module, names: list[str]) -> list[dict[str, Tensor]]:
    """Records, at each call of `rnn`, the tensors it sees under `names` (the dropped matrices)."""
    seen: list[dict[str, Tensor]] = []

    def hook(module: nn.Module, args: tuple) -> None:
        seen.append({name: getattr(module, name).detach().clone() for name in names})

    rnn.register_forward_pre_hook(hook)
    return seen


# ----------------------------------------------------------------------------- LayerNormLSTM / GRU


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("with_state", [False, True])
def test_layer_norm_off_matches_torch(cell: str, num_layers: int, with_state: bool) -> None:
    ours = EXPLICIT[cell](INPUT, HIDDEN, num_layers=num_layers, layer_norm=False).double()
    torch_rnn = FUSED[cell](INPUT, HIDDEN, num_layers=num_layers, batch_first=True).double()
    torch_rnn.load_state_dict(ours.state_dict())  # strict: identical names and shapes
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    state = _initial_state(cell, num_layers, torch.float64) if with_state else None
    x_ours, x_torch = x.clone().requires_grad_(), x.clone().requires_grad_()

    out, final = ours(x_ours, state)
    expected_out, expected_final = torch_rnn(x_torch, state)

    torch.testing.assert_close(out, expected_out, rtol=0, atol=1e-10)
    for got, expected in zip(_flatten_state(final), _flatten_state(expected_final), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    weights = torch.randn_like(out)  # a loss that weighs every output differently
    loss_ours = (out * weights).sum() + sum(s.sum() for s in _flatten_state(final))
    loss_torch = (expected_out * weights).sum() + sum(s.sum() for s in _flatten_state(expected_final))
    loss_ours.backward()
    loss_torch.backward()
    torch.testing.assert_close(x_ours.grad, x_torch.grad, rtol=0, atol=1e-10)
    torch_params = dict(torch_rnn.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, torch_params[name].grad, rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_norm_off_matches_torch_float32_time_major(cell: str) -> None:
    ours = EXPLICIT[cell](INPUT, HIDDEN, num_layers=2, layer_norm=False, batch_first=False)
    torch_rnn = FUSED[cell](INPUT, HIDDEN, num_layers=2)
    torch_rnn.load_state_dict(ours.state_dict())
    x = torch.randn(STEPS, BATCH, INPUT)  # (T, B, I)
    out, final = ours(x)
    expected_out, expected_final = torch_rnn(x)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
    for got, expected in zip(_flatten_state(final), _flatten_state(expected_final), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _reference_layer_norm_lstm(rnn: LayerNormLSTM, x: Tensor) -> Tensor:
    """Ba et al.'s formula written out step by step for one layer, independently of the module."""
    size = rnn.hidden_size
    gain_ih, gain_hh = rnn.layer_norm_ih[0].weight, rnn.layer_norm_hh[0].weight  # (4H,)
    norm_cell = rnn.layer_norm_cell[0]

    def per_gate_norm(projection: Tensor, gain: Tensor) -> Tensor:
        blocks = [F.layer_norm(block, (size,)) for block in projection.split(size, dim=-1)]
        return torch.cat(blocks, dim=-1) * gain

    hidden = cell = x.new_zeros(x.shape[0], size)
    outputs = []
    for step in range(x.shape[1]):
        gates = (
            per_gate_norm(x[:, step] @ rnn.weight_ih_l0.T, gain_ih)
            + per_gate_norm(hidden @ rnn.weight_hh_l0.T, gain_hh)
            + rnn.bias_ih_l0
            + rnn.bias_hh_l0
        )
        i, f, g, o = gates.split(size, dim=-1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        hidden = torch.sigmoid(o) * torch.tanh(norm_cell(cell))
        outputs.append(hidden)
    return torch.stack(outputs, dim=1)


def _reference_layer_norm_gru(rnn: LayerNormGRU, x: Tensor) -> Tensor:
    size = rnn.hidden_size
    gain_ih, gain_hh = rnn.layer_norm_ih[0].weight, rnn.layer_norm_hh[0].weight  # (3H,)

    def per_gate_norm(projection: Tensor, gain: Tensor) -> Tensor:
        blocks = [F.layer_norm(block, (size,)) for block in projection.split(size, dim=-1)]
        return torch.cat(blocks, dim=-1) * gain

    hidden = x.new_zeros(x.shape[0], size)
    outputs = []
    for step in range(x.shape[1]):
        from_input = per_gate_norm(x[:, step] @ rnn.weight_ih_l0.T, gain_ih) + rnn.bias_ih_l0
        from_hidden = per_gate_norm(hidden @ rnn.weight_hh_l0.T, gain_hh) + rnn.bias_hh_l0
        x_r, x_z, x_n = from_input.split(size, dim=-1)
        h_r, h_z, h_n = from_hidden.split(size, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        hidden = (1 - z) * n + z * hidden
        outputs.append(hidden)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_norm_on_follows_the_formula_and_differs_from_torch(cell: str) -> None:
    ours = EXPLICIT[cell](INPUT, HIDDEN).double()
    with torch.no_grad():  # non-trivial gains, biases and LN_c shift so each term is exercised
        for name, param in ours.named_parameters():
            if "layer_norm" in name or name.startswith("bias"):
                param.add_(0.3 * torch.randn_like(param))
    torch_rnn = FUSED[cell](INPUT, HIDDEN, batch_first=True).double()
    torch_rnn.load_state_dict(ours.state_dict(), strict=False)
    x = 3.0 * torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)

    out, _ = ours(x)

    assert torch.isfinite(out).all()
    assert (out - torch_rnn(x)[0]).abs().max() > 1e-2
    reference = _reference_layer_norm_lstm(ours, x) if cell == "lstm" else _reference_layer_norm_gru(ours, x)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_per_gate_layer_norm_ignores_scale_and_shift_of_one_gate_block(cell: str) -> None:
    """Per-gate LN removes any scale or shift of a single gate block's projection (a LN over all
    G*H units would not), in every layer, for the input and the recurrent matrix alike."""
    ours = EXPLICIT[cell](INPUT, HIDDEN, num_layers=2).double().eval()
    for norm in [*ours.layer_norm_ih, *ours.layer_norm_hh]:
        norm.eps = 0.0  # makes the invariance exact; eps only guards against zero variance
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    state = _initial_state(cell, 2, torch.float64)  # non-zero h0: a zero block would have zero variance
    expected, expected_final = ours(x, state)
    transformed = copy.deepcopy(ours)
    with torch.no_grad():
        for name, param in transformed.named_parameters():
            if name.startswith("weight"):
                block = param[HIDDEN : 2 * HIDDEN]  # (H, I or H): the forget / update gate
                shift = torch.randn(1, param.shape[1], dtype=param.dtype)  # same row added to every unit
                block.mul_(7.0).add_(shift)

    out, final = transformed(x, state)

    assert (transformed.weight_ih_l0 - ours.weight_ih_l0).abs().max() > 1.0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-9)
    for got, want in zip(_flatten_state(final), _flatten_state(expected_final), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    # The same change to a whole-vector quantity is not absorbed: the property is specific to per-gate LN.
    untransformed_bias = copy.deepcopy(ours)
    with torch.no_grad():
        untransformed_bias.bias_ih_l0[HIDDEN : 2 * HIDDEN].mul_(7.0).add_(1.0)
    assert (untransformed_bias(x, state)[0] - expected).abs().max() > 1e-3


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_norm_on_state_dict_takes_torch_weights(cell: str) -> None:
    torch_rnn = FUSED[cell](INPUT, HIDDEN, num_layers=2, batch_first=True)
    ours = EXPLICIT[cell](INPUT, HIDDEN, num_layers=2)
    result = ours.load_state_dict(torch_rnn.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(key.startswith("layer_norm") for key in result.missing_keys)
    for name, param in torch_rnn.named_parameters():
        assert torch.equal(getattr(ours, name), param)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dropout_only_between_layers(cell: str) -> None:
    x = torch.randn(BATCH, STEPS, INPUT)
    single = EXPLICIT[cell](INPUT, HIDDEN, num_layers=1, dropout=0.5)
    torch.testing.assert_close(single.train()(x)[0], single.eval()(x)[0])  # nothing after the last layer
    stacked = EXPLICIT[cell](INPUT, HIDDEN, num_layers=2, dropout=0.5)
    assert not torch.allclose(stacked.train()(x)[0], stacked.eval()(x)[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_explicit_cells_use_the_house_init(cell: str, layer_norm: bool) -> None:
    rnn = EXPLICIT[cell](INPUT, HIDDEN, num_layers=2, layer_norm=layer_norm)
    gates = 4 if cell == "lstm" else 3
    for layer in range(2):
        weight_hh = getattr(rnn, f"weight_hh_l{layer}")
        assert weight_hh.shape == (gates * HIDDEN, HIDDEN)
        for block in weight_hh.split(HIDDEN):
            torch.testing.assert_close(block @ block.T, torch.eye(HIDDEN), rtol=0, atol=1e-5)
        expected_bias_ih = torch.zeros(gates * HIDDEN)
        if cell == "lstm":
            expected_bias_ih[HIDDEN : 2 * HIDDEN] = 1.0
        assert torch.equal(getattr(rnn, f"bias_ih_l{layer}").detach(), expected_bias_ih)
        assert torch.equal(getattr(rnn, f"bias_hh_l{layer}").detach(), torch.zeros(gates * HIDDEN))
    for name, param in rnn.named_parameters():
        if name.startswith("layer_norm") and name.endswith("weight"):
            assert torch.equal(param.detach(), torch.ones_like(param))


def test_explicit_cells_reject_bad_input_with_the_fix() -> None:
    lstm, gru = LayerNormLSTM(INPUT, HIDDEN, num_layers=2), LayerNormGRU(INPUT, HIDDEN)
    x = torch.randn(BATCH, STEPS, INPUT)
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 2]), batch_first=True)
    with pytest.raises(TypeError, match="PackedSequence"):
        lstm(packed)
    with pytest.raises(ValueError, match="input_size = 4"):
        lstm(torch.randn(BATCH, STEPS, INPUT + 1))
    with pytest.raises(ValueError, match=r"\(2, 3, 5\)"):
        lstm(x, (torch.zeros(1, BATCH, HIDDEN), torch.zeros(2, BATCH, HIDDEN)))
    with pytest.raises(ValueError, match="tuple"):
        gru(x, (torch.zeros(1, BATCH, HIDDEN), torch.zeros(1, BATCH, HIDDEN)))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LayerNormGRU(INPUT, HIDDEN, dropout=1.0)


# ----------------------------------------------------------------------------- LayerNormLSTM's hand-written backward


def _perturbed_layer_norm_lstm(num_layers: int = 1, layer_norm: bool = True) -> LayerNormLSTM:
    """A float64 LayerNormLSTM whose gains and biases are not 1 / 0, so every gradient term is exercised."""
    rnn = LayerNormLSTM(INPUT, HIDDEN, num_layers=num_layers, layer_norm=layer_norm).double()
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if "layer_norm" in name or name.startswith("bias"):
                param.add_(0.3 * torch.randn_like(param))
    return rnn


def _gradients(loss: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize("loss_on", ["outputs", "last_hidden"])
def test_layer_norm_lstm_gradients_are_autograds_of_the_formula(loss_on: str) -> None:
    """The loop's hand-written backward gives autograd's gradients of Ba et al.'s formula written out
    step by step, for the input and every parameter; `last_hidden` leaves the outputs' gradient unused."""
    rnn = _perturbed_layer_norm_lstm()
    x = 3.0 * torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(BATCH, STEPS, HIDDEN, dtype=torch.float64)
    tensors = [x, *rnn.parameters()]

    out, (hidden, _) = rnn(x)
    reference = _reference_layer_norm_lstm(rnn, x)  # (B, T, H)

    if loss_on == "outputs":
        got, expected = _gradients((out * weights).sum(), tensors), _gradients((reference * weights).sum(), tensors)
    else:
        got = _gradients((hidden[0] * weights[:, -1]).sum(), tensors)
        expected = _gradients((reference[:, -1] * weights[:, -1]).sum(), tensors)
    names = ["x", *(name for name, _ in rnn.named_parameters())]
    for name, got_grad, expected_grad in zip(names, got, expected, strict=True):
        torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_layer_norm_lstm_passes_gradcheck_with_initial_state_and_two_layers(layer_norm: bool) -> None:
    """Numerical Jacobians of every output (sequence, final h and c) w.r.t. the input, the initial
    states and every parameter match the hand-written backward."""
    rnn = _perturbed_layer_norm_lstm(num_layers=2, layer_norm=layer_norm)
    names = [name for name, _ in rnn.named_parameters()]
    x = torch.randn(2, 4, INPUT, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(2, 2, HIDDEN, dtype=torch.float64, requires_grad=True) for _ in range(2))
    params = [param.detach().clone().requires_grad_() for param in rnn.parameters()]

    def run(x: Tensor, h0: Tensor, c0: Tensor, *params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, (hidden, cell) = torch.func.functional_call(rnn, dict(zip(names, params, strict=True)), (x, (h0, c0)))
        return out, hidden, cell

    assert torch.autograd.gradcheck(run, (x, h0, c0, *params), fast_mode=True)


def test_layer_norm_lstm_backward_can_run_twice_and_skips_frozen_weights() -> None:
    rnn = _perturbed_layer_norm_lstm()
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    out, _ = rnn(x)
    loss = out.square().sum()
    first = torch.autograd.grad(loss, list(rnn.parameters()), retain_graph=True)
    loss.backward()  # a second backward through the same graph: the first left the saved tensors as they were
    second = [param.grad.clone() for param in rnn.parameters()]
    for got, expected in zip(second, first, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    rnn.zero_grad()
    rnn.weight_hh_l0.requires_grad_(False)
    rnn(x)[0].square().sum().backward()
    assert rnn.weight_hh_l0.grad is None
    torch.testing.assert_close(rnn.weight_ih_l0.grad, first[0], rtol=0, atol=1e-12)


def test_layer_norm_lstm_no_grad_matches_and_misuse_is_caught() -> None:
    rnn = _perturbed_layer_norm_lstm()
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64, requires_grad=True)
    out, _ = rnn(x)
    with torch.no_grad():
        torch.testing.assert_close(rnn(x)[0], out, rtol=0, atol=0)
    # The outputs are saved for the backward: changing them in place is an error, not a silent wrong gradient.
    modified, _ = rnn(x)
    modified.mul_(2.0)
    with pytest.raises(RuntimeError, match="inplace"):
        modified.sum().backward()
    (grad_x,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_x.sum().backward()


@pytest.mark.parametrize("layer_norm", [True, False])
def test_layer_norm_lstm_runs_in_float32_under_cpu_autocast(layer_norm: bool) -> None:
    rnn = LayerNormLSTM(INPUT, HIDDEN, num_layers=2, layer_norm=layer_norm)
    x = torch.randn(BATCH, STEPS, INPUT)
    expected, _ = rnn(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (hidden, cell) = rnn(x)
    out.sum().backward()
    assert out.dtype == hidden.dtype == cell.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0.05)  # only the input projection is bfloat16
    assert all(torch.isfinite(param.grad).all() for param in rnn.parameters())
