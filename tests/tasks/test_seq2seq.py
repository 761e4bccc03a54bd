"""Seq2SeqModel: learns a toy transliteration, logs the teacher-forcing ramp, decodes, refuses another vocabulary."""

from __future__ import annotations

import random

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from seqlit.errors import CheckpointMismatchError
from seqlit.tasks.seq2seq import Seq2SeqModel
from seqlit.types import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, SPECIAL_TOKENS, Seq2SeqBatch
from tests.builders import seq2seq

LETTERS = list("abcdef")
PHONES = {"a": ["AA1"], "b": ["B"], "c": ["K", "S"], "d": ["D"], "e": ["IY0"], "f": ["F"]}
SOURCE_TOKENS = list(SPECIAL_TOKENS) + LETTERS
TARGET_TOKENS = list(SPECIAL_TOKENS) + sorted({p for ps in PHONES.values() for p in ps})


def _pairs(n: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return [(w, [p for c in w for p in PHONES[c]]) for w in words]


def _batch(pairs: list[tuple[str, list[str]]], start: int = 0) -> Seq2SeqBatch:
    source_index = {t: i for i, t in enumerate(SOURCE_TOKENS)}
    target_index = {t: i for i, t in enumerate(TARGET_TOKENS)}
    lengths = torch.tensor([len(w) for w, _ in pairs])
    steps = max(len(p) for _, p in pairs) + 1
    sources = torch.full((len(pairs), int(lengths.max())), PAD_ID)
    inputs = torch.full((len(pairs), steps), PAD_ID)
    outputs = torch.full((len(pairs), steps), IGNORE_INDEX)
    references = []
    for row, (word, phones) in enumerate(pairs):
        ids = [target_index[p] for p in phones]
        sources[row, : len(word)] = torch.tensor([source_index[c] for c in word])
        inputs[row, : len(ids) + 1] = torch.tensor([BOS_ID, *ids])
        outputs[row, : len(ids) + 1] = torch.tensor([*ids, EOS_ID])
        references.append([tuple(ids)])
    n_tokens = int(lengths.sum())
    return Seq2SeqBatch(
        sources, lengths, sources != PAD_ID, inputs, outputs, references,
        torch.arange(start, start + len(pairs)), n_tokens, sources.numel() - n_tokens,
    )


def _loader(pairs: list[tuple[str, list[str]]], batch_size: int) -> DataLoader:
    batches = [_batch(pairs[i : i + batch_size], i) for i in range(0, len(pairs), batch_size)]
    return DataLoader(batches, batch_size=None, shuffle=False)


def _model(**overrides: object) -> Seq2SeqModel:
    settings: dict[str, object] = dict(
        embedding_size=16, encoder_hidden_size=32, encoder_layers=1, decoder_hidden_size=32,
        dropout=0.0, label_smoothing=0.0, lr=1e-2, beam_size=3, warmup_fraction=0.0, stress_marked=True,
    )
    settings.update(overrides)
    return seq2seq(SOURCE_TOKENS, TARGET_TOKENS, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("input_feeding", [False, True])
def test_learns_a_toy_transliteration_and_decodes_it(input_feeding: bool, tmp_path) -> None:
    pl.seed_everything(0)
    model = _model(input_feeding=input_feeding, teacher_forcing="linear", teacher_forcing_k=1.0, teacher_forcing_c=0.004)
    trainer = pl.Trainer(
        max_epochs=8, logger=pl.loggers.CSVLogger(tmp_path), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, gradient_clip_val=1.0,
    )
    trainer.fit(model, _loader(_pairs(1200, 0), 32), _loader(_pairs(100, 1), 50))
    # the ramp was applied by global step and logged
    probability = trainer.logged_metrics["train/teacher_forcing_prob"]
    assert float(probability) == pytest.approx(max(0.0, 1.0 - 0.004 * (trainer.global_step - 1)), abs=1e-6)
    results = trainer.test(model, _loader(_pairs(200, 2), 50), verbose=False)[0]
    assert results["test/wer"] < 0.1 and results["test/greedy_wer"] < 0.1, results
    assert results["test/per_stress"] <= results["test/wer_stress"] + 1e-6
    assert model.transcribe(["cab", "fed"]) == [["K", "S", "AA1", "B"], ["F", "IY0", "D"]]
    symbols, weights = model.attention_map("cab")
    assert weights.shape == (len(symbols), 3)
    assert torch.allclose(weights.sum(-1), torch.ones(len(symbols)))


def test_predict_step_returns_pronunciations_in_dataset_order() -> None:
    model = _model().eval()
    batch = _batch(_pairs(5, 3), start=10)
    output = model.predict_step(batch, 0)
    assert output["index"].tolist() == list(range(10, 15))
    assert len(output["prediction"]) == 5 and all(isinstance(p, str) for p in output["prediction"])


def test_loss_counts_real_target_tokens_only() -> None:
    model = _model().eval()
    batch = _batch(_pairs(6, 4))
    logits = model(batch).logits  # (B, T, V)
    summed = model._token_loss(logits, batch.target_outputs, 0.0)
    real = batch.target_outputs != IGNORE_INDEX
    manual = -torch.log_softmax(logits, -1).gather(-1, batch.target_outputs.clamp(min=0).unsqueeze(-1)).squeeze(-1)[real].sum()
    torch.testing.assert_close(summed, manual)
    assert batch.n_target_tokens == int(real.sum())


def test_checkpoint_with_another_vocabulary_is_refused(tmp_path) -> None:
    model = _model()
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, _loader(_pairs(32, 5), 32))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    size = path.stat().st_size
    other = seq2seq(SOURCE_TOKENS + ["g"], TARGET_TOKENS, embedding_size=16, encoder_hidden_size=32,
                    encoder_layers=1, decoder_hidden_size=32)
    checkpoint = torch.load(path, weights_only=False)
    with pytest.raises(CheckpointMismatchError, match="the source vocabulary"):
        other.on_load_checkpoint(checkpoint)
    assert path.stat().st_size == size  # the refused checkpoint is untouched


def test_rejects_vocabularies_without_special_tokens() -> None:
    with pytest.raises(ValueError, match="special tokens"):
        Seq2SeqModel(LETTERS, TARGET_TOKENS)


def test_error_rate_collection_keeps_stress_variants_apart() -> None:
    from seqlit.tasks.seq2seq import _error_rates

    assert set(_error_rates("val/", stress_marked=False)) == {"val/wer", "val/per"}  # generic targets: exact match
    metrics = _error_rates("val/", stress_marked=True)
    # first batch: every word wrong either way, so the states of both WERs are equal ...
    metrics.update([["K", "AE1", "T"]], [[("D", "AO1", "G")]])
    # ... second batch: right without stress, wrong with stress
    metrics.update([["K", "AE0", "T"]], [[("K", "AE1", "T")]])
    values = metrics.compute()
    assert float(values["val/wer"]) == 0.5
    assert float(values["val/wer_stress"]) == 1.0
