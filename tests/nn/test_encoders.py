"""RNNEncoder, seqlit's recurrent layer: every kind (fused, layer norm, custom cell) is padding-invariant and
the CPU length segments equal torch's packed kernel."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlit.data.functional import lengths_to_mask, pad_sequences
from seqlit.nn.encoders import RNNEncoder
from seqlit.nn.layer_norm import LayerNormLSTM
from seqlit.nn.pooling import SequencePooling
from seqlit.nn.protocol import RecurrentLayer
from tests.custom_cells import IndRNNCell, TwoPartCell

# (cell, layer_norm): every kind of layer RNNEncoder builds
KINDS = [
    ("gru", False), ("lstm", False), ("gru", True), ("lstm", True),
    ("tests.custom_cells.IndRNNCell", False), ("torch.nn.LSTMCell", False), ("tests.custom_cells.TwoPartCell", False),
]

LENGTHS = [7, 1, 12, 4, 12, 2]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(("cell", "layer_norm"), KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_batch_matches_each_sequence_alone(cell: str, layer_norm: bool, bidirectional: bool,
                                                  num_layers: int) -> None:
    encoder = RNNEncoder(5, 8, num_layers=num_layers, cell=cell, bidirectional=bidirectional,
                         layer_norm=layer_norm).eval()
    assert isinstance(encoder, RecurrentLayer)
    sequences = [torch.randn(n, 5) for n in LENGTHS]
    lengths = torch.tensor(LENGTHS)
    batch = encoder(pad_sequences(sequences, padding_value=7.0), lengths)  # garbage padding must not matter
    assert batch.outputs.shape == (len(LENGTHS), max(LENGTHS), encoder.output_size)
    slots = num_layers * (2 if bidirectional else 1)
    assert [tuple(part.shape) for part in batch.state] == [(slots, len(LENGTHS), size) for size in encoder.state_sizes]
    mask = lengths_to_mask(lengths)
    assert torch.all(batch.outputs[~mask] == 0.0)
    for row, sequence in enumerate(sequences):
        alone = encoder(sequence.unsqueeze(0), torch.tensor([len(sequence)]))
        # float32 sums in another order (layer norm amplifies that a little): equal up to rounding
        torch.testing.assert_close(batch.outputs[row, : len(sequence)], alone.outputs[0], rtol=1e-5, atol=1e-5)
        for part, alone_part in zip(batch.state, alone.state, strict=True):
            torch.testing.assert_close(part[:, row], alone_part[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("cell", "layer_norm"), KINDS)
def test_no_lengths_means_full_length_and_a_given_state_is_continued(cell: str, layer_norm: bool) -> None:
    """Running a sequence in two halves, the state carried, equals running it whole (what a language model does)."""
    encoder = RNNEncoder(4, 6, num_layers=2, cell=cell, layer_norm=layer_norm).eval()
    inputs = torch.randn(3, 10, 4)
    whole = encoder(inputs)
    first = encoder(inputs[:, :4])
    second = encoder(inputs[:, 4:], None, first.state)
    torch.testing.assert_close(torch.cat([first.outputs, second.outputs], dim=1), whole.outputs, rtol=1e-5, atol=1e-6)
    for part, whole_part in zip(second.state, whole.state, strict=True):
        torch.testing.assert_close(part, whole_part, rtol=1e-5, atol=1e-6)
    with_lengths = encoder(inputs, torch.full((3,), 10))
    torch.testing.assert_close(with_lengths.outputs, whole.outputs, rtol=1e-5, atol=1e-6)


def test_layer_norm_kind_runs_the_explicit_cell_over_segments() -> None:
    """With every row at full length, the encoder's layer-norm path is LayerNormLSTM itself."""
    encoder = RNNEncoder(4, 6, cell="lstm", layer_norm=True).eval()
    reference = LayerNormLSTM(4, 6, layer_norm=True)
    reference.load_state_dict(encoder.cells[0].state_dict())
    inputs = torch.randn(2, 5, 4)
    expected, (hidden, cell) = reference.eval()(inputs)
    got = encoder(inputs, torch.tensor([5, 5]))
    torch.testing.assert_close(got.outputs, expected)
    torch.testing.assert_close(got.state[0], hidden)
    torch.testing.assert_close(got.state[1], cell)


