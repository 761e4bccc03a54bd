"""DDP correctness on CPU: two processes (gloo) against one, for every task and its data module.

Each check runs its DDP side once in two spawned processes that act as torchrun would launch them
(`LOCAL_RANK` etc. set, `strategy="ddp"`), so one spawn serves a whole fit -> test -> predict sequence;
the one-process side runs here. The validation and test splits have odd sizes, so they cannot divide
evenly over the two ranks. Checked: (a) training batches are disjoint per rank and equal in number;
(b) evaluation covers every item exactly once and the synced metrics equal one process's on the same
checkpoint; (c) a DDP checkpoint loads on one device (data-module state, per-rank RNG and carried LM
state included) and predicts the same file; plus accumulation over unequal rank batches, exact resume
under DDP, and the forecaster's series scaler being the same on every rank.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from seqlit.callbacks.prediction_writer import PredictionWriter
from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.data.collate import Sample, SequenceCollator
from seqlit.data.datamodules import (
    ForecastingDataModule,
    LanguageModelDataModule,
    LoaderSettings,
    Seq2SeqDataModule,
    SequenceClassificationDataModule,
)
from tests.builders import classifier, forecaster, language_model, seq2seq

pytestmark = pytest.mark.ddp

WORLD_SIZE = 2
STAGES = ("train", "val", "test", "predict")
QUIET: dict[str, Any] = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
# LM evaluation streams per rank under DDP; one process reads as many streams in total, so both lay the split
# out in the same rows (`batchify`) and predict the same tokens.
LM_EVAL_STREAMS = 2


# ---- running a function on two ranks -----------------------------------------------------------------


def run_on_two_ranks(worker: Callable[..., None], *args: Any, attempts: int = 3) -> None:
    """Runs `worker(rank, *args)` in two fresh processes forming a gloo process group; re-raises a rank's error.

    The free port is chosen before the processes bind it, so another program may take it in between (tests
    of other sessions share the machine); only that error starts the processes again on a new port.
    """
    for attempt in range(1, attempts + 1):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            mp.start_processes(_rank_entry, args=(port, worker, args), nprocs=WORLD_SIZE, join=True,
                               start_method="spawn")
            return
        except mp.ProcessRaisedException as error:
            if "EADDRINUSE" not in str(error) or attempt == attempts:
                raise


def _rank_entry(rank: int, port: int, worker: Callable[..., None], args: tuple[Any, ...]) -> None:
    # What torchrun sets: Lightning's environment then joins these processes instead of launching its own.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD_SIZE), NODE_RANK="0",
                      LOCAL_RANK=str(rank), RANK=str(rank))
    torch.set_num_threads(1)  # two processes share the two cores
    try:
        worker(rank, *args)
    finally:
        # A gloo group left alive at interpreter exit can abort one rank ("terminate called without an active
        # exception") after all the work is done; leave it cleanly, as a torchrun script should.
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _ddp_trainer(root: Path, callbacks: list[pl.Callback], **overrides: Any) -> pl.Trainer:
    # A short collective timeout, so a rank left waiting fails the test instead of hanging CI for 30 minutes.
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=120))
    settings: dict[str, Any] = dict(accelerator="cpu", devices=WORLD_SIZE, strategy=strategy, max_epochs=1,
                                    num_sanity_val_steps=0, enable_checkpointing=False, default_root_dir=root,
                                    deterministic=True, gradient_clip_val=1.0, callbacks=callbacks, **QUIET)
    settings.update(overrides)
    return pl.Trainer(**settings)


def _single_trainer(root: Path, callbacks: list[pl.Callback], **overrides: Any) -> pl.Trainer:
    settings: dict[str, Any] = dict(accelerator="cpu", devices=1, max_epochs=1, num_sanity_val_steps=0,
                                    enable_checkpointing=False, default_root_dir=root, deterministic=True,
                                    callbacks=callbacks, **QUIET)
    settings.update(overrides)
    return pl.Trainer(**settings)


# ---- small data for each task (odd-sized evaluation splits) ---------------------------------------------


def _write_sequences(workdir: Path) -> None:
    """105 labelled sequences of 3-15 steps in 3 classes: stratified val and test get 15 each."""
    rng = np.random.default_rng(0)
    rows = []
    for label_index, label in enumerate(("down", "flat", "up")):
        for i in range(35):
            length = int(rng.integers(3, 16))
            for step in range(length):
                rows.append({"entity": f"{label}{i:02d}", "time": step, "label": label,
                             "x": 0.3 * (label_index - 1) * step + rng.normal(), "y": rng.normal()})
    pd.DataFrame(rows).to_csv(workdir / "sequences.csv", index=False)


def _write_pronunciations(workdir: Path) -> None:
    """151 made-up words spelled from 6 letters (every 4th with an alternate): val and test get 15 each."""
    phones = {"a": "AA1", "b": "B", "c": "K", "d": "D", "e": "IY0", "f": "F"}
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < 151:
        words.add("".join(rng.choice("abcdef") for _ in range(rng.randint(2, 7))))
    lines = []
    for i, word in enumerate(sorted(words)):
        pronunciation = " ".join(phones[c] for c in word)
        lines.append(f"{word.upper()}  {pronunciation}")
        if i % 4 == 0:
            lines.append(f"{word.upper()}(2)  {pronunciation.replace('AA1', 'AH0')} S")
    (workdir / "dictionary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (workdir / "words.txt").write_text("\n".join(sorted(words)[:25]) + "\n", encoding="utf-8")  # 25 to transcribe


def _write_corpus(workdir: Path) -> None:
    text = "".join(f"line {i:03d} says {'abcdefgh'[i % 8] * (1 + i % 5)}\n" for i in range(240))
    (workdir / "corpus.txt").write_text(text, encoding="utf-8")


def _write_panel(workdir: Path) -> None:
    """23 positive series of 14-29 yearly steps: one validation and one test window each."""
    rng = np.random.default_rng(1)
    rows = []
    for series in range(23):
        level, trend = rng.uniform(50, 500), rng.uniform(-2, 6)
        for step in range(int(rng.integers(14, 30))):
            rows.append({"entity": f"s{series:02d}", "time": 2000 + step,
                         "target": level + trend * step + rng.normal(0, 5)})
    pd.DataFrame(rows).to_csv(workdir / "panel.csv", index=False)


def _classification(workdir: Path, world_size: int) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    data = SequenceClassificationDataModule(
        dataset="long_format", train_path=str(workdir / "sequences.csv"), predict_path=str(workdir / "sequences.csv"),
        val_fraction=0.15, test_fraction=0.15, loader=LoaderSettings(batch_size=8),
    )
    return data, classifier(data.n_features, data.n_classes, data.classes, hidden_size=8)


def _seq2seq(workdir: Path, world_size: int) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    data = Seq2SeqDataModule(
        dataset="pronunciation_file", train_path=str(workdir / "dictionary.txt"),
        predict_path=str(workdir / "words.txt"), val_fraction=0.1, test_fraction=0.1,
        loader=LoaderSettings(batch_size=16, eval_batch_size=4),
    )
    model = seq2seq(data.source_tokens, data.target_tokens, embedding_size=8, encoder_hidden_size=8,
                    encoder_layers=1, decoder_hidden_size=16, beam_size=2, max_decode_length=12)
    return data, model


def _language_model(workdir: Path, world_size: int) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    data = LanguageModelDataModule(
        corpus="files", paths=[str(workdir / "corpus.txt")], bptt=25, val_fraction=0.1, test_fraction=0.1,
        loader=LoaderSettings(batch_size=2, eval_batch_size=LM_EVAL_STREAMS * WORLD_SIZE // world_size),
        prompts=["line 0", "line 1", "li"],
    )
    model = language_model(data.tokenizer_state, embedding_size=8, hidden_size=8, num_layers=2, sample_length=8)
    return data, model


def _forecasting(workdir: Path, world_size: int) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    data = ForecastingDataModule(dataset="long_format", path=str(workdir / "panel.csv"), horizon=3, scaling="series",
                                 loader=LoaderSettings(batch_size=32))
    return data, forecaster(data.n_features, data.horizon, data.seasonality, hidden_size=8)


Build = Callable[[Path, int], tuple[pl.LightningDataModule, pl.LightningModule]]  # (data dir, world size)
TASKS: dict[str, tuple[Callable[[Path], None], Build]] = {  # task -> (data writer, data module and model)
    "classification": (_write_sequences, _classification),
    "seq2seq": (_write_pronunciations, _seq2seq),
    "language_model": (_write_corpus, _language_model),
    "forecasting": (_write_panel, _forecasting),
}


# ---- (a), (b), (c) for every task -------------------------------------------------------------------


class _BatchRecorder(pl.Callback):
    """Per stage, the data set positions in each batch this rank ran (LM streams: empty) and the tokens read."""

    def __init__(self) -> None:
        self.batches: dict[str, list[list[int]]] = {stage: [] for stage in STAGES}
        self.tokens: dict[str, int] = {stage: 0 for stage in STAGES}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self._record("train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, *args) -> None:  # type: ignore[no-untyped-def]
        self._record("val", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, *args) -> None:  # type: ignore[no-untyped-def]
        self._record("test", batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, *args) -> None:  # type: ignore[no-untyped-def]
        self._record("predict", batch)

    def _record(self, stage: str, batch: Any) -> None:
        self.batches[stage].append([] if batch.indices is None else batch.indices.tolist())
        self.tokens[stage] += int(batch.n_tokens)


def _fit_test_predict(rank: int, task: str, workdir: Path) -> None:
    """On each rank: one epoch of training (validation at its end), a checkpoint, test, predict; writes rank<r>.json."""
    pl.seed_everything(0)
    data, model = TASKS[task][1](workdir, WORLD_SIZE)
    recorder = _BatchRecorder()
    writer = PredictionWriter(workdir / "predictions_ddp.csv")
    trainer = _ddp_trainer(workdir, [recorder, writer, RNGStateCheckpoint()])
    trainer.fit(model, datamodule=data)
    weights = _weights_digest(model)  # now: a later DDP wrap (test, predict) would copy rank 0's weights over
    val_metrics = _floats(trainer.callback_metrics, "val/")
    trainer.save_checkpoint(workdir / "ddp.ckpt")  # every rank takes part; rank 0 writes
    test_metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    trainer.predict(model, datamodule=data, return_predictions=False)
    scaler = getattr(data, "scaler", None)
    record = {
        "batches": recorder.batches, "tokens": recorder.tokens, "val": val_metrics, "test": test_metrics,
        "weights": weights, "scaler": None if scaler is None else scaler.state_dict(),
    }
    (workdir / f"rank{rank}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module", params=list(TASKS))
def ddp_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[dict]]:
    """One DDP fit -> test -> predict per task; the two ranks' records."""
    task = request.param
    workdir = tmp_path_factory.mktemp(task)
    TASKS[task][0](workdir)
    run_on_two_ranks(_fit_test_predict, task, workdir)
    return task, workdir, [json.loads((workdir / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]


def test_ranks_train_on_disjoint_shares_in_equal_batch_counts_and_stay_in_sync(ddp_run) -> None:
    task, workdir, records = ddp_run
    train_batches = [record["batches"]["train"] for record in records]
    assert len(train_batches[0]) == len(train_batches[1]) > 0
    # Equal replicas after every step: DDP averages the gradients and every rank normalises them alike.
    assert records[0]["weights"] == records[1]["weights"]
    if task == "language_model":
        return  # streams, not items: the contiguous shards are checked in tests/tasks/test_language_model.py
    items = [sorted(i for batch in batches for i in batch) for batches in train_batches]
    assert not set(items[0]) & set(items[1])
    data, _ = TASKS[task][1](workdir, 1)
    data.setup("fit")
    assert sorted(items[0] + items[1]) == list(range(len(data.datasets["train"])))


def test_evaluation_sees_every_item_once_and_synced_metrics_equal_one_process(ddp_run) -> None:
    task, workdir, records = ddp_run
    pl.seed_everything(0)
    data, model = TASKS[task][1](workdir, 1)
    recorder = _BatchRecorder()
    trainer = _single_trainer(workdir / "single", [recorder])
    val_metrics = trainer.validate(model, datamodule=data, ckpt_path=str(workdir / "ddp.ckpt"), verbose=False)[0]
    test_metrics = trainer.test(model, datamodule=data, ckpt_path=str(workdir / "ddp.ckpt"), verbose=False)[0]
    for stage, single in (("val", val_metrics), ("test", test_metrics)):
        if task == "language_model":
            # Same rows, same tokens: the ranks' streams are the one process's, split between them.
            assert sum(record["tokens"][stage] for record in records) == recorder.tokens[stage] > 0
        else:
            size = len(data.datasets[stage])
            assert size % 2 == 1, "an odd split cannot divide evenly over two ranks"
            per_rank = [[i for batch in record["batches"][stage] for i in batch] for record in records]
            assert min(len(items) for items in per_rank) > 0
            assert sorted(per_rank[0] + per_rank[1]) == list(range(size)), f"{stage}: each item exactly once"
        ddp = records[0][stage]
        assert ddp == records[1][stage], "every rank reports the synced value"
        assert ddp.keys() == single.keys() and ddp
        for name in ddp:
            assert ddp[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), f"{task} {name}"


def test_ddp_predictions_file_has_every_item_once_and_matches_one_process(ddp_run) -> None:
    task, workdir, records = ddp_run
    pl.seed_everything(0)
    data, model = TASKS[task][1](workdir, 1)
    single_path = workdir / "predictions_single.csv"
    trainer = _single_trainer(workdir / "single", [PredictionWriter(single_path)])
    trainer.predict(model, datamodule=data, ckpt_path=str(workdir / "ddp.ckpt"), return_predictions=False)
    ddp_rows, single_rows = _read_csv(workdir / "predictions_ddp.csv"), _read_csv(single_path)
    predicted = sorted(i for record in records for batch in record["batches"]["predict"] for i in batch)
    assert predicted == list(range(len(single_rows) - 1)), "the ranks predicted disjoint shares of every item"
    assert len(ddp_rows) == len(single_rows) > 2
    assert ddp_rows[0] == single_rows[0]  # header
    for ddp_row, single_row in zip(ddp_rows[1:], single_rows[1:]):
        assert ddp_row[0] == single_row[0]  # ids in data set order
        if ddp_row[1] != single_row[1]:  # forecasts printed to 6 digits may round apart
            assert _numbers(ddp_row[1].split()) == pytest.approx(_numbers(single_row[1].split()), rel=1e-5)
        assert _numbers(ddp_row[2:]) == pytest.approx(_numbers(single_row[2:]), rel=1e-5, abs=2e-6)


@pytest.mark.parametrize("ddp_run", ["forecasting"], indirect=True)
def test_series_scaler_is_fitted_alike_on_every_rank_and_travels_in_the_checkpoint(ddp_run) -> None:
    task, workdir, records = ddp_run
    data, _ = TASKS[task][1](workdir, 1)
    data.setup("fit")
    expected = data.scaler.state_dict()
    assert expected["stats"] and len(expected["stats"]) == 23
    assert records[0]["scaler"] == records[1]["scaler"] == json.loads(json.dumps(expected))
    saved = torch.load(workdir / "ddp.ckpt", weights_only=True)["ForecastingDataModule"]["scaler"]
    assert json.loads(json.dumps(saved)) == records[0]["scaler"]


# ---- gradient accumulation over ranks with unequal targets ---------------------------------------------

# Micro-batches per rank (dataset positions): 6 sequences on rank 0, 2 on rank 1, as bucketing produces.
RANK_MICRO_BATCHES = [[[0, 1, 2, 3, 4], [5]], [[6], [7]]]


class _GradProbe(pl.Callback):
    """The gradients the optimizer is about to use (after the step's normalisation)."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None}


def _accumulation_samples() -> list[Sample]:
    generator = torch.Generator().manual_seed(0)
    return [Sample(index=i, inputs=torch.randn(2 + 3 * i, 4, generator=generator), target=torch.tensor(i % 3))
            for i in range(8)]


def _accumulated_step(rank: int, workdir: Path) -> None:
    torch.manual_seed(0)
    model = classifier(4, 3, dropout=0.0)
    probe = _GradProbe()
    trainer = _ddp_trainer(workdir, [probe], max_steps=1, accumulate_grad_batches=2, use_distributed_sampler=False,
                           limit_val_batches=0)
    loader = DataLoader(_accumulation_samples(), batch_sampler=RANK_MICRO_BATCHES[rank], collate_fn=SequenceCollator())
    trainer.fit(model, train_dataloaders=loader)
    torch.save(probe.grads, workdir / f"grads{rank}.pt")


def test_two_rank_accumulated_step_equals_one_process_step_on_the_union(tmp_path: Path) -> None:
    run_on_two_ranks(_accumulated_step, tmp_path)
    torch.manual_seed(0)
    model = classifier(4, 3, dropout=0.0)
    probe = _GradProbe()
    union = [i for micro_batches in RANK_MICRO_BATCHES for batch in micro_batches for i in batch]
    loader = DataLoader(_accumulation_samples(), batch_sampler=[union], collate_fn=SequenceCollator())
    _single_trainer(tmp_path, [probe], max_steps=1, limit_val_batches=0).fit(model, train_dataloaders=loader)
    ranks = [torch.load(tmp_path / f"grads{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    assert probe.grads and ranks[0].keys() == ranks[1].keys() == probe.grads.keys()
    for name, expected in probe.grads.items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(ranks[0][name], expected, rtol=1e-5, atol=1e-7, msg=name)


# ---- resuming mid-epoch under DDP -------------------------------------------------------------------------

def _resumable_classification(workdir: Path) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    data = SequenceClassificationDataModule(dataset="long_format", train_path=str(workdir / "sequences.csv"),
                                            val_fraction=0.15, test_fraction=0.15, loader=LoaderSettings(batch_size=8))
    return data, classifier(data.n_features, data.n_classes, data.classes, hidden_size=8, dropout=0.3)


def _resumable_language_model(workdir: Path) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    data = LanguageModelDataModule(corpus="files", paths=[str(workdir / "corpus.txt")], bptt=40, val_fraction=0.1,
                                   test_fraction=0.1, loader=LoaderSettings(batch_size=2, eval_batch_size=2))
    # Dropout everywhere, so the resumed run matches only with this rank's own generator states.
    return data, language_model(data.tokenizer_state, embedding_size=8, hidden_size=8, num_layers=2)


RESUMABLE: dict[str, Callable[[Path], tuple[pl.LightningDataModule, pl.LightningModule]]] = {
    "classification": _resumable_classification,
    "language_model": _resumable_language_model,
}
# Per task, the states a negative control copies from rank 0 to rank 1 (what a rank-0-only checkpoint restored).
# The LM's ranks read chunks of one shape, and CPU dropout draws one seed per call whatever the shape, so their
# generators stay equal there; the classifier's ranks run differently shaped batches and theirs drift apart.
RANK0_VARIANTS: dict[str, tuple[str, ...]] = {"classification": ("rng",), "language_model": ("carried",)}


def _resume_runs(rank: int, workdir: Path) -> None:
    """Per task: an uninterrupted 2-epoch fit checkpointing every step, then fits resumed from a step in the middle
    of epoch 2 with the checkpoint as written, and with one kind of rank 0's state copied to rank 1 (the old
    behaviour) as negative controls."""
    record: dict[str, Any] = {}
    for task, build in RESUMABLE.items():
        checkpoints = workdir / task
        pl.seed_everything(3)
        data, model = build(workdir)
        every_step = ModelCheckpoint(dirpath=checkpoints, filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = _ddp_trainer(workdir, [RNGStateCheckpoint(), every_step], max_epochs=2, enable_checkpointing=True)
        trainer.fit(model, datamodule=data)
        steps_per_epoch = int(trainer.num_training_batches)
        middle = checkpoints / f"step={steps_per_epoch + steps_per_epoch // 2}.ckpt"
        if rank == 0:
            for kind in RANK0_VARIANTS[task]:
                _write_with_rank0_state(middle, checkpoints / f"rank0_{kind}.ckpt", kind)
        dist.barrier()
        saved = torch.load(middle, weights_only=True)
        per_rank_rng = saved["callbacks"]["RNGStateCheckpoint"]["per_rank"]
        carried = saved.get("seqlit_lm_carried_states")
        record[task] = {
            "full": _weights_digest(model),
            "rng_ranks": len(per_rank_rng),
            "rng_ranks_differ": not torch.equal(per_rank_rng[0]["torch"], per_rank_rng[1]["torch"]),
            "carried_ranks_differ": None if carried is None else not torch.equal(carried[0][0][0], carried[1][0][0]),
        }
        variants = {"resumed": middle}
        variants.update({f"rank0_{kind}": checkpoints / f"rank0_{kind}.ckpt" for kind in RANK0_VARIANTS[task]})
        for variant, path in variants.items():
            pl.seed_everything(3)
            data, model = build(workdir)
            trainer = _ddp_trainer(workdir, [RNGStateCheckpoint()], max_epochs=2)
            trainer.fit(model, datamodule=data, ckpt_path=str(path))
            record[task][variant] = _weights_digest(model)
    (workdir / f"resume{rank}.json").write_text(json.dumps(record))


def _write_with_rank0_state(source: Path, target: Path, kind: str) -> None:
    """The checkpoint as a rank-0-only one restored it: rank 1 gets rank 0's generators (`rng`) or LM state
    (`carried`)."""
    checkpoint = torch.load(source, weights_only=True)
    per_rank = (checkpoint["callbacks"]["RNGStateCheckpoint"]["per_rank"] if kind == "rng"
                else checkpoint["seqlit_lm_carried_states"])
    per_rank[1] = per_rank[0]
    torch.save(checkpoint, target)


def test_resume_mid_epoch_under_ddp_restores_every_rank_and_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    _write_sequences(tmp_path)
    _write_corpus(tmp_path)
    run_on_two_ranks(_resume_runs, tmp_path)
    records = [json.loads((tmp_path / f"resume{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    for task in RESUMABLE:
        rank0, rank1 = records[0][task], records[1][task]
        assert rank0["rng_ranks"] == WORLD_SIZE
        if "rng" in RANK0_VARIANTS[task]:
            assert rank0["rng_ranks_differ"], "the ranks' generators drew differently, so each needs its own"
        if task == "language_model":
            assert rank0["carried_ranks_differ"], "each rank carries the state of its own streams"
        assert rank0["full"] == rank1["full"]
        assert rank0["resumed"] == rank1["resumed"] == rank0["full"], f"{task}: resume is exact on every rank"
        for kind in RANK0_VARIANTS[task]:  # negative controls: rank 0's state on rank 1 as well changes the result
            assert rank0[f"rank0_{kind}"] == rank1[f"rank0_{kind}"] != rank0["full"], f"{task}: {kind}"


def test_per_rank_checkpoint_states_load_in_one_process(tmp_path: Path) -> None:
    """A DDP checkpoint in one process: rank 0's generators are restored; the LM's carried state, laid out for two
    ranks' streams, is dropped."""
    callback = RNGStateCheckpoint()
    torch.manual_seed(11)
    saved = callback.state_dict()
    assert len(saved["per_rank"]) == 1
    expected = torch.rand(3)
    torch.manual_seed(12)
    callback.load_state_dict({"per_rank": [saved["per_rank"][0], {"torch": torch.get_rng_state()}]})
    torch.testing.assert_close(torch.rand(3), expected)
    _write_corpus(tmp_path)
    _, model = _resumable_language_model(tmp_path)
    two_ranks = [[[torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)]]] * 2
    model.on_load_checkpoint({"hyper_parameters": dict(model.hparams), "seqlit_lm_carried_states": two_ranks})
    assert model._train_state is None


# ---- helpers ------------------------------------------------------------------------------------------


def _floats(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if name.startswith(prefix)}


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _numbers(cells: list[str]) -> list[float]:
    return [float(cell) for cell in cells]


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))
