"""LanguageModel: truncated BPTT (state carried, detached, reset), learning, sampling, checkpoint safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.language_model import LanguageModelDataModule
from seqlit.data.tokenizers import fit_tokenizer
from seqlit.errors import CheckpointMismatchError
from seqlit.nn.language_model import detach_state
from seqlit.tasks.language_model import LanguageModel
from seqlit.types import EOS_ID, SPECIAL_TOKENS, LMBatch
from tests.builders import language_model, spec

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 10
NO_DROPOUT = dict(embedding_dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0, weight_drop=0.0)


def _model(cell: str = "lstm", **overrides: Any) -> LanguageModel:
    settings: dict[str, Any] = dict(
        tokenizer=fit_tokenizer("char", [TEXT]).state_dict(), cell=cell, embedding_size=8, hidden_size=12,
        num_layers=2, warmup_fraction=0.0, **NO_DROPOUT,
    )
    settings.update(overrides)
    return language_model(**settings)


def _stream(model: LanguageModel, batch_size: int = 3) -> torch.Tensor:
    ids = torch.tensor(model.text_tokenizer.encode(TEXT))
    return ids[: batch_size * (ids.numel() // batch_size)].view(batch_size, -1)  # (B, L)


def _chunk(stream: torch.Tensor, start: int, length: int) -> LMBatch:
    block = stream[:, start : start + length + 1]
    return LMBatch(inputs=block[:, :-1], targets=block[:, 1:], chars_per_token=1.0, nominal_length=length)


def _state_tensors(state: Any) -> list[torch.Tensor]:
    return [t for layer in state for t in (layer if isinstance(layer, tuple) else (layer,))]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_equals_one_uninterrupted_forward(cell: str) -> None:
    torch.manual_seed(0)
    model = _model(cell)
    stream = _stream(model)
    k, n_chunks = 7, 4
    full_logits, full_state = model(stream[:, : k * n_chunks])  # (B, 4k, V): no truncation at all
    chunk_logits = []
    for i in range(n_chunks):
        batch = _chunk(stream, i * k, k)
        chunk_logits.append(model(batch.inputs, model._carried(model._train_state, batch))[0])
        model.training_step(batch, i)  # carries (and detaches) the state exactly as in training
    torch.testing.assert_close(torch.cat(chunk_logits, dim=1), full_logits)
    for carried, uninterrupted in zip(_state_tensors(model._train_state), _state_tensors(full_state)):
        torch.testing.assert_close(carried, uninterrupted)  # same final hidden (and cell) state


def test_no_gradient_flows_past_a_chunk_boundary() -> None:
    torch.manual_seed(0)
    model = _model()
    stream = _stream(model)
    first, second = _chunk(stream, 0, 6), _chunk(stream, 6, 6)
    logits, attached_state = model(first.inputs)  # the graph of chunk 1
    model._train_state = detach_state(attached_state)
    assert all(t.grad_fn is None and not t.requires_grad for t in _state_tensors(model._train_state))
    loss = model.training_step(second, 1)
    grads = torch.autograd.grad(loss, _state_tensors(attached_state), allow_unused=True)
    assert all(g is None for g in grads)  # chunk 2's loss does not reach chunk 1's computation

    # ...while inside a chunk, the last prediction's gradient reaches the chunk's first input.
    embedded = model.net.embedding(second.inputs).detach().requires_grad_(True)  # (B, T, E)
    x = embedded
    state = None
    for layer in model.net.layers:
        x, _ = layer(x, state)
    last_logit = model.net.decoder(x)[:, -1].sum()
    (grad,) = torch.autograd.grad(last_logit, embedded)
    assert grad[:, 0].abs().sum() > 0


def test_training_state_is_reset_at_every_epoch_and_carried_within(tmp_path: Path) -> None:
    seen: list[tuple[int, int, bool]] = []

    class Recorder(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
            seen.append((trainer.current_epoch, batch_idx, module._train_state is None))

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 3, encoding="utf-8")
    data = LanguageModelDataModule(
        corpus="files", paths=[str(corpus)], bptt=16, val_fraction=0.1,
        loader=LoaderSettings(batch_size=4, eval_batch_size=2),
        test_fraction=0.1,
    )
    model = _model(tokenizer=data.tokenizer_state)
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[Recorder()], gradient_clip_val=0.5, accumulate_grad_batches=2,
    )
    trainer.fit(model, datamodule=data)
    assert seen == [(0, 0, True), (0, 1, False), (0, 2, False), (1, 0, True), (1, 1, False), (1, 2, False)]
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/ppl", "train/bpc", "val/loss", "val/ppl", "val/bpc"} <= set(metrics)
    assert torch.isclose(metrics["val/ppl"], metrics["val/loss"].exp(), rtol=1e-4)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_mixed_precision_and_weight_drop_train_with_finite_losses(tmp_path: Path, layer_norm: bool) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 3, encoding="utf-8")
    data = LanguageModelDataModule(
        corpus="files", paths=[str(corpus)], bptt=16, val_fraction=0.1,
        loader=LoaderSettings(batch_size=4, eval_batch_size=2),
        test_fraction=0.1,
    )
    model = _model(
        tokenizer=data.tokenizer_state, layer_norm=layer_norm, weight_drop=0.3, input_dropout=0.2,
        embedding_dropout=0.1,
    )
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=2, precision="bf16-mixed", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=0.5,
    )
    trainer.fit(model, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert torch.isfinite(trainer.callback_metrics["val/bpc"])
    assert model.net.embedding.weight.dtype == torch.float32  # autocast computes in bf16, weights stay fp32


def test_a_small_model_learns_repetitive_text(tmp_path: Path) -> None:
    torch.manual_seed(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 8, encoding="utf-8")
    data = LanguageModelDataModule(
        corpus="files", paths=[str(corpus)], bptt=32, val_fraction=0.1,
        loader=LoaderSettings(batch_size=8, eval_batch_size=2),
        test_fraction=0.1,
    )
    model = _model(tokenizer=data.tokenizer_state, hidden_size=48, embedding_size=24, lr=1e-2)
    trainer = pl.Trainer(
        max_epochs=25, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, datamodule=data)
    uniform_bpc = torch.log2(torch.tensor(float(len(model.text_tokenizer))))
    assert trainer.callback_metrics["val/bpc"] < 0.25 * uniform_bpc  # the sentences repeat: nearly predictable
    prompt = torch.tensor([[EOS_ID, *model.text_tokenizer.encode("the cat sat on the")]])
    greedy = model.sample(prompt, 5, temperature=0.0)
    assert model.text_tokenizer.decode(greedy[0].tolist()) == " mat."


def test_sampling_respects_temperature_top_k_and_never_emits_padding() -> None:
    torch.manual_seed(0)
    model = _model().eval()
    prompt = torch.tensor([[EOS_ID, *model.text_tokenizer.encode("the ")]] * 2)
    assert torch.equal(model.sample(prompt, 20, 0.0), model.sample(prompt, 20, 0.0))  # greedy is deterministic
    draws = model.sample(prompt, 200, 1.0, torch.Generator().manual_seed(0))
    assert draws.shape == (2, 200)
    assert not any(int(t) in (0, 1, 2) for t in draws.flatten())  # PAD, UNK, BOS are never sampled
    model.hparams.top_k = 1
    assert torch.equal(model.sample(prompt, 20, 1.0, torch.Generator().manual_seed(1)), model.sample(prompt, 20, 0.0))
    dropped = _model(input_dropout=0.5, weight_drop=0.5).train()  # sampling switches dropout off, then back on
    assert torch.equal(dropped.sample(prompt, 20, 0.0), dropped.sample(prompt, 20, 0.0))
    assert dropped.training


def test_checkpoint_stores_the_tokenizer_and_refuses_another(tmp_path: Path) -> None:
    model = _model()
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "lm.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, weights_only=True)["hyper_parameters"]["tokenizer"]
    assert stored["kind"] == "char" and stored["tokens"][: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    same = LanguageModel.load_from_checkpoint(path, weights_only=True)
    assert same.text_tokenizer.tokens == model.text_tokenizer.tokens
    size = path.stat().st_size
    bigger = fit_tokenizer("char", [TEXT + "XYZ"]).state_dict()
    with pytest.raises(CheckpointMismatchError, match="embedding has"):
        LanguageModel.load_from_checkpoint(path, tokenizer=bigger)
    same_size = fit_tokenizer("char", [TEXT.replace("g", "x")]).state_dict()  # as many tokens, one differs
    with pytest.raises(CheckpointMismatchError, match="the vocabulary"):
        _model(tokenizer=same_size).on_load_checkpoint(torch.load(path, weights_only=True))
    assert path.stat().st_size == size  # the refused checkpoint is left as it was


def test_mid_epoch_checkpoint_carries_the_stream_state() -> None:
    model = _model()
    stream = _stream(model)
    model.training_step(_chunk(stream, 0, 5), 0)
    checkpoint: dict[str, Any] = {"hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    restored = _model()
    restored.on_load_checkpoint(checkpoint)
    for a, b in zip(_state_tensors(model._train_state), _state_tensors(restored._train_state)):
        assert torch.equal(a, b)


def test_validate_before_fit_leaves_the_metrics_updatable(tmp_path: Path) -> None:
    """Lightning resets metrics under inference mode after `validate`; the validation inside a later `fit` must
    still update them (in-place updates of inference tensors would raise)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 4, encoding="utf-8")
    data = LanguageModelDataModule(corpus="files", paths=[str(corpus)], bptt=20,
                                   loader=LoaderSettings(batch_size=2, eval_batch_size=2))
    model = _model(tokenizer=data.tokenizer_state)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=2, val_check_interval=1)
    before = trainer.validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    trainer.fit(model, datamodule=data)
    assert trainer.callback_metrics["val/loss"] != before


