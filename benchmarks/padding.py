"""Padding and real-token throughput of plain random batching vs length bucketing (`BucketBatchSampler`).

For each data set, one training epoch is run with each batching at the same batch size:

- random: `DataLoader(shuffle=True)`, fixed batch size (what `data.loader.bucketing: false` gives);
- bucketed: seqlit's `BucketBatchSampler` (the default of every seqlit data module);

both built by `seqlit.data.datamodules.loaders.length_bucketed_loader`, as the data modules do.

Data sets:

- `japanese_vowels`: all 640 utterances (train + test) of JapaneseVowels (aeon), 12 LPC features, 9 speakers;
- `cmudict`: G2P source words as character ids (`Seq2SeqDataModule`'s training items, a seeded sample of
  `--cmudict-items`), embedded to 64 dims by an `nn.Embedding`; label: the first phoneme;
- `long_tailed`: the seeded synthetic set of `benchmarks/callback_overhead.py` (log-normal lengths,
  exp(N(3.5, 0.6)) clipped to [5, 300]; `--synthetic-items` sequences of 32 features, 5 classes).

Measured per epoch:

- padding ratio: padded steps / all steps of the padded (B, T) grid, summed over the epoch's batches;
- real tokens/s: non-pad steps / wall time of the epoch, for a small model trained on it: seqlit's
  `RNNEncoder` (GRU; its variable-length path: packed on GPU, length segments on CPU) + linear head on the last state, forward,
  backward and AdamW step per batch;
- batch building share: time spent getting batches from the loader (sampler, `__getitem__`, collate) /
  epoch time, to show collating is not the bottleneck.

The two batchings alternate for `--rounds` rounds in one process (machines are noisy; only figures
measured side by side mean anything); the table shows medians and the bucketed/random ratio. The
epoch's shuffle is seeded by the round, the same for both batchings, and every run starts from the same
initial weights. CPU only, torch's default thread count.

    python benchmarks/padding.py [--rounds 5] [--datasets japanese_vowels cmudict long_tailed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from seqlit.data.collate import Sample, SequenceCollator
from seqlit.data.datamodules.loaders import length_bucketed_loader
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule
from seqlit.data.sources import load_japanese_vowels
from seqlit.nn.encoders import RNNEncoder
from seqlit.padding import padding_fraction
from seqlit.types import PAD_ID, SeqBatch

# Helpers of the other benchmarks (scripts run from benchmarks/, which is then on sys.path).
from callback_overhead import _long_tailed_samples
from quiet_fit import quiet_logging

DATASETS: tuple[str, ...] = ("japanese_vowels", "cmudict", "long_tailed")
BATCHINGS: tuple[str, ...] = ("random", "bucketed")
EMBEDDING_DIM = 64
# The acceptance on the long-tailed set.
MAX_BUCKETED_PADDING = 0.05
MIN_RANDOM_PADDING = 0.30
MIN_THROUGHPUT_RATIO = 1.5


@dataclass
class BenchData:
    """One data set ready for `SequenceCollator`: samples, their lengths and what the model needs to know."""

    name: str
    samples: list[Sample]  # inputs (T, F) float, or (T,) long token ids when vocab_size is set
    lengths: list[int]
    n_classes: int
    n_features: int  # features per step (the embedding size for token ids)
    vocab_size: int | None = None


@dataclass
class EpochStats:
    """What one training epoch cost and how much of its grid was padding."""

    seconds: float
    batch_seconds: float  # inside the loader: sampler, __getitem__, collate
    real_tokens: int
    pad_tokens: int
    n_batches: int

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds

    @property
    def padding_ratio(self) -> float:
        return padding_fraction(self.real_tokens, self.pad_tokens)

    @property
    def batch_share(self) -> float:
        return self.batch_seconds / self.seconds


@dataclass
class Measurements:
    """Every round's epoch per batching, for one data set."""

    epochs: dict[str, list[EpochStats]] = field(default_factory=lambda: {b: [] for b in BATCHINGS})

    def median(self, batching: str, key: str) -> float:
        return statistics.median(getattr(epoch, key) for epoch in self.epochs[batching])

    def ratios(self) -> list[float]:
        """Bucketed / random real tokens/s of each round."""
        return [
            bucketed.tokens_per_second / random.tokens_per_second
            for random, bucketed in zip(self.epochs["random"], self.epochs["bucketed"])
        ]


