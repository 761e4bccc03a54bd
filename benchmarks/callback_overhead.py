"""Throughput cost of the observability callbacks (GradNormMonitor + PaddingRatioMonitor), and the share of
training time the validation figures (TaskFigures) take at their defaults.

Step callbacks: trains the same model on the same batches with and without the callbacks, alternating the
two settings over several rounds in one process, and prints the ratio of their tokens/s (machines are
noisy, so only the ratio measured in one run means anything).

Figures (`--figures`): fits each recipe as `seqlit fit` does (its own config on the shared base, so
TaskFigures at its defaults: every 5th epoch and the last), for `--figure-epochs` epochs without the test,
and prints the seconds TaskFigures spent drawing (its own clock, rank 0) over the seconds of the training
loop (validation included, `TimedFitCLI`). Both clocks run in the same process at the same time, so the
share holds on a busy machine too, where a paired with/without timing would drown in noise.

    python benchmarks/callback_overhead.py [--rounds 4] [--steps 40] [--log-every 1]
    python benchmarks/callback_overhead.py --figures [--figure-epochs 10] [--recipes configs/x.yaml ...]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.callbacks.padding_ratio import PaddingRatioMonitor
from seqlit.data.bucketing import BucketBatchSampler
from seqlit.data.collate import Sample, SequenceCollator
from seqlit.tasks.classifier import SequenceClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=1, help="callbacks' log interval (1 = worst case)")
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--figures", action="store_true", help="measure TaskFigures' share of training time instead")
    parser.add_argument("--figure-epochs", type=int, default=10)
    parser.add_argument("--recipes", nargs="*", default=list(FIGURE_RECIPES))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.figures:
        figures_share(args.recipes, args.figure_epochs)
        return

    samples, lengths = _long_tailed_samples(args.items)
    timings: dict[str, list[float]] = {"without": [], "with": []}
    tokens: dict[str, int] = {}
    for _ in range(args.rounds):
        for setting in ("without", "with"):
            callbacks: list[pl.Callback] = []
            if setting == "with":
                callbacks = [
                    GradNormMonitor(log_every_n_steps=args.log_every),
                    PaddingRatioMonitor(log_every_n_steps=args.log_every),
                ]
            seconds, n_tokens = _train(samples, lengths, callbacks, args.steps, args.log_every)
            timings[setting].append(seconds)
            tokens[setting] = n_tokens
    without = statistics.median(timings["without"])
    with_callbacks = statistics.median(timings["with"])
    ratio = (tokens["with"] / with_callbacks) / (tokens["without"] / without)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}")
    print(f"steps per run {args.steps}, rounds {args.rounds}, callbacks log every {args.log_every} step(s)")
    print(f"tokens/s without callbacks: {tokens['without'] / without:,.0f} (median of {args.rounds})")
    print(f"tokens/s with callbacks:    {tokens['with'] / with_callbacks:,.0f}")
    print(f"throughput ratio with/without: {ratio:.3f} (overhead {100 * (1 - ratio):.1f}%)")


def figures_share(recipes: list[str], epochs: int) -> None:
    """One fit per recipe at the base config's TaskFigures defaults; prints its drawing time / training time."""
    import tempfile
    from pathlib import Path

    from seqlit.callbacks import TaskFigures
    from seqlit.cli import TimedFitCLI, quiet_lightning

    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}")
    print("| recipe | epochs | training loop s | drawings | figures s | per drawing s | share of training |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for recipe in recipes:
        config = Path(recipe).resolve()
        with tempfile.TemporaryDirectory() as folder, quiet_lightning(), contextlib.chdir(folder):  # logs go to folder/runs
            cli = TimedFitCLI(args=[
                "fit", "--config", str(config), "--trainer.max_epochs", str(epochs),
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--test_after_fit", "false", "--run_name", "bench",
            ])
            callback = next(c for c in cli.trainer.callbacks if isinstance(c, TaskFigures))
            drawings = len(list(Path(cli.trainer.log_dir).glob("figures/epoch_*")))
        seconds, drawn = cli.train_seconds, callback.seconds_spent
        print(f"| {Path(recipe).stem} | {cli.trainer.current_epoch} | {seconds:.1f} | {drawings} | {drawn:.2f} | "
              f"{drawn / max(drawings, 1):.2f} | {100 * drawn / seconds:.1f}% |")


FIGURE_RECIPES = ("configs/japanese_vowels_gru.yaml", "configs/m1_yearly_gru.yaml")  # the two that fit in minutes


def _long_tailed_samples(n_items: int) -> tuple[list[Sample], list[int]]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.exp(torch.randn(n_items, generator=generator) * 0.6 + 3.5).clamp(5, 300).long().tolist()
    samples = [
        Sample(index=i, inputs=torch.randn(n, 32, generator=generator), target=torch.tensor(i % 5))
        for i, n in enumerate(lengths)
    ]
    return samples, lengths


def _train(
    samples: list[Sample], lengths: list[int], callbacks: list[pl.Callback], steps: int, log_every: int
) -> tuple[float, int]:
    pl.seed_everything(0, verbose=False)
    model = SequenceClassifier(32, 5, encoder={"class_path": "seqlit.nn.RNNEncoder",
                                               "init_args": {"cell": "lstm", "hidden_size": 128, "bidirectional": True}})
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0)
    loader = DataLoader(samples, batch_sampler=sampler, collate_fn=SequenceCollator())
    counter = _TokenCounter()
    trainer = pl.Trainer(
        max_steps=steps, logger=pl.loggers.CSVLogger("/tmp/seqlit-bench"), log_every_n_steps=log_every,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=1.0, limit_val_batches=0, callbacks=[counter, *callbacks],
    )
    started = time.perf_counter()
    trainer.fit(model, loader)
    return time.perf_counter() - started, counter.tokens


class _TokenCounter(pl.Callback):
    def __init__(self) -> None:
        self.tokens = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.tokens += batch.n_tokens


if __name__ == "__main__":
    main()
