"""Attention seq2seq (e.g. grapheme-to-phoneme): bidirectional RNN encoder, attention decoder,
scheduled sampling during training, free-running greedy/beam decoding for evaluation."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity

from seqlit.errors import SettingError, check_checkpoint_matches
from seqlit.metrics.error_rates import PhonemeErrorRate, WordErrorRate
from seqlit.metrics.mean import MeanPerTarget
from seqlit.nn.decoders import DecoderOutput, DecoderState, Hypotheses, Memory, SamplingMode
from seqlit.nn.init import init_embedding_
from seqlit.nn.protocol import check_recurrent_layer
from seqlit.parts import build
from seqlit.schedules import TeacherForcingSchedule
from seqlit.tasks.base import SeqlitTask
from seqlit.tasks.optim import adamw, warmup_cosine
from seqlit.types import IGNORE_INDEX, PAD_ID, SPECIAL_TOKENS, UNK_ID, Seq2SeqBatch

Decoding = Literal["greedy", "beam"]
TokenUnit = Literal["char", "token"]  # how a text splits into symbols: characters, or whitespace-separated tokens
EncoderFactory = Callable[[int], nn.Module]  # input_size -> recurrent layer
# (vocab_size, encoder_size, encoder_state_size) -> an attention decoder (seqlit.nn.AttentionDecoder's interface)
DecoderFactory = Callable[[int, int, int], nn.Module]


def _error_rates(prefix: str, stress_marked: bool) -> MetricCollection:
    """Sequence and token error rates against every reference. With stress-marked targets (CMUdict phonemes)
    the headline `wer`/`per` strip the stress digits (the published convention) and `*_stress` keep them.

    `compute_groups=False`: torchmetrics would otherwise merge metrics whose states are equal after
    the first batch (e.g. WER with and without stress while every word is still wrong) and report
    one of them twice for the rest of the epoch.
    """
    metrics: dict[str, Any] = {"wer": WordErrorRate(stress=not stress_marked), "per": PhonemeErrorRate(stress=not stress_marked)}
    if stress_marked:
        metrics |= {"wer_stress": WordErrorRate(stress=True), "per_stress": PhonemeErrorRate(stress=True)}
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


class Seq2SeqModel(SeqlitTask):
    """Attention encoder-decoder over any source and target symbol sequences, trained on token-level
    cross-entropy over real target tokens (grapheme-to-phoneme is one recipe of it).

    `source_tokens` / `target_tokens` (the vocabularies, specials first), `source_unit` / `target_unit`
    (characters or whitespace tokens) and `stress_marked` come from the data module through CLI linking
    and are saved in the checkpoint, so `predict` turns ids back into text and a checkpoint with another
    vocabulary is refused. Parts by `class_path`: `encoder(embedding_size)` (a recurrent layer),
    `decoder(vocab_size, encoder_size, encoder_state_size)` (`seqlit.nn.AttentionDecoder`: its cell,
    attention and input feeding are its own options), `teacher_forcing` (a `TeacherForcingSchedule`:
    `constant` = always; `linear`, `exponential`, `inverse_sigmoid` = scheduled sampling by global step,
    Bengio et al. 2015, logged as `train/teacher_forcing_prob`).

    Validation decodes free-running (greedy), so exposure bias shows in `val/wer`; test decodes greedy
    and with beam search (`test/wer` is beam, `test/greedy_*` greedy). `wer` is the share of sequences
    matching none of their references, `per` the token edit distance over reference length.
    """

    monitor: ClassVar[tuple[str, str]] = ("val/wer", "min")
    figure_family: ClassVar[str | None] = "seq2seq"
    patience: ClassVar[int] = 8
    size_parameters: ClassVar[tuple[str, ...]] = ("encoder.hidden_size", "decoder.hidden_size")
    cell_parameters: ClassVar[tuple[str, ...]] = ("encoder.cell", "decoder.cell")
    bidirectional_parameters: ClassVar[tuple[str, ...]] = ("encoder.bidirectional",)

    def __init__(
        self,
        source_tokens: list[str],
        target_tokens: list[str],
        source_unit: TokenUnit = "char",
        target_unit: TokenUnit = "token",
        stress_marked: bool = False,
        embedding_size: int = 128,
        embedding_dropout: float = 0.3,
        encoder: EncoderFactory = {  # noqa: B006 - a plain-data spec, never mutated
            "class_path": "seqlit.nn.RNNEncoder",
            "init_args": {"hidden_size": 256, "num_layers": 2, "cell": "lstm", "bidirectional": True, "dropout": 0.3},
        },
        decoder: DecoderFactory = {  # noqa: B006
            "class_path": "seqlit.nn.AttentionDecoder",
            "init_args": {"hidden_size": 512, "cell": "lstm", "attention": "general", "input_feeding": False,
                          "dropout": 0.3},
        },
        teacher_forcing: TeacherForcingSchedule = {  # noqa: B006
            "class_path": "seqlit.schedules.TeacherForcingSchedule", "init_args": {"kind": "constant"},
        },
        sampling: SamplingMode = "argmax",
        label_smoothing: float = 0.1,
        optimizer: OptimizerCallable = adamw(2e-3),
        lr_scheduler: LRSchedulerCallable | None = warmup_cosine(0.03, 0.01),
        beam_size: int = 5,
        length_penalty: float = 1.0,
        max_decode_length: int = 50,
        val_decoding: Decoding = "greedy",
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        for name, tokens in (("source_tokens", source_tokens), ("target_tokens", target_tokens)):
            if list(tokens[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
                raise ValueError(f"{name} must start with the special tokens {SPECIAL_TOKENS}, got {list(tokens[:4])}")
        if val_decoding not in ("greedy", "beam"):
            raise SettingError(f"val_decoding must be 'greedy' or 'beam', got {val_decoding!r}")
        if beam_size < 1:
            raise SettingError(f"beam_size must be >= 1, got {beam_size}.")
        self.save_plain_hyperparameters()
        self.teacher_forcing = (
            teacher_forcing if isinstance(teacher_forcing, TeacherForcingSchedule)
            else build(teacher_forcing, what="teacher_forcing")
        )
        self.source_embedding = nn.Embedding(len(source_tokens), embedding_size, padding_idx=PAD_ID)
        init_embedding_(self.source_embedding)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.encoder = check_recurrent_layer(build(encoder, embedding_size, what="encoder"), "Seq2SeqModel.encoder")
        self.decoder = build(
            decoder, len(target_tokens), self.encoder.output_size, self.encoder.output_size, what="decoder"
        )
        self.source_index = {token: i for i, token in enumerate(source_tokens)}
        self.val_metrics = _error_rates("val/", stress_marked)
        self.val_perplexity = Perplexity(ignore_index=IGNORE_INDEX)
        self.test_metrics = _error_rates("test/", stress_marked)
        self.test_greedy_metrics = _error_rates("test/greedy_", stress_marked)
        self.test_perplexity = Perplexity(ignore_index=IGNORE_INDEX)
        # Summed states, so the DDP loss covers every rank's words exactly (see seqlit.metrics.mean).
        self.eval_losses = nn.ModuleDict({"val": MeanPerTarget(), "test": MeanPerTarget()})  # per target token

    # ---- model -------------------------------------------------------------------------------------
    def encode(self, sources: Tensor, source_lengths: Tensor, source_mask: Tensor) -> tuple[Memory, DecoderState]:
        """sources (B, S) -> attention memory and the decoder's initial state."""
        embedded = self.embedding_dropout(self.source_embedding(sources))  # (B, S, E)
        outputs, state = self.encoder(embedded, source_lengths)  # (B, S, D*H)
        directions = 2 if self.encoder.bidirectional else 1
        final = state[0][-directions:]  # (D, B, H): hidden state of the top layer, every direction
        final = final.transpose(0, 1).reshape(sources.shape[0], -1)  # (B, D*H)
        memory = self.decoder.memory(outputs, source_mask)
        return memory, self.decoder.initial_state(final)

    def forward(self, batch: Seq2SeqBatch, teacher_forcing_prob: float = 1.0) -> DecoderOutput:
        """Logits (B, T, V) for every target position, feeding the ground truth with the given probability."""
        memory, state = self.encode(batch.sources, batch.source_lengths, batch.source_mask)
        return self.decoder(
            batch.target_inputs, state, memory, teacher_forcing_prob=teacher_forcing_prob,
            sampling=self.hparams.sampling,
        )

    def decode(self, batch: Seq2SeqBatch, decoding: Decoding, beam_size: int | None = None) -> Hypotheses:
        """Free-running decoding (no target input at all), greedy or beam search."""
        memory, state = self.encode(batch.sources, batch.source_lengths, batch.source_mask)
        return self._search(memory, state, int(batch.source_lengths.max()), decoding, beam_size)

    def _search(
        self, memory: Memory, state: DecoderState, longest_source: int, decoding: Decoding, beam_size: int | None = None
    ) -> Hypotheses:
        """Greedy or beam search from an encoded batch, at most 2 * longest source + 10 symbols long."""
        max_length = min(self.hparams.max_decode_length, 2 * longest_source + 10)
        if decoding == "greedy":
            return self.decoder.greedy(state, memory, max_length)
        return self.decoder.beam_search(
            state, memory, beam_size or self.hparams.beam_size, max_length, self.hparams.length_penalty
        )

    # ---- training ----------------------------------------------------------------------------------
    def training_step(self, batch: Seq2SeqBatch, batch_idx: int) -> Tensor:
        probability = self.teacher_forcing(self.global_step)
        output = self(batch, teacher_forcing_prob=probability)
        summed = self._token_loss(output.logits, batch.target_outputs, self.hparams.label_smoothing)
        n_targets = batch.n_target_tokens
        self.step_normalizer.add(n_targets)
        self.log("train/loss", summed.detach() / max(1, n_targets), batch_size=n_targets, on_step=True, on_epoch=True)
        if self.is_logging_step():
            self.log("train/teacher_forcing_prob", probability, on_step=True, on_epoch=False)
        return summed  # divided by the real target tokens of the whole step after backward

    def on_train_epoch_end(self) -> None:
        # the probability in force at the epoch's end, so short runs (fewer steps than the logging interval) show it too
        self.log("train/teacher_forcing_prob", self.teacher_forcing(max(0, self.global_step - 1)), on_epoch=True)

    # ---- evaluation --------------------------------------------------------------------------------
    def validation_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        memory, state = self._evaluate_loss("val", batch, self.val_perplexity)
        hypotheses = self._search(memory, state, int(batch.source_lengths.max()), self.hparams.val_decoding)
        self.val_metrics.update(*self._texts(hypotheses, batch))
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=False, batch_size=batch.batch_size)

    def test_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        memory, state = self._evaluate_loss("test", batch, self.test_perplexity)
        for decoding, metrics in (("greedy", self.test_greedy_metrics), ("beam", self.test_metrics)):
            hypotheses = self._search(memory, state, int(batch.source_lengths.max()), decoding)
            metrics.update(*self._texts(hypotheses, batch))
            self.log_dict(metrics, on_epoch=True, batch_size=batch.batch_size)

    def predict_step(self, batch: Seq2SeqBatch, batch_idx: int) -> dict[str, Any]:
        hypotheses = self.decode(batch, "beam")
        return {"index": batch.indices, "prediction": [self.target_text(ids) for ids in hypotheses.as_lists()]}

    def _evaluate_loss(self, stage: str, batch: Seq2SeqBatch, perplexity: Perplexity) -> tuple[Memory, DecoderState]:
        """Encodes once, logs the teacher-forced loss and perplexity, and returns the encoding for decoding."""
        memory, state = self.encode(batch.sources, batch.source_lengths, batch.source_mask)
        logits = self.decoder(batch.target_inputs, state, memory).logits  # (B, T, V), teacher-forced
        self.eval_losses[stage].update(self._token_loss(logits, batch.target_outputs, 0.0), batch.n_target_tokens)
        self.log(f"{stage}/loss", self.eval_losses[stage], on_epoch=True, prog_bar=stage == "val")
        perplexity.update(logits.float(), batch.target_outputs)
        self.log(f"{stage}/ppl", perplexity, on_epoch=True, batch_size=batch.n_target_tokens)
        return memory, state

    @staticmethod
    def _token_loss(logits: Tensor, targets: Tensor, label_smoothing: float) -> Tensor:
        """Cross-entropy summed over real target tokens: logits (B, T, V), targets (B, T) with IGNORE_INDEX."""
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            label_smoothing=label_smoothing,
        )

    def _texts(self, hypotheses: Hypotheses, batch: Seq2SeqBatch) -> tuple[list[list[str]], list[list[list[str]]]]:
        predictions = [self.target_symbols(ids) for ids in hypotheses.as_lists()]
        references = [[self.target_symbols(ids) for ids in alternatives] for alternatives in batch.references]
        return predictions, references

    # ---- symbols -----------------------------------------------------------------------------------
    def target_symbols(self, ids: list[int] | tuple[int, ...]) -> list[str]:
        tokens: list[str] = self.hparams.target_tokens
        return [tokens[i] for i in ids]

    def target_text(self, ids: list[int] | tuple[int, ...]) -> str:
        """Target ids as text: symbols joined by spaces (tokens) or directly (characters)."""
        separator = "" if self.hparams.target_unit == "char" else " "
        return separator.join(self.target_symbols(ids))

    def source_symbols(self, text: str) -> list[str]:
        """A source text split as the training data was: characters, or whitespace-separated tokens."""
        return list(text) if self.hparams.source_unit == "char" else text.split()

    def encode_words(self, words: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Source texts -> (sources (B, S), lengths (B,), mask (B, S)); unknown symbols become UNK."""
        symbols = [self.source_symbols(word) for word in words]
        if not words or any(len(row) == 0 for row in symbols):
            raise ValueError("encode_words needs non-empty source texts")
        ids = [[self.source_index.get(symbol, UNK_ID) for symbol in row] for row in symbols]
        lengths = torch.tensor([len(row) for row in ids])
        sources = torch.full((len(ids), int(lengths.max())), PAD_ID, dtype=torch.long)
        for row, tokens in enumerate(ids):
            sources[row, : len(tokens)] = torch.tensor(tokens)
        mask = sources != PAD_ID
        return sources.to(self.device), lengths, mask.to(self.device)

    def transcribe(self, words: list[str], decoding: Decoding = "beam") -> list[list[str]]:
        """Pronunciations (symbol lists) of `words`, written as the training data was (e.g. lowercase)."""
        return [self.target_symbols(ids) for ids in self._decode_words(words, decoding).as_lists()]

    def attention_map(self, word: str) -> tuple[list[str], Tensor]:
        """Greedy pronunciation of `word` and its attention weights (T_out, S) for inspection."""
        hypotheses = self._decode_words([word], "greedy")
        n = int(hypotheses.lengths[0])
        assert hypotheses.attention is not None
        return self.target_symbols(hypotheses.tokens[0, :n].tolist()), hypotheses.attention[0, :n].cpu()

    @torch.no_grad()
    def _decode_words(self, words: list[str], decoding: Decoding) -> Hypotheses:
        """Decodes raw words in eval mode (no dropout), restoring the previous mode afterwards."""
        was_training = self.training
        self.eval()
        try:
            sources, lengths, mask = self.encode_words(words)
            memory, state = self.encode(sources, lengths, mask)
            return self._search(memory, state, int(lengths.max()), decoding)
        finally:
            self.train(was_training)

    # ---- optimisation and checkpoints --------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint trained with other vocabularies: its ids would mean other symbols."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("source_tokens", "target_tokens"):
            check_checkpoint_matches(
                f"the {key.split('_')[0]} vocabulary", saved.get(key), self.hparams[key],
                fix="use the training run's data and data settings, or train a new model.",
            )
