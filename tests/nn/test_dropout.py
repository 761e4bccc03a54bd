"""AWD-LSTM dropouts: locked, embedding (word type) and weight (DropConnect) dropout."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlit.nn.dropout import EmbeddingDropout, LockedDropout, WeightDrop
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


# ----------------------------------------------------------------------------- LockedDropout


def test_locked_dropout_one_mask_per_sequence_and_feature() -> None:
    p = 0.5
    dropout = LockedDropout(p).train()
    x = torch.rand(16, 20, 32) + 0.5  # never zero, so zeros in the output are dropped units
    out = dropout(x)
    kept = out != 0  # (B, T, H)
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # same pattern at every step
    assert 0.3 < kept[:, 0].float().mean() < 0.7
    assert any(not torch.equal(kept[0, 0], kept[row, 0]) for row in range(1, 16))  # differs per sequence
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))  # kept values scaled up, the rest exactly 0


def test_locked_dropout_preserves_expectation() -> None:
    out = LockedDropout(0.3).train()(torch.ones(512, 2, 256))
    assert abs(out.mean().item() - 1.0) < 0.02


def test_locked_dropout_is_identity_in_eval_or_at_zero() -> None:
    x = torch.randn(4, 7, 3)
    assert LockedDropout(0.5).eval()(x) is x
    assert LockedDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LockedDropout(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LockedDropout(-0.1)


# ----------------------------------------------------------------------------- EmbeddingDropout


def test_embedding_dropout_drops_whole_word_types() -> None:
    p = 0.5
    embedding = EmbeddingDropout(20, 8, padding_idx=0, dropout=p).train()
    tokens = torch.randint(1, 20, (6, 40))  # every word occurs many times
    out = embedding(tokens)  # (B, T, E)
    weight = embedding.weight.detach()
    dropped_words, kept_words = set(), set()
    for word in tokens.unique().tolist():
        rows = out[tokens == word]  # (N, E): every occurrence of the word
        if torch.all(rows == 0):
            dropped_words.add(word)
        else:
            torch.testing.assert_close(rows, weight[word].expand_as(rows) / (1 - p))
            kept_words.add(word)
    assert dropped_words and kept_words


def test_embedding_dropout_equals_masked_weight_formulation() -> None:
    """Same output and gradient as AWD-LSTM's embedded_dropout: F.embedding(ids, weight * mask)."""
    p = 0.4
    embedding = EmbeddingDropout(15, 6, padding_idx=0, dropout=p, scale_grad_by_freq=True).train()
    tokens = torch.randint(0, 15, (5, 12))
    out = embedding(tokens)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    scale = torch.zeros(15, 1)  # recover the per-word mask from the output
    for word in tokens.unique().tolist():
        first = out[tokens == word][0]
        scale[word] = 0.0 if torch.all(first == 0) else 1 / (1 - p)
    weight = embedding.weight.detach().clone().requires_grad_()
    expected = F.embedding(tokens, weight * scale, padding_idx=0, scale_grad_by_freq=True)
    (expected * upstream).sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(embedding.weight.grad, weight.grad)
    assert torch.all(embedding.weight.grad[0] == 0)  # padding row still gets no gradient


def test_embedding_dropout_is_identity_in_eval_and_supports_sparse() -> None:
    embedding = EmbeddingDropout(10, 4, dropout=0.5, sparse=True)
    tokens = torch.randint(0, 10, (3, 5))
    torch.testing.assert_close(embedding.eval()(tokens), F.embedding(tokens, embedding.weight))
    embedding.train()(tokens).sum().backward()
    assert embedding.weight.grad.is_sparse
    with pytest.raises(ValueError, match="dropout"):
        EmbeddingDropout(10, 4, dropout=1.5)


