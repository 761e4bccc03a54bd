"""No host-device synchronisation on the training step outside logging steps, counted on the CPU.

Every way a tensor's value reaches Python (`item`, `tolist`, `bool`, `int`, `float`) and every
`torch.distributed.all_reduce` is counted while each task trains through the CLI with its default callbacks,
attributed to the optimizer step in progress. On a GPU each of those is a stall of the device queue; on the
CPU the same code paths run, so the count is what a GPU run would pay. Two places are left out on purpose,
because their tensors live on the host on a GPU as well: data loading (collation, bucketing) and the CPU-only
length-segment path of the RNNs (on a GPU the packed kernel takes the lengths, which batches keep on the host).
The optimizer is the fused implementation seqlit picks on a GPU.
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist

from seqlit.cli import SeqlitCLI

REPO = Path(__file__).resolve().parents[1]
LOG_EVERY = 4
STEPS = 12
HOST_SIDE = ("torch/utils/data/", "seqlit/data/", "seqlit/nn/segmented.py")  # host tensors on a GPU too
CONVERSIONS = ("item", "tolist", "__bool__", "__int__", "__float__")


class _StepInProgress(pl.Callback):
    """Which optimizer step the current batch belongs to; None at an epoch boundary (epoch end, validation),
    where synchronising is allowed."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.step = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.step = None

    def on_validation_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.step = None


class _CountingCLI(SeqlitCLI):
    def before_fit(self) -> None:
        super().before_fit()
        self.trainer.callbacks.insert(0, self.tracker)


def _train_and_count(arguments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Conversions and all-reduces per (step, where), for steps that are not logging steps."""
    tracker = _StepInProgress()
    trainer_box: dict[str, pl.Trainer] = {}
    counted: Counter = Counter()

    def record(kind: str) -> None:
        trainer = trainer_box.get("trainer")
        if trainer is None or not trainer.training or trainer.sanity_checking:
            return
        step = tracker.step
        if step is None or (step + 1) % LOG_EVERY == 0:
            return  # an epoch boundary or a logging step may synchronise
        frames = [f"{frame.filename}:{frame.lineno}" for frame in traceback.extract_stack()[:-2]]
        if any(part in frame for frame in frames for part in HOST_SIDE):
            return
        counted[(kind, frames[-1].split("site-packages/")[-1].split(str(REPO) + "/")[-1])] += 1

    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def counting(self: torch.Tensor, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            record(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    original_all_reduce = dist.all_reduce

    def counting_all_reduce(*args: Any, **kwargs: Any) -> Any:
        record("all_reduce")
        return original_all_reduce(*args, **kwargs)

    monkeypatch.setattr(dist, "all_reduce", counting_all_reduce)
    monkeypatch.chdir(tmp_path)

    class Counting(_CountingCLI):
        def before_fit(self) -> None:
            self.tracker = tracker
            super().before_fit()
            trainer_box["trainer"] = self.trainer

    Counting(args=[
        "fit", *arguments, "--trainer.max_steps", str(STEPS), "--trainer.log_every_n_steps", str(LOG_EVERY),
        "--trainer.limit_val_batches", "2", "--trainer.val_check_interval", "1.0", "--test_after_fit", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.init_args.optimizer.init_args.fused", "true",
    ])
    return counted


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in (f"{a}{b}{c}" for a in "abcd" for b in "efgh" for c in "ij")),
                    encoding="utf-8")
    return path


TASKS = {
    "classifier": lambda tmp: ["--config", str(REPO / "configs/japanese_vowels_gru.yaml")],
    "seq2seq": lambda tmp: ["--config", str(REPO / "configs/g2p_cmudict_small.yaml"), "--data.init_args.dataset",
                            "parallel_file", "--data.init_args.train_path", str(_pairs(tmp)),
                            "--data.init_args.source_unit", "char", "--data.init_args.target_unit", "char",
                            "--data.init_args.val_fraction", "0.1", "--data.init_args.test_fraction", "0.1",
                            "--data.init_args.loader.batch_size", "4"],
    "language_model": lambda tmp: ["--config", str(REPO / "configs/lm_pydoc_char.yaml"),
                                   "--model.init_args.network.init_args.hidden_size", "32",
                                   "--model.init_args.network.init_args.embedding_size", "32",
                                   "--data.init_args.bptt", "20"],
    "forecaster": lambda tmp: ["--config", str(REPO / "configs/m1_yearly_gru.yaml")],
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_training_steps_between_logging_steps_do_not_synchronise(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _train_and_count(TASKS[task](tmp_path), tmp_path, monkeypatch)
    assert not counted, f"{task}: host synchronisations outside logging steps: {dict(counted)}"
