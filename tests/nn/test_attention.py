import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.nn.attention import ATTENTION_KINDS, Attention

QUERY_SIZE, KEY_SIZE, VALUE_SIZE = 6, 6, 5


def _attention(kind: str) -> Attention:
    torch.manual_seed(0)
    attention_size = 7 if kind == "additive" else None
    return Attention(QUERY_SIZE, KEY_SIZE, kind=kind, attention_size=attention_size)  # type: ignore[arg-type]


def _batch(lengths: list[int], max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    query = torch.randn(len(lengths), QUERY_SIZE)  # (B, H_q)
    keys = torch.randn(len(lengths), max_len, KEY_SIZE)  # (B, S, H_k)
    values = torch.randn(len(lengths), max_len, VALUE_SIZE)  # (B, S, H_v)
    mask = torch.arange(max_len)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    return query, keys, values, mask


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_weights_are_zero_on_padding_and_rows_sum_to_one(kind: str) -> None:
    attention = _attention(kind)
    query, keys, values, mask = _batch([4, 1, 3], max_len=4)
    context, weights = attention(query, keys, mask, values)
    assert context.shape == (3, VALUE_SIZE) and weights.shape == (3, 4)
    assert torch.all(weights[~mask] == 0.0)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(3))
    assert torch.all(weights[mask] > 0.0)


@settings(deadline=None, max_examples=25)
@given(
    kind=st.sampled_from(ATTENTION_KINDS),
    length=st.integers(1, 6),
    extra=st.integers(1, 4),
    garbage=st.sampled_from([1e6, -1e6, float("nan"), float("inf")]),
)
def test_alone_equals_inside_a_padded_batch(kind: str, length: int, extra: int, garbage: float) -> None:
    attention = _attention(kind)
    query, keys, values, _ = _batch([length], max_len=length)
    alone_context, alone_weights = attention(query, keys, torch.ones(1, length, dtype=torch.bool), values)

    max_len = length + extra
    other_query, other_keys, other_values, _ = _batch([max_len], max_len=max_len)
    padded_keys = torch.full((2, max_len, KEY_SIZE), garbage)  # (B, S, H_k)
    padded_values = torch.full((2, max_len, VALUE_SIZE), garbage)  # (B, S, H_v)
    padded_keys[0, :length], padded_values[0, :length] = keys[0], values[0]
    padded_keys[1], padded_values[1] = other_keys[0], other_values[0]
    mask = torch.arange(max_len)[None, :] < torch.tensor([length, max_len])[:, None]  # (B, S)
    batch_context, batch_weights = attention(torch.cat([query, other_query]), padded_keys, mask, padded_values)

    torch.testing.assert_close(batch_context[0], alone_context[0])
    torch.testing.assert_close(batch_weights[0, :length], alone_weights[0])
    assert torch.all(batch_weights[0, length:] == 0.0)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_precomputed_projected_keys_give_identical_results(kind: str) -> None:
    attention = _attention(kind)
    query, keys, values, mask = _batch([3, 2], max_len=3)
    projected = attention.project_keys(keys)
    direct = attention(query, keys, mask, values)
    cached = attention(query, keys, mask, values, projected_keys=projected)
    assert torch.equal(direct[0], cached[0]) and torch.equal(direct[1], cached[1])


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_gradient_flows_to_query_and_keys(kind: str) -> None:
    attention = _attention(kind)
    query, keys, _, mask = _batch([3, 2], max_len=3)
    query.requires_grad_(True)
    keys.requires_grad_(True)
    context, _ = attention(query, keys, mask)  # values default to keys
    context.pow(2).sum().backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert keys.grad is not None and keys.grad[mask].abs().sum() > 0
    assert torch.all(keys.grad[~mask] == 0.0)


def test_values_default_to_keys() -> None:
    attention = _attention("general")
    query, keys, _, mask = _batch([2, 3], max_len=3)
    torch.testing.assert_close(attention(query, keys, mask)[0], attention(query, keys, mask, keys)[0])


def test_dot_matches_hand_computed_softmax() -> None:
    attention = Attention(2, 2, kind="dot")
    query = torch.tensor([[1.0, 0.0]])  # (B, H_q)
    keys = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])  # (B, S, H_k)
    mask = torch.tensor([[True, True, False]])  # (B, S)
    context, weights = attention(query, keys, mask)
    expected = torch.softmax(torch.tensor([2.0, 0.0]), dim=0)  # (S_valid,)
    torch.testing.assert_close(weights[0], torch.cat([expected, torch.zeros(1)]))
    torch.testing.assert_close(context[0], expected[0] * keys[0, 0] + expected[1] * keys[0, 1])


def test_query_and_key_sizes_may_differ_for_general_and_additive() -> None:
    for kind in ("general", "additive"):
        attention = Attention(4, 3, kind=kind)  # type: ignore[arg-type]
        context, weights = attention(torch.randn(2, 4), torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool))
        assert context.shape == (2, 3) and weights.shape == (2, 5)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="query_size == key_size"):
        Attention(4, 3, kind="dot")
    with pytest.raises(ValueError, match="'dot', 'general', 'additive'"):
        Attention(4, 4, kind="bilinear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only used by kind='additive'"):
        Attention(4, 4, kind="general", attention_size=8)


def test_row_without_real_steps_raises() -> None:
    attention = _attention("additive")
    query, keys, _, _ = _batch([2, 2], max_len=2)
    mask = torch.tensor([[True, False], [False, False]])
    with pytest.raises(RuntimeError, match=r"a row of the attention mask has no real source step"):
        attention(query, keys, mask)


def test_mask_shape_mismatch_raises() -> None:
    attention = _attention("dot")
    query, keys, _, _ = _batch([2, 2], max_len=2)
    with pytest.raises(ValueError, match="mask must be"):
        attention(query, keys, torch.ones(2, 3, dtype=torch.bool))