def test_embedding_dropout_weight_can_be_tied_to_the_decoder() -> None:
    embedding = EmbeddingDropout(12, 6, dropout=0.3).train()
    decoder = nn.Linear(6, 12, bias=False)
    decoder.weight = embedding.weight
    assert decoder.weight is embedding.weight and isinstance(embedding.weight, nn.Parameter)
    model = nn.ModuleDict({"embedding": embedding, "decoder": decoder})
    assert len(list(model.parameters())) == 1
    tokens = torch.randint(0, 12, (2, 7))
    embedded = embedding(tokens)
    hidden = torch.tanh(embedded)  # stand-in for the RNN
    logits = decoder(hidden)
    loss = F.cross_entropy(logits.reshape(-1, 12), tokens.reshape(-1))
    grad_logits, grad_embedded = torch.autograd.grad(loss, [logits, embedded], retain_graph=True)
    grad_from_decoder = grad_logits.reshape(-1, 12).T @ hidden.detach().reshape(-1, 6)  # (V, E)
    (grad_from_lookup,) = torch.autograd.grad(embedded, embedding.weight, grad_embedded, retain_graph=True)
    loss.backward()
    assert grad_from_decoder.abs().sum() > 0 and grad_from_lookup.abs().sum() > 0
    # The shared Parameter accumulates both contributions: the decoder's plus the looked-up rows'.
    torch.testing.assert_close(embedding.weight.grad, grad_from_decoder + grad_from_lookup)


# ----------------------------------------------------------------------------- WeightDrop


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_uses_one_dropped_matrix_per_forward(cell: str) -> None:
    p = 0.5
    wrapped = WeightDrop(FUSED[cell](INPUT, HIDDEN, num_layers=2, batch_first=True), p).train()
    assert wrapped.weight_names == ("weight_hh_l0", "weight_hh_l1")
    assert isinstance(wrapped.module, FUSED[cell])  # the fused module runs, not a per-step cell
    seen = _capture(wrapped.module, list(wrapped.weight_names))
    x = torch.randn(BATCH, STEPS, INPUT)

    out, final = wrapped(x)

    dropped = seen[0]
    plain = copy.deepcopy(wrapped.module)
    for name, matrix in dropped.items():
        raw = wrapped.module.get_parameter(name).detach()
        kept = matrix != 0
        assert 0.3 < kept.float().mean() < 0.7
        torch.testing.assert_close(matrix[kept], raw[kept] / (1 - p))  # a dropout of the raw weight
        plain = _with_weight(plain, name, matrix)
    assert not torch.equal(dropped["weight_hh_l0"] != 0, dropped["weight_hh_l1"] != 0)  # a mask per matrix
    # A plain RNN given that single matrix reproduces every step of every sequence: one mask per forward.
    expected_out, expected_final = plain(x)
    torch.testing.assert_close(out, expected_out)
    for got, want in zip(_flatten_state(final), _flatten_state(expected_final), strict=True):
        torch.testing.assert_close(got, want)


def test_weight_drop_masks_change_between_forwards_and_eval_is_undropped() -> None:
    lstm = nn.LSTM(INPUT, HIDDEN, batch_first=True)
    reference = copy.deepcopy(lstm)
    wrapped = WeightDrop(lstm, 0.5).train()
    seen = _capture(wrapped.module, ["weight_hh_l0"])
    x = torch.randn(BATCH, STEPS, INPUT)

    first, _ = wrapped(x)
    second, _ = wrapped(x)

    assert not torch.equal(seen[0]["weight_hh_l0"] != 0, seen[1]["weight_hh_l0"] != 0)
    assert not torch.allclose(first, second)
    # No dropped tensor survives the call: the eval forward that follows uses the raw weight.
    assert all(w is p for w, p in zip(wrapped.module._flat_weights, wrapped.module.parameters(), strict=True))
    wrapped.eval()
    torch.testing.assert_close(wrapped(x)[0], reference(x)[0], rtol=0, atol=0)
    assert torch.equal(seen[-1]["weight_hh_l0"], reference.weight_hh_l0.detach())


def test_weight_drop_gradient_reaches_the_raw_weight() -> None:
    p = 0.4
    wrapped = WeightDrop(nn.LSTM(INPUT, HIDDEN, batch_first=True).double(), p).train()
    seen = _capture(wrapped.module, ["weight_hh_l0"])
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    upstream = torch.randn(BATCH, STEPS, HIDDEN, dtype=torch.float64)

    (wrapped(x)[0] * upstream).sum().backward()

    dropped = seen[0]["weight_hh_l0"]
    plain = _with_weight(wrapped.module, "weight_hh_l0", dropped)
    (plain(x)[0] * upstream).sum().backward()
    # d loss / d raw = d loss / d dropped * mask / (1 - p)
    expected = plain.weight_hh_l0.grad * (dropped != 0) / (1 - p)
    torch.testing.assert_close(wrapped.module.weight_hh_l0.grad, expected, rtol=0, atol=1e-12)
    assert wrapped.module.weight_hh_l0.grad.abs().sum() > 0
    torch.testing.assert_close(wrapped.module.weight_ih_l0.grad, plain.weight_ih_l0.grad, rtol=0, atol=1e-12)


