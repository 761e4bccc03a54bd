"""Attention decoder (Luong style) for RNN seq2seq: teacher forcing, scheduled sampling, greedy and beam search.

Shapes: B batch, S source length, T target length, E embedding size, H decoder hidden size,
H_e encoder output size (D*H of the encoder), V target vocabulary, K beam size, L layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Union

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError
from seqlit.nn.attention import ATTENTION_KINDS, Attention, AttentionKind
from seqlit.nn.cell_layer import CellSpec
from seqlit.nn.device import to_device_async
from seqlit.nn.dropout import check_probability
from seqlit.nn.encoders import RNNEncoder
from seqlit.nn.init import init_embedding_, init_linear_
from seqlit.nn.protocol import State
from seqlit.parts import build
from seqlit.types import BOS_ID, EOS_ID, PAD_ID
from seqlit.validation import require_int_at_least

# (query_size, key_size) -> a module with project_keys(keys) and forward(query, keys, mask, projected_keys=)
AttentionFactory = Callable[[int, int], nn.Module]

SamplingMode = Literal["argmax", "sample"]


def teacher_forcing_coins(
    shape: torch.Size | tuple[int, int],
    teacher_forcing_prob: float,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, T) bool, True where step t is fed the ground truth: one coin per item and step (Bengio et al.
    2015 flip per token, not per sequence). Step 0 is always forced; coins are drawn on the CPU so a seeded
    generator gives the same draws on every device."""
    if not 0.0 <= teacher_forcing_prob <= 1.0:
        raise SettingError(f"teacher_forcing_prob must be in [0, 1], got {teacher_forcing_prob}")
    if teacher_forcing_prob >= 1.0 or shape[1] <= 1:
        return torch.ones(shape, dtype=torch.bool, device=device)
    forced = (torch.rand(shape, generator=generator, device="cpu") < teacher_forcing_prob).to(device)  # (B, T)
    forced[:, 0] = True
    return forced


@dataclass
class Memory:
    """What the decoder attends to: encoder outputs, their query-independent projection, the source mask."""

    keys: Tensor  # (B, S, H_e), zero on padding
    projected_keys: Tensor  # (B, S, H) general, (B, S, A) additive, keys for dot
    mask: Tensor  # (B, S) bool, True on real source steps

    def repeat(self, times: int) -> Memory:
        """Each row repeated `times` times in a row (for K beams per source)."""
        return Memory(
            keys=self.keys.repeat_interleave(times, dim=0),
            projected_keys=self.projected_keys.repeat_interleave(times, dim=0),
            mask=self.mask.repeat_interleave(times, dim=0),
        )


@dataclass
class DecoderState:
    """Recurrent state between steps; `feed` is the previous attentional vector (input feeding)."""

    rnn: State  # parts (L, B, S_k): (h,) for a GRU, (h, c) for an LSTM
    feed: Tensor  # (B, H), zeros before the first step

    @property
    def hidden(self) -> Tensor:
        return self.rnn[0]  # (L, B, H)

    def select(self, rows: Tensor) -> DecoderState:
        """Rows `rows` (N,) of the batch, e.g. to follow beams or repeat per beam."""
        return DecoderState(
            rnn=tuple(part.index_select(1, rows) for part in self.rnn), feed=self.feed.index_select(0, rows)
        )


@dataclass
class DecoderOutput:
    logits: Tensor  # (B, T, V)
    attention: Tensor  # (B, T, S)
    teacher_forced: Tensor | None = None  # (B, T) bool, which inputs were the ground truth (None: all)


@dataclass
class Hypotheses:
    """Decoded sequences: ids up to and including EOS, then PAD; `lengths` count tokens up to EOS."""

    tokens: Tensor  # (B, T_out) long
    lengths: Tensor  # (B,) long, tokens before EOS (EOS itself excluded)
    scores: Tensor  # (B,) summed log-probability (beam: after length normalisation)
    attention: Tensor | None  # (B, T_out, S) attention of the chosen hypothesis, greedy only

    def as_lists(self) -> list[list[int]]:
        """Token ids of every sequence without EOS/PAD."""
        return [row[:n] for row, n in zip(self.tokens.tolist(), self.lengths.tolist())]


