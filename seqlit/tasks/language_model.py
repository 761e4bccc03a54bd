"""Recurrent language modelling with truncated BPTT (removed from Lightning 2.x, done here by the task).

Each training batch is one chunk of k steps of B contiguous streams (`seqlit.data.streams`). The task
carries the hidden state from one chunk to the next, detached, so gradients stop at every chunk
boundary while the state keeps its memory of the text before it. The state is reset at the start of
every epoch (train) and every evaluation pass (val/test), where the streams start again.

Because one chunk is one ordinary training step, Lightning's gradient clipping, gradient
accumulation (micro-batches are consecutive chunks), mixed precision and callbacks work unchanged.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MetricCollection

from seqlit.data.tokenizers import TextTokenizer, tokenizer_from_state_dict
from seqlit.distributed import gather_from_every_rank
from seqlit.errors import CheckpointMismatchError, SettingError, check_checkpoint_matches
from seqlit.metrics.language import BitsPerCharacter, Perplexity, TokenNLL
from seqlit.nn.init import EmbeddingCoverage, load_pretrained_embeddings_
from seqlit.nn.language_model import LMState, detach_state, state_batch_size
from seqlit.parts import build
from seqlit.tasks.base import SeqlitTask
from seqlit.tasks.optim import adamw, warmup_cosine
from seqlit.types import EOS_ID, SPECIAL_TOKENS, LMBatch

_CARRIED_STATE_KEY = "seqlit_lm_carried_state"  # one process's state (checkpoints from before per-rank states)
_CARRIED_STATES_KEY = "seqlit_lm_carried_states"  # per rank, by global rank
# vocab_size -> a network with forward(ids (B, T), state) -> (logits (B, T, V), state), initial_state(batch)
# and an `embedding` (seqlit.nn.RecurrentLanguageModel's interface)
NetworkFactory = Callable[[int], nn.Module]


def _lm_metrics(prefix: str) -> MetricCollection:
    # compute_groups=False: the three metrics have identical states, and torchmetrics would merge them.
    return MetricCollection(
        {"loss": TokenNLL(), "ppl": Perplexity(), "bpc": BitsPerCharacter()}, prefix=prefix, compute_groups=False
    )


class LanguageModel(SeqlitTask):
    """Recurrent language model trained with truncated BPTT (AWD-LSTM-style network by default).

    `tokenizer` (the fitted tokenizer's plain-data state) comes from the data module through CLI linking
    and is saved in the checkpoint, so `seqlit predict` decodes samples with exactly the training
    tokenizer and a checkpoint fitted with another vocabulary is refused. `network` is built as
    `network(vocab_size)`; `seqlit.nn.RecurrentLanguageModel` holds the cell, sizes and the AWD-LSTM
    regularisers (embedding, locked and weight dropout, weight tying, layer norm).
    Logged every epoch: `{train,val,test}/loss`, `/ppl` and `/bpc` (bits per character).
    `carry_state=False` resets the state at every chunk (the ablation that shows what carrying buys).
    """

    monitor: ClassVar[tuple[str, str]] = ("val/bpc", "min")
    figure_family: ClassVar[str | None] = "language_model"
    patience: ClassVar[int] = 6
    size_parameters: ClassVar[tuple[str, ...]] = ("network.hidden_size",)
    cell_parameters: ClassVar[tuple[str, ...]] = ("network.cell",)

    def __init__(
        self,
        tokenizer: dict[str, str | list[str]],
        network: NetworkFactory = {  # noqa: B006 - a plain-data spec, never mutated
            "class_path": "seqlit.nn.RecurrentLanguageModel",
            "init_args": {"embedding_size": 400, "hidden_size": 1150, "num_layers": 3, "cell": "lstm"},
        },
        pretrained_embeddings: str | None = None,
        carry_state: bool = True,
        optimizer: OptimizerCallable = adamw(1e-2),
        lr_scheduler: LRSchedulerCallable | None = warmup_cosine(0.02, 0.01),
        sample_length: int = 400,
        temperature: float = 0.8,
        top_k: int | None = None,
        sample_seed: int | None = 0,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        if temperature < 0:
            raise SettingError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        if top_k is not None and top_k < 1:
            raise SettingError(f"top_k must be a positive int or null, got {top_k}.")
        if sample_length < 0:
            raise SettingError(f"sample_length must be >= 0, got {sample_length}.")
        self.save_plain_hyperparameters()
        self.text_tokenizer: TextTokenizer = tokenizer_from_state_dict(tokenizer)
        self.net = build(network, len(self.text_tokenizer), what="network")
        self.train_metrics = _lm_metrics("train/")
        self.val_metrics = _lm_metrics("val/")
        self.test_metrics = _lm_metrics("test/")
        self.embedding_coverage: EmbeddingCoverage | None = None
        self._train_state: LMState | None = None
        self._eval_state: LMState | None = None

    def forward(self, ids: Tensor, state: LMState | None = None) -> tuple[Tensor, LMState]:
        """ids (B, T) -> logits (B, T, V) and the state after the last step."""
        return self.net(ids, state)

    # ---- training: one chunk per step, state carried and detached --------------------------------------
    def on_train_epoch_start(self) -> None:
        self._train_state = None  # the streams start again from their first token

    def training_step(self, batch: LMBatch, batch_idx: int) -> Tensor:
        state = self._carried(self._train_state, batch)
        logits, new_state = self(batch.inputs, state)  # (B, T, V)
        # Detached here, so the next chunk's backward ends at this boundary.
        self._train_state = detach_state(new_state) if self.hparams.carry_state else None
        summed = _summed_nll(logits, batch.targets)
        # Weighted by the configured chunk length (not this chunk's), so with variable-length chunks every
        # token counts the same; AWD-LSTM gets this by scaling the learning rate with the chunk length.
        self.step_normalizer.add(batch.batch_size * (batch.nominal_length or batch.inputs.shape[1]))
        self.train_metrics.update(summed, batch.n_tokens, batch.chars_per_token)
        self.log("train/loss_step", summed.detach() / batch.n_tokens, on_step=True, on_epoch=False)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return summed

    # ---- evaluation: the whole split once, state carried through it ------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_state = None

    def on_test_epoch_start(self) -> None:
        self._eval_state = None

    def validation_step(self, batch: LMBatch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: LMBatch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _evaluate(self, batch: LMBatch, metrics: MetricCollection) -> None:
        logits, state = self(batch.inputs, self._carried(self._eval_state, batch))  # (B, T, V)
        self._eval_state = detach_state(state) if self.hparams.carry_state else None
        metrics.update(_summed_nll(logits, batch.targets), batch.n_tokens, batch.chars_per_token)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)

    # ---- sampling ---------------------------------------------------------------------------------------
    def predict_step(self, batch: LMBatch, batch_idx: int) -> dict[str, Any]:
        """Continues each prompt with `sample_length` sampled tokens; returns prompt + continuation as text."""
        assert batch.indices is not None, "prompt batches carry their indices"
        generator = None
        if self.hparams.sample_seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(self.hparams.sample_seed + int(batch.indices[0]))
        continuation = self.sample(batch.inputs, self.hparams.sample_length, self.hparams.temperature, generator)
        texts = [
            self.text_tokenizer.decode(prompt[1:].tolist() + sampled.tolist())
            for prompt, sampled in zip(batch.inputs, continuation)
        ]
        return {"index": batch.indices, "prediction": texts}

    @torch.no_grad()
    def sample(
        self, prompt: Tensor, length: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """prompt (B, P) -> (B, length) sampled ids; temperature 0 is greedy, `top_k` keeps the k likeliest.

        PAD and the other specials except EOS (a document break) are never sampled. Runs in eval mode (no
        dropout masks) and restores the previous mode.
        """
        was_training = self.training
        self.eval()
        try:
            return self._sample(prompt, length, temperature, generator)
        finally:
            self.train(was_training)

    def _sample(self, prompt: Tensor, length: int, temperature: float, generator: torch.Generator | None) -> Tensor:
        logits, state = self(prompt)  # (B, P, V)
        next_logits = logits[:, -1]  # (B, V)
        banned = [i for i in range(len(SPECIAL_TOKENS)) if i != EOS_ID]
        sampled: list[Tensor] = []
        for _ in range(length):
            next_logits = next_logits.float()
            next_logits[:, banned] = float("-inf")
            next_token = _draw(next_logits, temperature, self.hparams.top_k, generator)  # (B,)
            sampled.append(next_token)
            logits, state = self(next_token[:, None], state)  # (B, 1, V)
            next_logits = logits[:, -1]
        if not sampled:
            return prompt.new_empty((prompt.shape[0], 0))
        return torch.stack(sampled, dim=1)  # (B, length)

    # ---- optimisation, checkpoints ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Loads pretrained vectors into the embedding for a fresh fit (a resumed one has trained rows)."""
        path = self.hparams.pretrained_embeddings
        if stage != "fit" or path is None or self.trainer.ckpt_path is not None:
            return
        self.embedding_coverage = load_pretrained_embeddings_(
            self.net.embedding, path, self.text_tokenizer.tokens, skip=SPECIAL_TOKENS
        )
        print(f"seqlit: {path}: {self.embedding_coverage}", file=sys.stderr)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores the carried state of every rank: a checkpoint written mid-epoch resumes at the next chunk,
        which must continue from this state, and under DDP each rank reads other streams (only rank 0 writes
        the file; Lightning builds its contents on every rank, so the gather is safe)."""
        state = None
        if self._train_state is not None:
            state = [[part.cpu() for part in layer] for layer in self._train_state]
        per_rank = gather_from_every_rank(state)
        if any(rank_state is not None for rank_state in per_rank):
            checkpoint[_CARRIED_STATES_KEY] = per_rank

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint trained with another tokenizer (its ids would mean other tokens); restores this
        rank's carried training state."""
        saved = checkpoint.get("hyper_parameters", {}).get("tokenizer")
        if saved is not None:
            saved_tokenizer, mine = tokenizer_from_state_dict(saved), self.text_tokenizer
            check_checkpoint_matches(
                "the tokenizer", f"{saved_tokenizer.kind}, {len(saved_tokenizer)} tokens",
                f"{mine.kind}, {len(mine)} tokens", fix="use the training run's corpus, split and tokenizer "
                "settings, or train a new model.",
            )
            check_checkpoint_matches(
                "the vocabulary", saved_tokenizer.tokens[len(SPECIAL_TOKENS):],
                mine.tokens[len(SPECIAL_TOKENS):], fix="use the training run's corpus, split and tokenizer "
                "settings, or train a new model.",
            )
        # `load_from_checkpoint(..., tokenizer=...)` overwrites the stored hparams, so check the weights too.
        embedding = checkpoint.get("state_dict", {}).get("net.embedding.weight")
        if embedding is not None and embedding.shape[0] != len(self.text_tokenizer):
            raise CheckpointMismatchError(
                f"the checkpoint's embedding has {embedding.shape[0]} rows but this model's tokenizer has "
                f"{len(self.text_tokenizer)} tokens; load it with the tokenizer it was trained with."
            )
        per_rank = checkpoint.get(_CARRIED_STATES_KEY)
        if per_rank is None and checkpoint.get(_CARRIED_STATE_KEY) is not None:
            per_rank = [checkpoint[_CARRIED_STATE_KEY]]
        if per_rank is not None:
            self._train_state = self._this_rank_state(per_rank)

    def _this_rank_state(self, per_rank: list[Any]) -> LMState | None:
        """This rank's carried state from a checkpoint's per-rank list, or None when the process count changed:
        the streams are laid out over all ranks' rows (`batchify`), so another layout makes the states stale."""
        world_size = self.trainer.world_size if self._trainer is not None else 1
        if len(per_rank) != world_size:
            if self._trainer is not None and self.trainer.state.fn == "fit":  # evaluation never uses the state
                rank_zero_warn(
                    f"the checkpoint was written by {len(per_rank)} process(es) and this run has {world_size}, so "
                    "its streams are laid out differently; the carried hidden state starts from zero."
                )
            return None
        carried = per_rank[self.global_rank]
        if carried is None:
            return None
        # A layer's state is stored as a list of parts; a bare tensor is a one-part (GRU) state.
        return [tuple(layer) if isinstance(layer, (list, tuple)) else (layer,) for layer in carried]

    def _carried(self, state: LMState | None, batch: LMBatch) -> LMState | None:
        """The carried state, moved to this device, or None when there is none or the stream count changed."""
        if state is None or state_batch_size(state) != batch.batch_size:
            return None
        return [tuple(part.to(self.device) for part in layer) for layer in state]


def _summed_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """logits (B, T, V), targets (B, T) -> summed cross-entropy in nats (float32 even under autocast)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum")


def _draw(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """logits (B, V) -> (B,) ids: argmax at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits / temperature  # (B, V)
    if top_k is not None and top_k < scaled.shape[-1]:
        threshold = scaled.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    probabilities = torch.softmax(scaled, dim=-1)  # (B, V)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


__all__ = ["LanguageModel"]