def test_custom_cells_from_a_class_a_dotted_path_or_a_spec() -> None:
    by_class = RNNEncoder(3, 5, cell=IndRNNCell)
    by_path = RNNEncoder(3, 5, cell="tests.custom_cells.IndRNNCell")
    by_spec = RNNEncoder(3, 5, cell={"class_path": "tests.custom_cells.IndRNNCell", "init_args": {"recurrent_max": 0.5}})
    for encoder in (by_class, by_path, by_spec):
        assert encoder.kind == "cell" and isinstance(encoder.cells[0], IndRNNCell)
    assert by_spec.cells[0].recurrent_max == 0.5
    assert RNNEncoder(3, 5, cell=TwoPartCell).state_sizes == (5, 3)
    assert RNNEncoder(3, 5, cell="torch.nn.LSTMCell").state_sizes == (5, 5)


def test_custom_cell_gradients_reach_every_parameter() -> None:
    encoder = RNNEncoder(3, 5, num_layers=2, bidirectional=True, cell=IndRNNCell)
    outputs, state = encoder(torch.randn(4, 6, 3), torch.tensor([6, 2, 5, 1]))
    (outputs.sum() + state[0].sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_custom_cell_misuse_is_explained() -> None:
    with pytest.raises(ValueError, match="layer_norm applies to the built-in cells"):
        RNNEncoder(3, 4, cell=IndRNNCell, layer_norm=True)
    with pytest.raises(ValueError, match="weight_drop applies to the built-in cells"):
        RNNEncoder(3, 4, cell=IndRNNCell, weight_drop=0.2)
    with pytest.raises(ValueError, match="cannot import the cell 'tests.custom_cells.Nope'"):
        RNNEncoder(3, 4, cell="tests.custom_cells.Nope")

    class Wrong(nn.Module):
        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__()
            self.hidden_size = hidden_size + 1

    with pytest.raises(ValueError, match="asked for hidden_size=4 but reports 5"):
        RNNEncoder(3, 4, cell=Wrong)
    with pytest.raises(TypeError, match="not an nn.Module with a hidden_size"):
        RNNEncoder(3, 4, cell=lambda i, h: nn.Linear(i, h))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_weight_drop_one_mask_per_forward_on_every_path(cell: str, layer_norm: bool) -> None:
    """In training the recurrent matrices are dropped (outputs change between forwards; the same seed gives the
    same mask on the whole-sequence and the length-segment paths); in eval nothing is dropped."""
    encoder = RNNEncoder(4, 6, num_layers=1, cell=cell, layer_norm=layer_norm, weight_drop=0.5)
    inputs = torch.randn(3, 7, 4)
    encoder.train()
    torch.manual_seed(1)
    whole = encoder(inputs)
    torch.manual_seed(1)
    segmented = encoder(inputs, torch.full((3,), 7))
    torch.testing.assert_close(segmented.outputs, whole.outputs)
    again = encoder(inputs)
    assert not torch.allclose(again.outputs, whole.outputs)
    (whole.outputs.sum()).backward()
    weight_hh = encoder.cells[0].weight_hh_l0 if layer_norm else encoder.rnn.weight_hh_l0
    assert weight_hh.grad is not None and weight_hh.grad.abs().sum() > 0
    encoder.eval()
    undropped = RNNEncoder(4, 6, cell=cell, layer_norm=layer_norm)
    undropped.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(encoder(inputs).outputs, undropped.eval()(inputs).outputs)


@pytest.mark.parametrize("mode", ["last", "mean", "attention", "mean_max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooling_ignores_padding(mode: str, bidirectional: bool) -> None:
    encoder = RNNEncoder(3, 6, cell="lstm", bidirectional=bidirectional).eval()
    pooling = SequencePooling(mode, encoder.output_size, encoder.num_directions).eval()
    sequences = [torch.randn(n, 3) for n in LENGTHS]
    lengths = torch.tensor(LENGTHS)
    padded = pad_sequences(sequences, padding_value=123.0)  # garbage padding must not matter
    pooled = pooling(encoder(padded, lengths).outputs, lengths_to_mask(lengths), lengths)
    for row, sequence in enumerate(sequences):
        one_length = torch.tensor([len(sequence)])
        alone = pooling(
            encoder(sequence.unsqueeze(0), one_length).outputs, lengths_to_mask(one_length), one_length
        )
        torch.testing.assert_close(pooled[row], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_pooling_equals_final_hidden_state(bidirectional: bool) -> None:
    encoder = RNNEncoder(3, 6, cell="gru", bidirectional=bidirectional).eval()
    lengths = torch.tensor(LENGTHS)
    out = encoder(torch.randn(len(LENGTHS), max(LENGTHS), 3), lengths)
    pooled = SequencePooling("last", encoder.output_size, encoder.num_directions)(
        out.outputs, lengths_to_mask(lengths), lengths
    )
    expected = torch.cat(list(out.hidden[-encoder.num_directions :]), dim=-1)  # (B, D*H)
    torch.testing.assert_close(pooled, expected)


def test_attention_pooling_puts_zero_weight_on_padding() -> None:
    pooling = SequencePooling("attention", 4)
    assert pooling.attention is not None
    lengths = torch.tensor([3, 1, 5])
    mask = lengths_to_mask(lengths)
    _, weights = pooling.attention(torch.randn(3, 5, 4), mask)
    assert torch.all(weights[~mask] == 0.0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))


def test_recurrent_init_is_orthogonal_with_forget_bias_one() -> None:
    encoder = RNNEncoder(3, 16, cell="lstm")
    weight_hh = encoder.rnn.weight_hh_l0.detach()  # (4H, H)
    for block in weight_hh.split(16):
        torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)
    bias = encoder.rnn.bias_ih_l0.detach() + encoder.rnn.bias_hh_l0.detach()
    assert torch.all(bias[16:32] == 1.0)
    assert torch.all(bias[:16] == 0.0) and torch.all(bias[32:] == 0.0)


def test_unknown_cell_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown cell 'rnn'; use one of \['gru', 'lstm'\]"):
        RNNEncoder(3, 4, cell="rnn")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_cpu_length_segments_equal_the_packed_kernel_in_values_states_and_gradients(
    cell: str, bidirectional: bool, num_layers: int
) -> None:
    """The CPU path (one fused call per length segment) against torch's packed path, in float64 with a
    given initial state; ties, a length-1 row and trailing all-padding columns included."""
    encoder = RNNEncoder(5, 7, num_layers=num_layers, cell=cell, bidirectional=bidirectional).double()
    rnn = encoder.rnn
    lengths = torch.tensor([3, 9, 1, 9, 4, 6, 3])
    inputs = torch.randn(len(lengths), 11, 5, dtype=torch.float64, requires_grad=True)  # (B, T, F), T > max length
    hidden = torch.randn(num_layers * (2 if bidirectional else 1), len(lengths), 7, dtype=torch.float64)
    initial = (hidden, torch.randn_like(hidden)) if cell == "lstm" else (hidden,)
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    packed_outputs, packed_state = rnn(packed, initial if cell == "lstm" else hidden)
    expected, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=11)  # (B, T, D*H)
    expected_state = packed_state if cell == "lstm" else (packed_state,)
    outputs, state = encoder(inputs, lengths, initial)
    torch.testing.assert_close(outputs, expected)
    for got, want in zip(state, expected_state, strict=True):
        torch.testing.assert_close(got, want)
    weights = torch.randn_like(outputs)
    parameters = [inputs, *rnn.parameters()]
    got_grads = torch.autograd.grad((outputs * weights).sum() + sum(part.sum() for part in state), parameters)
    want_grads = torch.autograd.grad(
        (expected * weights).sum() + sum(part.sum() for part in expected_state), parameters
    )
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_cpu_length_segments_match_the_fused_kernel_on_a_full_batch_in_float32() -> None:
    """All rows full length: one segment, the same single oneDNN call the plain module makes."""
    encoder = RNNEncoder(6, 16, num_layers=2, cell="lstm")
    rnn = encoder.rnn
    inputs = torch.randn(4, 9, 6)  # (B, T, F)
    outputs, (hidden, cell) = encoder(inputs, torch.full((4,), 9))
    expected, (expected_hidden, expected_cell) = rnn(inputs)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(cell, expected_cell)


def test_cpu_length_segments_reject_an_empty_sequence() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        RNNEncoder(3, 4)(torch.randn(2, 3, 3), torch.tensor([3, 0]))
