"""What Lightning, seqlit's task and its default callbacks cost over a plain PyTorch training loop.

The same model is trained on the same batches for the same number of optimizer steps by

(a) a plain PyTorch loop: `SequenceClassifier` used as an `nn.Module`, summed cross-entropy / number of
    targets, backward, `clip_grad_norm_(1.0)`, AdamW + warmup-cosine schedule from
    `seqlit.tasks.optim.configure_optimization` (the task's own optimizer and schedule), scheduler step per step;
(b) `lightning.pytorch.Trainer` fitting `SequenceClassifier` with every callback `seqlit fit` adds
    (GradNormMonitor, PaddingRatioMonitor, NonFiniteGuard, LossScaleMonitor, RNGStateCheckpoint,
    SafeCheckpointing, all with default arguments, as the CLI builds them), gradient_clip_val=1.0 (norm),
    fp32 (the CLI's CPU default), a real logger (CSVLogger in a temporary folder, `--logger none` for
    logger=False), Trainer's default log_every_n_steps=50, no checkpointing, progress bar or model summary, no validation.

Setup (representative of a small `seqlit fit` on CPU): the long-tailed synthetic set of
`benchmarks/callback_overhead.py` (3000 sequences of 32 features, log-normal lengths clipped to [5, 300],
mean ~39 steps, 5 classes), bucketed by seqlit's `BucketBatchSampler` (batch size 32, sampler seed 0,
so both loops see identical batches), `SequenceClassifier` defaults: bidirectional GRU with 64 hidden units
per direction, dropout 0.2, last-state pooling, AdamW lr 3e-3. A step costs a few tens of milliseconds on
2 CPU cores. Both loops run in train mode from the same seed (same initial weights, same dropout masks);
the script checks that they saw the same batches and reports how far their final weights are apart.

Timing: only the training steps, in both loops: from the moment the first batch is in hand (Lightning:
`on_train_batch_start` of the first batch, through a callback that runs after all of seqlit's) to the end
of the last optimizer + scheduler step (Lightning: `on_train_batch_end` of the last batch). Trainer
construction, `fit` set-up (including PaddingRatioMonitor's random-batching simulation) and tear-down are
excluded; their time is printed apart. The two loops alternate for `--rounds` rounds in one process and
the ratio of the median real tokens/s (non-pad steps per second) is printed; acceptance: Lightning/plain
>= 0.95. `--device cuda` runs both loops on the GPU (the plain loop moves each batch as Lightning does, both
use the fused optimizer seqlit picks there, and the clocks synchronise the device before reading the time).

    python benchmarks/loop_overhead.py [--rounds 7] [--steps N] [--logger csv|none] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.callbacks.loss_scale import LossScaleMonitor
from seqlit.callbacks.nonfinite_guard import NonFiniteGuard
from seqlit.callbacks.padding_ratio import PaddingRatioMonitor
from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.callbacks.safe_checkpointing import SafeCheckpointing
from seqlit.data.collate import Sample, SequenceCollator
from seqlit.data.datamodules.loaders import length_bucketed_loader
from seqlit.tasks.classifier import SequenceClassifier
from seqlit.tasks.optim import configure_optimization
from seqlit.types import SeqBatch

# Helpers of the other benchmarks (scripts run from benchmarks/, which is then on sys.path).
from callback_overhead import _long_tailed_samples, _TokenCounter
from quiet_fit import quiet_logging

LOOPS: tuple[str, ...] = ("plain", "lightning")
N_FEATURES = 32
N_CLASSES = 5
CLIP_NORM = 1.0
MIN_RATIO = 0.95


@dataclass
class RunStats:
    """One training run: the timed steps and what they did."""

    seconds: float  # first batch in hand -> last optimizer step done
    startup_seconds: float  # before the first batch (Lightning: trainer construction + fit set-up)
    steps: int
    real_tokens: int
    batch_indices: list[Tensor]  # (B,) data set positions of every step's batch, in order
    weights: Tensor  # (P,) all parameters after the last step, flattened

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="runs per loop, alternating plain/lightning")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: one epoch)")
    parser.add_argument("--items", type=int, default=3000, help="sequences in the long-tailed set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--logger", choices=("csv", "none"), default="csv", help="Lightning's logger")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    quiet_logging()

    started = time.perf_counter()
    samples, lengths = _long_tailed_samples(args.items)  # inputs (T, 32), 5 classes
    steps = args.steps or len(bucketed_loader(samples, lengths, args.batch_size))
    logger_text = "CSVLogger (temporary folder)" if args.logger == "csv" else "none (logger=False)"
    print(f"device: {args.device}, torch threads {torch.get_num_threads()}; {args.items} sequences, batch {args.batch_size}, "
          f"{steps} optimizer steps per run, {args.rounds} rounds; Lightning logger: {logger_text}", flush=True)

    runs: dict[str, list[RunStats]] = {loop: [] for loop in LOOPS}
    for round_index in range(args.rounds):
        for loop in LOOPS:
            if loop == "plain":
                run = train_plain(samples, lengths, args.batch_size, steps)
            else:
                run = train_lightning(samples, lengths, args.batch_size, steps, args.logger == "csv")
            runs[loop].append(run)
        check_same_work(runs["plain"][-1], runs["lightning"][-1])
        print(f"round {round_index + 1}: plain {runs['plain'][-1].tokens_per_second:,.0f} tok/s, "
              f"lightning {runs['lightning'][-1].tokens_per_second:,.0f} tok/s", flush=True)
    print()
    print_table(runs, logger_text)
    print(f"\nwall time {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f} "
          f"(if well above {torch.get_num_threads()}, the threads used here, other processes competed: noisy figures)")


# ---- the two loops ------------------------------------------------------------------------------------------
def build_model() -> SequenceClassifier:
    pl.seed_everything(0, verbose=False)  # the same weights, and then the same dropout masks, in both loops
    return SequenceClassifier(n_features=N_FEATURES, n_classes=N_CLASSES)


def bucketed_loader(samples: list[Sample], lengths: list[int], batch_size: int) -> DataLoader:
    """The loader a seqlit data module builds for training: bucketed, shuffled, seeded."""
    return length_bucketed_loader(
        samples, lengths, SequenceCollator(), batch_size=batch_size, shuffle=True, bucketing=True, seed=0
    )


def train_plain(samples: list[Sample], lengths: list[int], batch_size: int, steps: int) -> RunStats:
    """(a) A hand-written loop doing what the task + Trainer do for one optimizer step."""
    setup_started = time.perf_counter()
    model = build_model()
    hparams = model.hparams
    model = model.to(DEVICE)
    configured = configure_optimization(model, hparams.optimizer, hparams.lr_scheduler, steps, model.monitor,
                                        prefer_fused=DEVICE.type == "cuda")
    optimizer: torch.optim.Optimizer = configured["optimizer"]
    scheduler: torch.optim.lr_scheduler.LRScheduler = configured["lr_scheduler"]["scheduler"]
    loader = bucketed_loader(samples, lengths, batch_size)
    model.train()
    indices: list[Tensor] = []
    real_tokens = 0
    first_batch: float | None = None
    for batch in batches_for_steps(loader, steps):
        batch = batch.to(DEVICE)
        if first_batch is None:
            _synchronize()
            first_batch = time.perf_counter()
        indices.append(batch.indices)
        real_tokens += batch.n_tokens
        logits = model(batch.inputs, batch.lengths, batch.mask)  # (B, C)
        summed = F.cross_entropy(logits, batch.targets, reduction="sum", label_smoothing=hparams.label_smoothing)
        loss = summed / max(1, batch.batch_size)  # one target per sequence
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        scheduler.step()
    _synchronize()
    ended = time.perf_counter()
    assert first_batch is not None, "the loader yielded no batch"
    return RunStats(ended - first_batch, first_batch - setup_started, len(indices), real_tokens, indices,
                    flat_weights(model))


DEVICE = torch.device("cpu")


def _synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def batches_for_steps(loader: DataLoader, steps: int) -> Iterator[SeqBatch]:
    """`steps` batches, over as many epochs as needed, re-seeding the sampler per epoch as Lightning does."""
    done = 0
    epoch = 0
    while True:
        loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return
        epoch += 1


class _StepClock(_TokenCounter):
    """Counts real tokens (see `_TokenCounter`) and stamps the first batch's start and the last step's end."""

    def __init__(self) -> None:
        super().__init__()
        self.first_batch: float | None = None
        self.last_step_end: float | None = None
        self.indices: list[Tensor] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.first_batch is None:
            _synchronize()
            self.first_batch = time.perf_counter()
        self.indices.append(batch.indices)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Lightning has already stepped the optimizer and the per-step scheduler when this hook runs.
        if trainer.global_step == trainer.max_steps:
            _synchronize()  # only at the end: a synchronisation per step would be what is being measured
        self.last_step_end = time.perf_counter()


def seqlit_fit_callbacks() -> list[pl.Callback]:
    """The callbacks `seqlit fit` always adds, with their default arguments, in the CLI's order."""
    return [
        GradNormMonitor(), PaddingRatioMonitor(), NonFiniteGuard(), LossScaleMonitor(), RNGStateCheckpoint(),
        SafeCheckpointing(),
    ]