def test_weight_drop_state_dict_round_trips_and_keeps_torch_names() -> None:
    wrapped = WeightDrop(nn.LSTM(INPUT, HIDDEN, num_layers=2, batch_first=True), 0.5)
    wrapped.train()(torch.randn(BATCH, STEPS, INPUT))  # a training forward must leave nothing behind
    state = wrapped.state_dict()
    assert set(state) == {f"module.{name}" for name in nn.LSTM(INPUT, HIDDEN, num_layers=2).state_dict()}

    fresh = WeightDrop(nn.LSTM(INPUT, HIDDEN, num_layers=2, batch_first=True), 0.5)
    fresh.load_state_dict(state)  # strict
    x = torch.randn(BATCH, STEPS, INPUT)
    torch.testing.assert_close(fresh.eval()(x)[0], wrapped.eval()(x)[0], rtol=0, atol=0)
    plain = nn.LSTM(INPUT, HIDDEN, num_layers=2, batch_first=True)
    plain.load_state_dict(wrapped.module.state_dict())
    torch.testing.assert_close(plain(x)[0], wrapped(x)[0], rtol=0, atol=0)


def test_weight_drop_wraps_layer_norm_lstm() -> None:
    p = 0.5
    wrapped = WeightDrop(LayerNormLSTM(INPUT, HIDDEN, num_layers=2), p).train()
    assert wrapped.weight_names == ("weight_hh_l0", "weight_hh_l1")  # not the layer-norm gains
    seen = _capture(wrapped.module, list(wrapped.weight_names))
    x = torch.randn(BATCH, STEPS, INPUT)

    out, _ = wrapped(x)
    out.sum().backward()

    plain = wrapped.module
    for name, matrix in seen[0].items():
        plain = _with_weight(plain, name, matrix)
    torch.testing.assert_close(out, plain(x)[0])
    assert wrapped.module.weight_hh_l1.grad.abs().sum() > 0
    assert isinstance(wrapped.module.weight_hh_l0, nn.Parameter)
    torch.testing.assert_close(wrapped.eval()(x)[0], wrapped.module(x)[0], rtol=0, atol=0)


def test_weight_drop_emits_no_warnings_and_follows_dtype_changes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = WeightDrop(nn.LSTM(INPUT, HIDDEN, num_layers=2, batch_first=True), 0.3)
        x = torch.randn(BATCH, STEPS, INPUT)
        wrapped.train()(x)[0].sum().backward()
        wrapped.flatten_parameters()
        wrapped.eval()(x)
        wrapped.double()
        out, (hidden, cell) = wrapped.train()(x.double())
        out.sum().backward()
        assert out.dtype == hidden.dtype == torch.float64
        assert wrapped.module.weight_hh_l0.grad.dtype == torch.float64
        copied = copy.deepcopy(wrapped)
        torch.testing.assert_close(copied.eval()(x.double())[0], wrapped.eval()(x.double())[0])
    assert isinstance(wrapped.module, nn.LSTM)
    assert (wrapped.input_size, wrapped.hidden_size, wrapped.num_layers) == (INPUT, HIDDEN, 2)


def test_weight_drop_zero_is_the_plain_rnn_and_bad_arguments_are_explained() -> None:
    gru = nn.GRU(INPUT, HIDDEN, batch_first=True)
    x = torch.randn(BATCH, STEPS, INPUT)
    torch.testing.assert_close(WeightDrop(gru, 0.0).train()(x)[0], gru(x)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        WeightDrop(gru, 1.0)
    with pytest.raises(ValueError, match="weight_hh_l0"):  # lists the valid names
        WeightDrop(gru, 0.5, weight_names=["weight_hh"])
    with pytest.raises(ValueError, match="weight_names"):
        WeightDrop(nn.Linear(3, 3), 0.5)
