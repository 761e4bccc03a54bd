import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlit.data.functional import lengths_to_mask, pad_sequences
from seqlit.nn.encoders import RNNEncoder
from seqlit.nn.segmented import segmented_rnn
from seqlit.nn.pooling import SequencePooling

LENGTHS = [7, 1, 12, 4, 12, 2]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_batch_matches_each_sequence_alone(cell: str, bidirectional: bool, num_layers: int) -> None:
    encoder = RNNEncoder(5, 8, num_layers=num_layers, cell=cell, bidirectional=bidirectional).eval()
    sequences = [torch.randn(n, 5) for n in LENGTHS]
    lengths = torch.tensor(LENGTHS)
    batch = encoder(pad_sequences(sequences), lengths)
    assert batch.outputs.shape == (len(LENGTHS), max(LENGTHS), encoder.output_size)
    mask = lengths_to_mask(lengths)
    assert torch.all(batch.outputs[~mask] == 0.0)
    for row, sequence in enumerate(sequences):
        alone = encoder(sequence.unsqueeze(0), torch.tensor([len(sequence)]))
        torch.testing.assert_close(batch.outputs[row, : len(sequence)], alone.outputs[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batch.hidden[:, row], alone.hidden[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["last", "mean", "attention"])
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
    with pytest.raises(ValueError, match="choose one of"):
        RNNEncoder(3, 4, cell="rnn")  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_cpu_length_segments_equal_the_packed_kernel_in_values_states_and_gradients(
    cell: str, bidirectional: bool, num_layers: int
) -> None:
    """The CPU path (one fused call per length segment) against torch's packed path, in float64 with a
    given initial state; ties, a length-1 row and trailing all-padding columns included."""
    rnn = RNNEncoder(5, 7, num_layers=num_layers, cell=cell, bidirectional=bidirectional).rnn.double()
    lengths = torch.tensor([3, 9, 1, 9, 4, 6, 3])
    inputs = torch.randn(len(lengths), 11, 5, dtype=torch.float64, requires_grad=True)  # (B, T, F), T > max length
    hidden = torch.randn(num_layers * (2 if bidirectional else 1), len(lengths), 7, dtype=torch.float64)
    initial = (hidden, torch.randn_like(hidden)) if cell == "lstm" else (hidden,)
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    packed_outputs, packed_state = rnn(packed, initial if cell == "lstm" else hidden)
    expected, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=11)  # (B, T, D*H)
    expected_state = packed_state if cell == "lstm" else (packed_state,)
    outputs, state = segmented_rnn(rnn, inputs, lengths, initial)
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
    rnn = RNNEncoder(6, 16, num_layers=2, cell="lstm").rnn
    inputs = torch.randn(4, 9, 6)  # (B, T, F)
    outputs, (hidden, cell) = segmented_rnn(rnn, inputs, torch.full((4,), 9))
    expected, (expected_hidden, expected_cell) = rnn(inputs)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(cell, expected_cell)


def test_cpu_length_segments_reject_an_empty_sequence() -> None:
    rnn = RNNEncoder(3, 4).rnn
    with pytest.raises(ValueError, match="at least one step"):
        segmented_rnn(rnn, torch.randn(2, 3, 3), torch.tensor([3, 0]))
