"""The loaders every seqlit data module builds: bucketed by length, seeded privately, resumable mid-epoch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from seqlit.data.bucketing import BucketBatchSampler, resolve_num_replicas
from seqlit.data.datamodules.resume import resume_position


def sampler_seed(configured: int | None) -> int:
    """The configured seed, else the run's `seed_everything` seed, so seeds change batch order."""
    if configured is not None:
        return configured
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def resolve_num_workers(configured: int | None) -> int:
    """`None` (the default) picks loader worker processes for the machine.

    On CPU-only machines 0: collating padded batches is cheap next to an RNN step, and workers would take
    cores from the model's own kernels. With a GPU, half the cores up to 4, so batches are built
    while the GPU computes.
    """
    if configured is not None:
        if configured < 0:
            raise ValueError(f"num_workers must be >= 0 (or null for automatic), got {configured}.")
        return configured
    if not torch.cuda.is_available():
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def loader_options(
    collate_fn: Callable[[list[Any]], Any], *, num_workers: int | None, pin_memory: bool, seed: int
) -> dict[str, Any]:
    """DataLoader keyword arguments every seqlit loader shares.

    A private generator seeds worker base seeds, so creating an iterator never draws from the global
    RNG: a resumed run then sees the same dropout masks as an uninterrupted one. Workers, when there are
    any, persist across epochs and keep two batches each in flight.
    """
    workers = resolve_num_workers(num_workers)
    options: dict[str, Any] = {
        "collate_fn": collate_fn,
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": workers > 0,
        "generator": torch.Generator().manual_seed(seed),
    }
    if workers > 0:
        options["prefetch_factor"] = 2
    return options


def length_bucketed_loader(
    dataset: Dataset[Any],
    lengths: Sequence[int],
    collate_fn: Callable[[list[Any]], Any],
    *,
    batch_size: int,
    shuffle: bool,
    bucketing: bool,
    seed: int,
    max_tokens: int | None = None,
    bucket_size_multiplier: int | None = 100,
    num_workers: int | None = None,
    pin_memory: bool = False,
    resume_from: Callable[[], tuple[int | None, int]] | None = None,
) -> DataLoader:
    """A loader over `dataset` whose batches group items of similar `lengths` (plain batches if not `bucketing`).

    Shares `loader_options` (private worker-seed generator); `resume_from` tells the sampler where an
    interrupted epoch stopped (see `resume.resume_position`).
    """
    common = loader_options(collate_fn, num_workers=num_workers, pin_memory=pin_memory, seed=seed)
    # Under DDP Lightning gives a plain loader a padding DistributedSampler, which repeats items: harmless in
    # training, but evaluation would count them twice. There our sampler makes the plain batches instead.
    if not bucketing and (shuffle or resolve_num_replicas(None, None) == 1):
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **common)
    sampler = BucketBatchSampler(
        list(lengths),
        batch_size=batch_size,
        max_tokens=max_tokens,
        shuffle=shuffle,
        seed=seed,
        bucket_size_multiplier=bucket_size_multiplier,
        resume_from=resume_from,
        sort_by_length=bucketing,
    )
    return DataLoader(dataset, batch_sampler=sampler, **common)


class LengthBucketedDataModule(pl.LightningDataModule):
    """Base for seqlit data modules: the four loaders over `self.datasets[stage]` (each with `.lengths`).

    Subclasses set the attributes below in `__init__` and fill `self.datasets` in `setup`; the train
    loader shuffles and resumes mid-epoch, the others keep data set order within length buckets.
    """

    datasets: dict[str, Any]
    collate: Callable[[list[Any]], Any]
    batch_size: int
    bucketing: bool
    sampler_seed: int | None
    max_tokens: int | None
    bucket_size_multiplier: int | None
    num_workers: int | None
    pin_memory: bool

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)

    def batch_size_for(self, stage: str) -> int:
        """Items per batch for `stage` (subclasses may evaluate in larger batches)."""
        return self.batch_size

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        if stage not in self.datasets:
            raise RuntimeError(f"{stage}_dataloader called before setup")
        dataset = self.datasets[stage]
        return length_bucketed_loader(
            dataset,
            dataset.lengths.tolist(),
            self.collate,
            batch_size=self.batch_size_for(stage),
            shuffle=shuffle,
            bucketing=self.bucketing,
            seed=sampler_seed(self.sampler_seed),
            max_tokens=self.max_tokens,
            bucket_size_multiplier=self.bucket_size_multiplier,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            resume_from=self._resume_position if stage == "train" else None,
        )

    def _resume_position(self) -> tuple[int | None, int]:
        return resume_position(self.trainer)
