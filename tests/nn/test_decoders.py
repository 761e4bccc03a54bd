"""AttentionDecoder: padding invariance, fast path == stepwise path, scheduled sampling, greedy and beam search."""

from __future__ import annotations

import pytest
import torch

from seqlit.nn.decoders import AttentionDecoder, DecoderState, Memory
from seqlit.types import BOS_ID, EOS_ID, PAD_ID

VOCAB = 12
ENCODER = 10


def _decoder(cell: str = "lstm", input_feeding: bool = True, attention: str = "general", layers: int = 1) -> AttentionDecoder:
    torch.manual_seed(0)
    decoder = AttentionDecoder(
        vocab_size=VOCAB, encoder_size=ENCODER, encoder_state_size=ENCODER, embedding_size=6, hidden_size=8,
        num_layers=layers, cell=cell, attention=attention, input_feeding=input_feeding, dropout=0.0,
    )
    return decoder.eval()


def _inputs(batch: int = 3, source: int = 5, target: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(batch, source, ENCODER, generator=generator)  # (B, S, H_e)
    lengths = torch.tensor([source] + [max(1, source - 2 - i) for i in range(batch - 1)])
    mask = torch.arange(source).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
    keys = keys * mask.unsqueeze(-1)
    final = torch.randn(batch, ENCODER, generator=generator)  # (B, H_s)
    targets = torch.randint(4, VOCAB, (batch, target), generator=generator)
    targets[:, 0] = BOS_ID
    return keys, mask, final, targets


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_sequence_alone_equals_sequence_in_padded_batch(cell: str, input_feeding: bool, attention: str) -> None:
    encoder_size = ENCODER
    decoder = AttentionDecoder(
        vocab_size=VOCAB, encoder_size=encoder_size, encoder_state_size=ENCODER, embedding_size=6,
        hidden_size=ENCODER if attention == "dot" else 8, cell=cell, attention=attention,
        input_feeding=input_feeding, dropout=0.0,
    ).eval()
    keys, mask, final, targets = _inputs()
    batch_logits = decoder(targets, decoder.initial_state(final), decoder.memory(keys, mask)).logits  # (B, T, V)
    for row in range(keys.shape[0]):
        n = int(mask[row].sum())
        # shorter target and source alone: the batch's extra source padding and target steps must not matter
        alone = decoder(
            targets[row : row + 1, :3], decoder.initial_state(final[row : row + 1]),
            decoder.memory(keys[row : row + 1, :n], mask[row : row + 1, :n]),
        ).logits
        torch.testing.assert_close(alone[0], batch_logits[row, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_fused_teacher_forced_path_equals_stepwise(cell: str) -> None:
    decoder = _decoder(cell, input_feeding=False, layers=2)
    keys, mask, final, targets = _inputs()
    memory = decoder.memory(keys, mask)
    fused = decoder(targets, decoder.initial_state(final), memory)  # teacher-forced fast path
    state = decoder.initial_state(final)
    steps = []
    for t in range(targets.shape[1]):
        logits, state, _ = decoder.step(targets[:, t], state, memory)
        steps.append(logits)
    torch.testing.assert_close(fused.logits, torch.stack(steps, dim=1), atol=1e-5, rtol=1e-5)


def test_padded_source_steps_get_zero_attention() -> None:
    decoder = _decoder()
    keys, mask, final, targets = _inputs()
    output = decoder(targets, decoder.initial_state(final), decoder.memory(keys, mask))
    assert output.attention.shape == (3, 4, 5)
    assert torch.all(output.attention.masked_select(~mask.unsqueeze(1).expand_as(output.attention)) == 0)
    torch.testing.assert_close(output.attention.sum(-1), torch.ones(3, 4))


def test_scheduled_sampling_flips_a_coin_per_token() -> None:
    decoder = _decoder()
    keys, mask, final, _ = _inputs(batch=64, target=12)
    targets = torch.randint(4, VOCAB, (64, 12))
    targets[:, 0] = BOS_ID
    memory = decoder.memory(keys, mask)
    output = decoder(targets, decoder.initial_state(final), memory, teacher_forcing_prob=0.7,
                     generator=torch.Generator().manual_seed(3))
    forced = output.teacher_forced
    assert forced is not None and forced[:, 0].all()
    share = forced[:, 1:].float().mean().item()
    assert 0.62 < share < 0.78  # 704 coins at p=0.7
    # coins differ within a sequence (not one coin per sequence)
    per_row = forced[:, 1:].float().mean(dim=1)
    assert ((per_row > 0) & (per_row < 1)).any()
    # all-forced equals plain teacher forcing, all-sampled equals greedy decoding fed its own argmax
    teacher = decoder(targets, decoder.initial_state(final), memory)
    always = decoder(targets, decoder.initial_state(final), memory, teacher_forcing_prob=1.0)
    torch.testing.assert_close(teacher.logits, always.logits)
    never = decoder(targets, decoder.initial_state(final), memory, teacher_forcing_prob=0.0)
    greedy = decoder.greedy(decoder.initial_state(final), memory, max_length=12)
    steps = greedy.tokens.shape[1]
    never_logits = never.logits.clone()
    never_logits[..., [PAD_ID, BOS_ID]] = float("-inf")  # never generated
    free = never_logits.argmax(-1)[:, :steps]
    alive = torch.arange(steps).unsqueeze(0) <= greedy.lengths.unsqueeze(1)  # up to and including EOS
    assert torch.equal(free[alive], greedy.tokens[alive])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_size_one_equals_greedy(cell: str) -> None:
    decoder = _decoder(cell)
    keys, mask, final, _ = _inputs(batch=6, seed=5)
    memory = decoder.memory(keys, mask)
    greedy = decoder.greedy(decoder.initial_state(final), memory, max_length=9)
    beam = decoder.beam_search(decoder.initial_state(final), memory, beam_size=1, max_length=9, length_penalty=0.0)
    assert greedy.as_lists() == beam.as_lists()
    torch.testing.assert_close(greedy.scores, beam.scores)


def test_beam_search_finds_a_better_or_equal_score_than_greedy() -> None:
    decoder = _decoder()
    keys, mask, final, _ = _inputs(batch=8, seed=7)
    memory = decoder.memory(keys, mask)
    greedy = decoder.greedy(decoder.initial_state(final), memory, max_length=30)
    beam = decoder.beam_search(decoder.initial_state(final), memory, beam_size=6, max_length=30, length_penalty=0.0)
    finished = (greedy.lengths < greedy.tokens.shape[1])
    assert torch.all(beam.scores[finished] >= greedy.scores[finished] - 1e-5)


def test_beam_search_rows_are_independent_of_the_batch() -> None:
    decoder = _decoder("gru")
    keys, mask, final, _ = _inputs(batch=4, seed=11)
    memory = decoder.memory(keys, mask)
    batch = decoder.beam_search(decoder.initial_state(final), memory, beam_size=4, max_length=15).as_lists()
    for row in range(4):
        n = int(mask[row].sum())
        alone = decoder.beam_search(
            decoder.initial_state(final[row : row + 1]), decoder.memory(keys[row : row + 1, :n], mask[row : row + 1, :n]),
            beam_size=4, max_length=15,
        ).as_lists()
        assert alone[0] == batch[row]


def test_decoded_sequences_end_with_eos_then_padding() -> None:
    decoder = _decoder()
    keys, mask, final, _ = _inputs(batch=5, seed=2)
    for hypotheses in (
        decoder.greedy(decoder.initial_state(final), decoder.memory(keys, mask), max_length=40),
        decoder.beam_search(decoder.initial_state(final), decoder.memory(keys, mask), beam_size=3, max_length=40),
    ):
        for row, n in zip(hypotheses.tokens.tolist(), hypotheses.lengths.tolist()):
            assert EOS_ID not in row[:n] and PAD_ID not in row[:n] and BOS_ID not in row[:n], row
            if n < len(row):
                assert row[n] == EOS_ID and all(t == PAD_ID for t in row[n + 1 :])


def test_max_length_caps_decoding() -> None:
    decoder = _decoder()
    keys, mask, final, _ = _inputs()
    # a decoder that never says EOS: push its EOS logit far down
    with torch.no_grad():
        decoder.output.bias[EOS_ID] = -1e4
    greedy = decoder.greedy(decoder.initial_state(final), decoder.memory(keys, mask), max_length=7)
    beam = decoder.beam_search(decoder.initial_state(final), decoder.memory(keys, mask), beam_size=3, max_length=7)
    assert greedy.tokens.shape[1] == 7 and beam.tokens.shape[1] == 7
    assert torch.all(greedy.lengths == 7) and torch.all(beam.lengths == 7)


def test_state_select_and_memory_repeat_follow_rows() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)
    state = DecoderState((hidden, hidden + 100), torch.arange(6, dtype=torch.float).view(3, 2))
    picked = state.select(torch.tensor([2, 0]))
    assert torch.equal(picked.hidden[:, 0], hidden[:, 2]) and torch.equal(picked.feed[1], state.feed[0])
    assert torch.equal(picked.rnn[1][:, 1], hidden[:, 0] + 100)
    memory = Memory(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    repeated = memory.repeat(3)
    assert repeated.keys.shape == (6, 3, 4) and torch.equal(repeated.keys[2], memory.keys[0])


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown cell"):
        AttentionDecoder(VOCAB, ENCODER, ENCODER, cell="rnn")  # type: ignore[arg-type]
    decoder = _decoder()
    keys, mask, final, targets = _inputs()
    with pytest.raises(ValueError, match="teacher_forcing_prob"):
        decoder(targets, decoder.initial_state(final), decoder.memory(keys, mask), teacher_forcing_prob=1.5)
    with pytest.raises(ValueError, match="beam_size"):
        decoder.beam_search(decoder.initial_state(final), decoder.memory(keys, mask), beam_size=0, max_length=3)