class AttentionDecoder(nn.Module):
    """Recurrent decoder (any cell) with attention over the encoder outputs (Luong et al. 2015).

    Each step: h_t = RNN([emb(y_{t-1}); h~_{t-1}], h_{t-1}) (input feeding optional), context c_t from
    attention with query h_t, attentional vector h~_t = tanh(W [h_t; c_t]), logits = W_o h~_t.
    Without input feeding and with full teacher forcing, the whole target runs through the fused
    RNN kernel in one call and attention is batched over all steps (the fast path); otherwise the
    decoder steps one token at a time. The initial state comes from the encoder's final state
    through learned bridges, one per state part: tanh(W s) for the hidden state, W s for the others (an
    LSTM's cell state). `attention` is a kind (`dot`, `general`, `additive`) or a factory
    `(query_size, key_size) -> module` with `seqlit.nn.attention.Attention`'s interface.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_size: int,
        encoder_state_size: int,
        embedding_size: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        cell: CellSpec = "lstm",
        layer_norm: bool = False,
        attention: Union[AttentionKind, AttentionFactory] = "general",
        input_feeding: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if vocab_size <= EOS_ID:
            raise SettingError(f"vocab_size must include the special tokens (> {EOS_ID}), got {vocab_size}")
        for name, value in (("embedding_size", embedding_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            require_int_at_least(f"AttentionDecoder {name}", value, 1)
        check_probability("AttentionDecoder dropout", dropout)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.input_feeding = input_feeding
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        init_embedding_(self.embedding)
        rnn_input = embedding_size + (hidden_size if input_feeding else 0)
        self.rnn = RNNEncoder(rnn_input, hidden_size, num_layers=num_layers, cell=cell, layer_norm=layer_norm,
                              dropout=dropout)
        self.bridges = nn.ModuleList(nn.Linear(encoder_state_size, num_layers * size) for size in self.rnn.state_sizes)
        if isinstance(attention, str):
            if attention not in ATTENTION_KINDS:
                raise SettingError(f"unknown attention {attention!r}; choose one of {list(ATTENTION_KINDS)} or a class.")
            self.attention: nn.Module = Attention(hidden_size, encoder_size, kind=attention)
        else:
            self.attention = build(attention, hidden_size, encoder_size, what="attention")
        self.combine = nn.Linear(hidden_size + encoder_size, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, vocab_size)
        for layer in (*self.bridges, self.combine, self.output):
            init_linear_(layer)

    # ---- setup -------------------------------------------------------------------------------------
    def memory(self, encoder_outputs: Tensor, source_mask: Tensor) -> Memory:
        """encoder_outputs (B, S, H_e), source_mask (B, S) -> Memory with keys projected once."""
        return Memory(encoder_outputs, self.attention.project_keys(encoder_outputs), source_mask)

    def initial_state(self, encoder_state: Tensor) -> DecoderState:
        """encoder_state (B, H_s): the encoder's final state (e.g. both directions of its top layer)."""
        batch = encoder_state.shape[0]
        parts = []
        for index, (bridge, size) in enumerate(zip(self.bridges, self.rnn.state_sizes)):
            part = bridge(encoder_state)  # (B, L*S)
            part = torch.tanh(part) if index == 0 else part
            parts.append(part.view(batch, self.num_layers, size).transpose(0, 1).contiguous())  # (L, B, S)
        feed = encoder_state.new_zeros(batch, self.hidden_size)  # (B, H)
        return DecoderState(tuple(parts), feed)

    # ---- one step ----------------------------------------------------------------------------------
    def step(self, tokens: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState, Tensor]:
        """tokens (B,) previous outputs -> logits (B, V), new state, attention weights (B, S)."""
        embedded = self.dropout(self.embedding(tokens))  # (B, E)
        if self.input_feeding:
            embedded = torch.cat([embedded, state.feed], dim=-1)  # (B, E+H)
        output, rnn_state = self.rnn(embedded.unsqueeze(1), None, state.rnn)  # (B, 1, H)
        query = output.squeeze(1)  # (B, H)
        context, weights = self.attention(query, memory.keys, memory.mask, projected_keys=memory.projected_keys)
        attentional = torch.tanh(self.combine(torch.cat([query, context], dim=-1)))  # (B, H)
        logits = self.output(self.dropout(attentional))  # (B, V)
        return logits, DecoderState(rnn_state, attentional), weights

    # ---- training ----------------------------------------------------------------------------------
    def forward(
        self,
        target_inputs: Tensor,
        state: DecoderState,
        memory: Memory,
        teacher_forcing_prob: float = 1.0,
        sampling: SamplingMode = "argmax",
        generator: torch.Generator | None = None,
    ) -> DecoderOutput:
        """target_inputs (B, T) starting with BOS -> logits (B, T, V) for the next token at every step.

        Scheduled sampling (Bengio et al. 2015): for t >= 1 every input token is, independently with
        probability 1 - `teacher_forcing_prob`, replaced by the model's own prediction at t-1
        (`argmax`, or drawn from its softmax with `sample`). The first input is always BOS.
        """
        if not 0.0 <= teacher_forcing_prob <= 1.0:
            raise SettingError(f"teacher_forcing_prob must be in [0, 1], got {teacher_forcing_prob}")
        if teacher_forcing_prob >= 1.0 and not self.input_feeding:
            return self._teacher_forced(target_inputs, state, memory)
        steps = target_inputs.shape[1]
        logits_per_step: list[Tensor] = []
        weights_per_step: list[Tensor] = []
        # The coins are drawn on the CPU; that copy decides on the host whether a step needs the model's own
        # tokens at all, without reading anything back from the device.
        forced_host = teacher_forcing_coins(target_inputs.shape, teacher_forcing_prob, "cpu", generator)  # (B, T)
        forced = to_device_async(forced_host, target_inputs.device)  # (B, T)
        tokens = target_inputs[:, 0]  # (B,)
        for t in range(steps):
            logits, state, weights = self.step(tokens, state, memory)
            logits_per_step.append(logits)
            weights_per_step.append(weights)
            if t + 1 < steps:
                tokens = target_inputs[:, t + 1]
                if not bool(forced_host[:, t + 1].all()):
                    predicted = _predict(logits.detach(), sampling, generator)  # (B,)
                    tokens = torch.where(forced[:, t + 1], tokens, predicted)
        return DecoderOutput(
            logits=torch.stack(logits_per_step, dim=1),  # (B, T, V)
            attention=torch.stack(weights_per_step, dim=1),  # (B, T, S)
            teacher_forced=None if teacher_forcing_prob >= 1.0 else forced,
        )

    def _teacher_forced(self, target_inputs: Tensor, state: DecoderState, memory: Memory) -> DecoderOutput:
        """All steps at once: one fused RNN call, attention over all T queries in one batched product.

        Padding at the end of a target does not change earlier steps (the RNN is causal), so no packing.
        """
        embedded = self.dropout(self.embedding(target_inputs))  # (B, T, E)
        outputs, _ = self.rnn(embedded, None, state.rnn)  # (B, T, H)
        context, weights = self.attention(
            outputs, memory.keys, memory.mask, projected_keys=memory.projected_keys
        )  # (B, T, H_e), (B, T, S)
        attentional = torch.tanh(self.combine(torch.cat([outputs, context], dim=-1)))  # (B, T, H)
        return DecoderOutput(logits=self.output(self.dropout(attentional)), attention=weights)

    # ---- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, state: DecoderState, memory: Memory, max_length: int) -> Hypotheses:
        """Batched greedy decoding: argmax at every step until every sequence has produced EOS.

        PAD and BOS are never emitted; after EOS a row is filled with PAD.
        """
        batch = memory.mask.shape[0]
        device = memory.mask.device
        tokens = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (B,)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
        scores = torch.zeros(batch, device=device)  # (B,)
        outputs: list[Tensor] = []
        weights_per_step: list[Tensor] = []
        for _ in range(max_length):
            logits, state, weights = self.step(tokens, state, memory)
            log_probs = _generation_log_probs(logits)  # (B, V)
            best, tokens = log_probs.max(dim=-1)  # (B,), (B,)
            scores = scores + best.masked_fill(finished, 0.0)
            tokens = tokens.masked_fill(finished, PAD_ID)
            outputs.append(tokens)
            weights_per_step.append(weights)
            finished = finished | (tokens == EOS_ID)
            if bool(finished.all()):
                break
        sequence = torch.stack(outputs, dim=1)  # (B, T_out)
        return Hypotheses(sequence, _lengths_before_eos(sequence), scores, torch.stack(weights_per_step, dim=1))

    @torch.no_grad()
    def beam_search(
        self,
        state: DecoderState,
        memory: Memory,
        beam_size: int,
        max_length: int,
        length_penalty: float = 1.0,
    ) -> Hypotheses:
        """Batched beam search; returns the best hypothesis per source.

        K beams per source run as one batch of B*K rows. A beam that has produced EOS stays in the
        beam with its score frozen (it can only extend with PAD at no cost), so finished and open
        hypotheses compete for the K slots by summed log-probability. The final choice divides each
        score by the GNMT length penalty ((5 + n) / 6) ** `length_penalty` (n counts EOS), so long
        pronunciations are not punished for having more terms; `length_penalty=0` ranks by raw
        score. With beam_size 1 this is exactly greedy decoding.
        """
        if beam_size < 1:
            raise SettingError(f"beam_size must be >= 1, got {beam_size}")
        batch = memory.mask.shape[0]
        device = memory.mask.device
        beams = beam_size
        rows = torch.arange(batch, device=device).repeat_interleave(beams)  # (B*K,)
        state = state.select(rows)
        memory = memory.repeat(beams)
        scores = torch.full((batch, beams), float("-inf"), device=device)  # (B, K)
        scores[:, 0] = 0.0  # all beams start identical; only the first may expand at step 1
        tokens = torch.full((batch * beams,), BOS_ID, dtype=torch.long, device=device)  # (B*K,)
        finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)  # (B, K)
        history = torch.empty(batch, beams, 0, dtype=torch.long, device=device)  # (B, K, t)
        for _ in range(max_length):
            logits, state, _ = self.step(tokens, state, memory)
            log_probs = _generation_log_probs(logits).view(batch, beams, -1)  # (B, K, V)
            vocab = log_probs.shape[-1]
            # A finished beam extends only with PAD, at no cost, and keeps its place.
            frozen = torch.full_like(log_probs[0, 0], float("-inf"))  # (V,)
            frozen[PAD_ID] = 0.0
            log_probs = torch.where(finished.unsqueeze(-1), frozen, log_probs)
            candidates = (scores.unsqueeze(-1) + log_probs).view(batch, beams * vocab)  # (B, K*V)
            scores, flat = candidates.topk(beams, dim=-1)  # (B, K)
            origin = torch.div(flat, vocab, rounding_mode="floor")  # (B, K) beam each candidate extends
            next_tokens = flat % vocab  # (B, K)
            history = torch.cat([history.gather(1, origin.unsqueeze(-1).expand_as(history)), next_tokens.unsqueeze(-1)], -1)
            finished = finished.gather(1, origin) | (next_tokens == EOS_ID)
            state = state.select((origin + torch.arange(batch, device=device).unsqueeze(1) * beams).view(-1))
            tokens = next_tokens.view(-1)
            if bool(finished.all()):
                break
        lengths = _lengths_before_eos(history.view(batch * beams, -1)).view(batch, beams)  # (B, K)
        terms = lengths + finished.long()  # tokens including EOS
        penalty = ((5.0 + terms.float()) / 6.0) ** length_penalty  # (B, K)
        normalised = scores / penalty  # (B, K)
        # A beam still open at max_length ranks after every finished beam of the same source.
        eligible = finished | ~finished.any(dim=1, keepdim=True)  # (B, K)
        best = normalised.masked_fill(~eligible, float("-inf")).argmax(dim=-1)  # (B,)
        best_scores = normalised.gather(1, best.unsqueeze(1)).squeeze(1)  # (B,)
        chosen = history[torch.arange(batch, device=device), best]  # (B, T_out)
        chosen = _pad_after_eos(chosen)
        return Hypotheses(chosen, _lengths_before_eos(chosen), best_scores, None)