class PackedGRUClassifier(nn.Module):
    """Optional embedding, seqlit's packed `RNNEncoder` (GRU) and a linear head on the last valid state."""

    def __init__(self, n_features: int, n_classes: int, hidden_size: int, vocab_size: int | None = None) -> None:
        super().__init__()
        self.embedding = None if vocab_size is None else nn.Embedding(vocab_size, n_features, padding_idx=PAD_ID)
        self.encoder = RNNEncoder(n_features, hidden_size, cell="gru")
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """inputs (B, T, F) float or (B, T) ids, lengths (B,) -> logits (B, C)."""
        features = inputs if self.embedding is None else self.embedding(inputs)  # (B, T, F)
        encoded = self.encoder(features, lengths)  # hidden (1, B, H)
        return self.head(encoded.hidden[-1])  # (B, C)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="epochs per batching, alternating random/bucketed")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--cmudict-items", type=int, default=8000, help="CMUdict training items sampled")
    parser.add_argument("--synthetic-items", type=int, default=3000, help="sequences in the long-tailed set")
    parser.add_argument("--warmup-batches", type=int, default=5, help="untimed batches per batching first")
    args = parser.parse_args()
    quiet_logging()

    started = time.perf_counter()
    print(f"device: cpu, torch threads {torch.get_num_threads()}, batch size {args.batch_size}, "
          f"GRU hidden {args.hidden_size}, rounds {args.rounds} (random/bucketed alternating)", flush=True)
    results: list[tuple[BenchData, Measurements]] = []
    for name in args.datasets:
        data = load_data(name, args)
        results.append((data, measure(data, args)))
        print(f"{name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    print_table(results)
    print_acceptance(results)
    print(f"\nwall time {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f} "
          f"(if well above {torch.get_num_threads()}, the threads used here, other processes competed: noisy figures)")


# ---- data ---------------------------------------------------------------------------------------------------
def load_data(name: str, args: argparse.Namespace) -> BenchData:
    if name == "japanese_vowels":
        return japanese_vowels()
    if name == "cmudict":
        return cmudict_words(args.cmudict_items)
    return long_tailed(args.synthetic_items)


def japanese_vowels() -> BenchData:
    """All 640 utterances (official train + test), (T, 12) LPC cepstra labelled by speaker."""
    records = [load_japanese_vowels("train"), load_japanese_vowels("test")]
    sequences = [sequence for part in records for sequence in part.sequences]  # each (T, 12)
    labels = [str(label) for part in records for label in part.labels]  # type: ignore[union-attr]
    classes = {label: i for i, label in enumerate(sorted(set(labels)))}
    samples = [
        Sample(index=i, inputs=torch.from_numpy(x), target=torch.tensor(classes[label]))
        for i, (x, label) in enumerate(zip(sequences, labels))
    ]
    return BenchData("japanese_vowels", samples, [len(x) for x in sequences], len(classes), sequences[0].shape[1])


def cmudict_words(n_items: int) -> BenchData:
    """A seeded sample of the G2P training items: the word as (S,) character ids, labelled by its first phoneme."""
    datamodule = Seq2SeqDataModule(dataset="cmudict")
    datamodule.setup("fit")
    train = datamodule.datasets["train"]
    assert train.targets is not None, "training items have targets"
    chosen = np.random.default_rng(0).permutation(len(train))[:n_items].tolist()
    samples = [
        Sample(
            index=i,
            inputs=torch.tensor(train.sources[item], dtype=torch.long),  # (S,)
            target=torch.tensor(train.targets[item][0]),
        )
        for i, item in enumerate(chosen)
    ]
    return BenchData(
        "cmudict", samples, [len(train.sources[item]) for item in chosen],
        n_classes=len(datamodule.target_tokens), n_features=EMBEDDING_DIM, vocab_size=len(datamodule.source_tokens),
    )


def long_tailed(n_items: int) -> BenchData:
    samples, lengths = _long_tailed_samples(n_items)  # inputs (T, 32), 5 classes
    return BenchData("long_tailed", samples, lengths, n_classes=5, n_features=32)


def loader_for(data: BenchData, batching: str, batch_size: int, seed: int) -> DataLoader:
    return length_bucketed_loader(
        data.samples, data.lengths, SequenceCollator(),
        batch_size=batch_size, shuffle=True, bucketing=batching == "bucketed", seed=seed,
    )


# ---- training -----------------------------------------------------------------------------------------------
def measure(data: BenchData, args: argparse.Namespace) -> Measurements:
    """Alternates random and bucketed epochs for `args.rounds` rounds, after an untimed warm-up of each."""
    for batching in BATCHINGS:
        train_epoch(data, loader_for(data, batching, args.batch_size, seed=0), args.hidden_size, args.warmup_batches)
    measurements = Measurements()
    for round_index in range(args.rounds):
        for batching in BATCHINGS:
            loader = loader_for(data, batching, args.batch_size, seed=round_index)
            measurements.epochs[batching].append(train_epoch(data, loader, args.hidden_size))
    return measurements


def train_epoch(data: BenchData, loader: DataLoader, hidden_size: int, max_batches: int | None = None) -> EpochStats:
    """One epoch (or its first `max_batches`) of a freshly initialised model; the loader's time is counted apart."""
    torch.manual_seed(0)  # the same initial weights for every run
    model = PackedGRUClassifier(data.n_features, data.n_classes, hidden_size, data.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    real_tokens = pad_tokens = n_batches = 0
    batch_seconds = 0.0
    started = time.perf_counter()
    for batch, fetch_seconds in timed_batches(loader):
        batch_seconds += fetch_seconds
        train_step(model, optimizer, batch)
        real_tokens += batch.n_tokens
        pad_tokens += batch.n_pad
        n_batches += 1
        if n_batches == max_batches:
            break
    seconds = time.perf_counter() - started
    return EpochStats(seconds, batch_seconds, real_tokens, pad_tokens, n_batches)


def timed_batches(loader: DataLoader) -> Iterator[tuple[SeqBatch, float]]:
    """The loader's batches, each with the seconds spent producing it (the first includes building the plan)."""
    fetch_started = time.perf_counter()
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch, time.perf_counter() - fetch_started
        fetch_started = time.perf_counter()


def train_step(model: PackedGRUClassifier, optimizer: torch.optim.Optimizer, batch: SeqBatch) -> None:
    logits = model(batch.inputs, batch.lengths)  # (B, C)
    loss = F.cross_entropy(logits, batch.targets, reduction="sum") / batch.batch_size
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


# ---- report -------------------------------------------------------------------------------------------------
def print_table(results: list[tuple[BenchData, Measurements]]) -> None:
    header = (
        "data set", "items", "mean len (max)", "batches/epoch",
        "padding random", "padding bucketed",
        "real tok/s random", "real tok/s bucketed", "bucketed/random (rounds min-max)",
        "batch building share random", "batch building share bucketed",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for data, m in results:
        ratios = m.ratios()
        throughput = {b: m.median(b, "tokens_per_second") for b in BATCHINGS}
        cells = (
            data.name,
            f"{len(data.samples)}",
            f"{statistics.mean(data.lengths):.1f} ({max(data.lengths)})",
            f"{m.epochs['random'][0].n_batches}",
            f"{m.median('random', 'padding_ratio'):.1%}",
            f"{m.median('bucketed', 'padding_ratio'):.1%}",
            f"{throughput['random']:,.0f}",
            f"{throughput['bucketed']:,.0f}",
            f"{throughput['bucketed'] / throughput['random']:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
            f"{m.median('random', 'batch_share'):.1%}",
            f"{m.median('bucketed', 'batch_share'):.1%}",
        )
        print("| " + " | ".join(cells) + " |")
    print("\npadding = padded steps / all steps of the padded grid over one epoch; real tok/s = non-pad steps per "
          "second of a training epoch (median over rounds); batch building = sampler + __getitem__ + collate.")


def print_acceptance(results: list[tuple[BenchData, Measurements]]) -> None:
    for data, m in results:
        if data.name != "long_tailed":
            continue
        random_padding = m.median("random", "padding_ratio")
        bucketed_padding = m.median("bucketed", "padding_ratio")
        ratio = m.median("bucketed", "tokens_per_second") / m.median("random", "tokens_per_second")
        checks = (
            (f"bucketed padding {bucketed_padding:.1%} <= {MAX_BUCKETED_PADDING:.0%}",
             bucketed_padding <= MAX_BUCKETED_PADDING),
            (f"random padding {random_padding:.1%} >= {MIN_RANDOM_PADDING:.0%}", random_padding >= MIN_RANDOM_PADDING),
            (f"bucketed/random real tok/s {ratio:.2f}x >= {MIN_THROUGHPUT_RATIO}x", ratio >= MIN_THROUGHPUT_RATIO),
        )
        print("\nacceptance (long_tailed): " + "; ".join(f"{text}: {'yes' if ok else 'NO'}" for text, ok in checks))


if __name__ == "__main__":
    main()
