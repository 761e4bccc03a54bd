import pytest
import torch

from seqlit.data.functional import lengths_to_mask, pad_sequences
from seqlit.nn.encoders import RNNEncoder
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