def train_lightning(
    samples: list[Sample], lengths: list[int], batch_size: int, steps: int, with_logger: bool
) -> RunStats:
    """(b) `Trainer.fit` of `SequenceClassifier` with seqlit's default callbacks; only the steps are timed."""
    setup_started = time.perf_counter()
    model = build_model()
    loader = bucketed_loader(samples, lengths, batch_size)
    clock = _StepClock()
    with tempfile.TemporaryDirectory(prefix="seqlit-loop-overhead-") as folder:
        trainer = pl.Trainer(
            accelerator=DEVICE.type,
            devices=1,
            precision="32-true",
            max_steps=steps,
            gradient_clip_val=CLIP_NORM,
            gradient_clip_algorithm="norm",
            logger=pl.loggers.CSVLogger(folder) if with_logger else False,
            default_root_dir=folder,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[*seqlit_fit_callbacks(), clock],  # the clock last: its end stamp follows seqlit's hooks
        )
        trainer.fit(model, train_dataloaders=loader)
    assert clock.first_batch is not None and clock.last_step_end is not None, "Lightning ran no batch"
    assert trainer.global_step == steps, f"Lightning made {trainer.global_step} optimizer steps, not {steps}"
    return RunStats(clock.last_step_end - clock.first_batch, clock.first_batch - setup_started, len(clock.indices),
                    clock.tokens, clock.indices, flat_weights(model))


