"""The loaders every seqlit data module builds: bucketed by length, seeded privately, resumable mid-epoch.

`seqlit.data.datamodules.base.SeqlitDataModule` calls these with its `LoaderSettings`; automatic settings
(workers, pinned memory) are resolved here, when a loader is built, never at import or config time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from seqlit.data.bucketing import BucketBatchSampler, resolve_num_replicas
from seqlit.errors import SettingError


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
            raise SettingError(f"num_workers must be >= 0 (or null for automatic), got {configured}.")
        return configured
    if not torch.cuda.is_available():
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def resolve_pin_memory(configured: bool | None) -> bool:
    """`None` (the default) pins host batches when CUDA is available: only then do they go to a GPU."""
    return torch.cuda.is_available() if configured is None else configured


def loader_options(
    collate_fn: Callable[[list[Any]], Any], *, num_workers: int | None, pin_memory: bool | None, seed: int
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
        "pin_memory": resolve_pin_memory(pin_memory),
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
    pin_memory: bool | None = False,
    resume_from: Callable[[], tuple[int | None, int]] | None = None,
) -> DataLoader:
    """A loader over `dataset` whose batches group items of similar `lengths` (plain batches if not `bucketing`).

    Shares `loader_options` (private worker-seed generator); `resume_from` tells the sampler where an
    interrupted epoch stopped (see `resume.resume_position`).
    """
    common = loader_options(collate_fn, num_workers=num_workers, pin_memory=pin_memory, seed=seed)
    # Under DDP Lightning gives a plain loader a padding DistributedSampler, which repeats items: harmless in
    # training, but evaluation would count them twice. There our sampler makes the plain batches instead, as it
    # does whenever a token cap is set (a plain DataLoader could not honour it).
    if not bucketing and max_tokens is None and (shuffle or resolve_num_replicas(None, None) == 1):
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