def _generation_log_probs(logits: Tensor) -> Tensor:
    """logits (N, V) -> log-probabilities (N, V) with PAD and BOS ruled out: a decoder never emits them."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    log_probs[:, PAD_ID] = float("-inf")
    log_probs[:, BOS_ID] = float("-inf")
    return log_probs


def _predict(logits: Tensor, sampling: SamplingMode, generator: torch.Generator | None) -> Tensor:
    """logits (B, V) -> the model's own next input (B,) as at inference: argmax, or a draw from its softmax."""
    log_probs = _generation_log_probs(logits)  # (B, V)
    if sampling == "argmax":
        return log_probs.argmax(dim=-1)
    if sampling == "sample":
        probabilities = log_probs.exp()  # (B, V)
        if generator is not None and generator.device != probabilities.device:
            return torch.multinomial(probabilities.cpu(), 1, generator=generator).squeeze(1).to(logits.device)
        return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
    raise SettingError(f"unknown sampling {sampling!r}; choose 'argmax' or 'sample'.")


def _lengths_before_eos(tokens: Tensor) -> Tensor:
    """tokens (N, T) -> (N,) number of tokens before the first EOS (T if there is none)."""
    is_eos = tokens == EOS_ID  # (N, T)
    steps = tokens.shape[1]
    first = torch.where(
        is_eos.any(dim=1), is_eos.float().argmax(dim=1), torch.full_like(tokens[:, 0], steps)
    )  # (N,)
    return first


def _pad_after_eos(tokens: Tensor) -> Tensor:
    """Replaces everything after the first EOS with PAD (beam histories keep extending finished rows)."""
    lengths = _lengths_before_eos(tokens)  # (N,)
    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)  # (1, T)
    return tokens.masked_fill(positions > lengths.unsqueeze(1), PAD_ID)


__all__ = [
    "AttentionDecoder",
    "DecoderOutput",
    "DecoderState",
    "Hypotheses",
    "Memory",
]