def flat_weights(model: torch.nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])  # (P,)


# ---- checks and report --------------------------------------------------------------------------------------
def check_same_work(plain: RunStats, lightning: RunStats) -> None:
    """Both loops must have trained on the same batches, in the same order, for the same number of steps."""
    if plain.steps != lightning.steps or plain.real_tokens != lightning.real_tokens:
        raise RuntimeError(f"unequal work: plain {plain.steps} steps / {plain.real_tokens} tokens, "
                           f"lightning {lightning.steps} steps / {lightning.real_tokens} tokens")
    if not all(torch.equal(a, b) for a, b in zip(plain.batch_indices, lightning.batch_indices)):
        raise RuntimeError("the two loops saw different batches")


def print_table(runs: dict[str, list[RunStats]], logger_text: str) -> None:
    tokens = {loop: statistics.median(run.tokens_per_second for run in runs[loop]) for loop in LOOPS}
    step_ms = {loop: statistics.median(1000 * run.seconds / run.steps for run in runs[loop]) for loop in LOOPS}
    startup = {loop: statistics.median(run.startup_seconds for run in runs[loop]) for loop in LOOPS}
    round_ratios = [b.tokens_per_second / a.tokens_per_second for a, b in zip(runs["plain"], runs["lightning"])]
    ratio = tokens["lightning"] / tokens["plain"]
    weight_gap = max(float((a.weights - b.weights).abs().max()) for a, b in zip(runs["plain"], runs["lightning"]))
    labels = {
        "plain": "plain PyTorch loop",
        "lightning": f"Lightning + SequenceClassifier + seqlit fit callbacks, logger {logger_text}",
    }
    print("| loop | real tok/s (median) | ms per step (median) | start-up before first batch, excluded (s) |")
    print("|---|---|---|---|")
    for loop in LOOPS:
        print(f"| {labels[loop]} | {tokens[loop]:,.0f} | {step_ms[loop]:.1f} | {startup[loop]:.2f} |")
    print(f"\nratio Lightning/plain real tok/s: {ratio:.3f} (ratio of medians; per round: median "
          f"{statistics.median(round_ratios):.3f}, range {min(round_ratios):.3f}-{max(round_ratios):.3f}); "
          f"acceptance >= {MIN_RATIO}: {'yes' if ratio >= MIN_RATIO else 'NO'}")
    print(f"same batches and steps in both loops: yes; largest final weight difference plain vs Lightning: "
          f"{weight_gap:.2e}")


if __name__ == "__main__":
    main()