class _RankRecordingLM(LanguageModel):
    """Writes, per rank, the first input token of every stream in every training batch, the validation
    tokens this rank scored, and the synced validation perplexity."""

    def __init__(self, record_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record_dir = record_dir
        self.first_tokens: list[list[int]] = []
        self.val_tokens_here = 0

    def training_step(self, batch: LMBatch, batch_idx: int) -> torch.Tensor:
        self.first_tokens.append(batch.inputs[:, 0].tolist())
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: LMBatch, batch_idx: int) -> None:
        self.val_tokens_here += batch.n_tokens
        super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        metric = self.val_metrics["loss"]
        local = float(metric.tokens)
        metric.sync()  # on every rank: the states summed over ranks, as compute() sees them
        synced = float(metric.tokens)
        metric.unsync()
        record = {
            "first_tokens": self.first_tokens,
            "val_tokens_rank": self.val_tokens_here,
            "val_tokens_local": local,
            "val_tokens_synced": synced,
        }
        (Path(self.record_dir) / f"rank{self.global_rank}.json").write_text(json.dumps(record))


@pytest.mark.ddp
def test_ddp_ranks_read_disjoint_contiguous_shards_in_equal_chunk_counts(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i:04d} of the corpus\n" for i in range(600)), encoding="utf-8")
    data = LanguageModelDataModule(
        corpus="files", paths=[str(corpus)], bptt=40, val_fraction=0.1,
        loader=LoaderSettings(batch_size=3, eval_batch_size=2),
        test_fraction=0.1,
    )
    model = _RankRecordingLM(str(tmp_path), tokenizer=data.tokenizer_state,
                             network=spec("seqlit.nn.RecurrentLanguageModel", embedding_size=8, hidden_size=8))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert len(records[0]["first_tokens"]) == len(records[1]["first_tokens"]) > 0  # equal chunk counts
    ids = data.token_ids("train")
    rows = ids[: 6 * (ids.numel() // 6)].view(6, -1)  # 3 streams on each of 2 ranks
    for rank, record in enumerate(records):
        assert record["first_tokens"][0] == rows[3 * rank : 3 * rank + 3, 0].tolist()  # rank r: rows 3r..3r+2
    val_ids = data.token_ids("val")
    expected = 4 * ((val_ids.numel() // 4) - 1)  # 2 streams on each of 2 ranks, every position predicted once
    assert sum(record["val_tokens_rank"] for record in records) == expected  # disjoint halves...
    assert [record["val_tokens_local"] for record in records] == [record["val_tokens_rank"] for record in records]
    assert [record["val_tokens_synced"] for record in records] == [expected, expected]  # ...summed exactly by sync


def test_pretrained_vectors_are_loaded_for_a_fresh_fit_and_coverage_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = tmp_path / "glove.txt"
    vectors.write_text("the 1 2 3 4 5 6 7 8\ncat 8 7 6 5 4 3 2 1\n", encoding="utf-8")
    model = _model(tokenizer=fit_tokenizer("word", [TEXT]).state_dict(), pretrained_embeddings=str(vectors))
    model.trainer = pl.Trainer(logger=False, enable_progress_bar=False)
    model.setup("fit")
    tokens = model.text_tokenizer.tokens
    assert model.net.embedding.weight[tokens.index("cat")].tolist() == [8, 7, 6, 5, 4, 3, 2, 1]
    assert model.embedding_coverage is not None and model.embedding_coverage.covered == 2
    assert f"2 of {len(tokens) - len(SPECIAL_TOKENS)} vocabulary tokens covered" in capsys.readouterr().err
