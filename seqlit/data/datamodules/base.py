"""The one base of seqlit's data modules and the one group of loader settings they all take.

A data module provides data sets (each with `.lengths`) and a collate; `SeqlitDataModule` turns them into
the four loaders from a `LoaderSettings`, which YAML writes as a nested group:

    data:
      class_path: seqlit.data.datamodules.classification.SequenceClassificationDataModule
      init_args:
        dataset: japanese_vowels
        loader: {batch_size: 16, bucketing: true}
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from seqlit.data.datamodules.loaders import length_bucketed_loader, loader_options, sampler_seed
from seqlit.data.datamodules.resume import resume_position
from seqlit.errors import DataError

Stage = Literal["train", "val", "test", "predict"]


@dataclass(frozen=True)
class LoaderSettings:
    """How a data module batches and loads its items (`data.loader` in a config).

    Args:
        batch_size: items per training batch (for the language model: parallel token streams).
        eval_batch_size: items per validation / test / predict batch; None: the same as `batch_size`.
        max_tokens: cap on padded steps per batch (items x longest item); a batch closes at whichever of
            `batch_size` and `max_tokens` it reaches first. None: no token cap.
        bucketing: batch items of similar length (`False`: plain batches in shuffled or data set order).
        bucket_size_multiplier: items sorted together per pool = multiplier x batch_size; lower it for
            narrower length ranges per batch (less padding, less randomness); None: one pool per epoch.
        sampler_seed: seed of the batch order and worker seeds; None: the run's `seed_everything` seed.
        num_workers: loader worker processes; None: automatic (0 on CPU-only machines, up to 4 with a GPU).
        pin_memory: page-locked host batches for faster copies to the GPU; None: automatic (on when CUDA is
            available, decided when the loaders are built, so nothing touches CUDA at import or parse time).
    """

    batch_size: int = 32
    eval_batch_size: int | None = None
    max_tokens: int | None = None
    bucketing: bool = True
    bucket_size_multiplier: int | None = 100
    sampler_seed: int | None = None
    num_workers: int | None = None
    pin_memory: bool | None = None

    def __post_init__(self) -> None:
        _require_int("batch_size", self.batch_size, minimum=1, optional=False)
        _require_int("eval_batch_size", self.eval_batch_size, minimum=1)
        _require_int("max_tokens", self.max_tokens, minimum=1)
        _require_int("bucket_size_multiplier", self.bucket_size_multiplier, minimum=1)
        _require_int("sampler_seed", self.sampler_seed, minimum=0)
        _require_int("num_workers", self.num_workers, minimum=0)
        _require_bool("bucketing", self.bucketing, optional=False)
        _require_bool("pin_memory", self.pin_memory)

    def batch_size_for(self, stage: str) -> int:
        """Items per batch in `stage`: `batch_size` in training, `eval_batch_size` (or `batch_size`) otherwise."""
        if stage == "train" or self.eval_batch_size is None:
            return self.batch_size
        return self.eval_batch_size

    def changed_from_defaults(self) -> list[str]:
        """Names of the fields set to something other than the class default (for settings a module ignores)."""
        return [f.name for f in fields(self) if getattr(self, f.name) != f.default]


class SeqlitDataModule(pl.LightningDataModule):
    """Base of seqlit's data modules: the four loaders over `self.datasets[stage]`, built from `self.loader`.

    A subclass fills `self.datasets` (each data set with a `.lengths` array) in `setup` and sets `collate`;
    the train loader shuffles and resumes mid-epoch, the others keep data set order within length buckets
    and use `loader.eval_batch_size`. A module that batches another way overrides `dataloader_for`.
    """

    collate: Callable[[list[Any]], Any]
    # The task a config that names no model trains (`seqlit fit` with a data section only); a class path, so
    # data never imports tasks.
    default_task: str | None = None

    def __init__(self, loader: LoaderSettings) -> None:
        super().__init__()
        if not isinstance(loader, LoaderSettings):
            raise DataError(
                f"data.loader must be a LoaderSettings (a mapping such as {{batch_size: 16}} in YAML), "
                f"got {type(loader).__name__}."
            )
        self.loader = loader
        self.datasets: dict[str, Any] = {}

    def train_dataloader(self) -> DataLoader:
        return self.dataloader_for("train")

    def val_dataloader(self) -> DataLoader:
        return self.dataloader_for("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader_for("test")

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader_for("predict")

    def dataloader_for(self, stage: Stage) -> DataLoader:
        """A length-bucketed loader over the `stage` data set (shuffled and resumable in training)."""
        dataset = self.dataset_for(stage)
        training = stage == "train"
        return length_bucketed_loader(
            dataset,
            dataset.lengths.tolist(),
            self.collate,
            batch_size=self.loader.batch_size_for(stage),
            shuffle=training,
            bucketing=self.loader.bucketing,
            seed=self.seed,
            max_tokens=self.loader.max_tokens,
            bucket_size_multiplier=self.loader.bucket_size_multiplier,
            num_workers=self.loader.num_workers,
            pin_memory=self.loader.pin_memory,
            resume_from=self._resume_position if training else None,
        )

    def dataset_for(self, stage: str) -> Any:
        """The data set `setup` built for `stage`; a clear error if the loader is asked for before setup."""
        if stage not in self.datasets:
            raise RuntimeError(f"{stage}_dataloader called before setup")
        return self.datasets[stage]

    @property
    def seed(self) -> int:
        """The batch-order seed: `loader.sampler_seed`, else the run's `seed_everything` seed."""
        return sampler_seed(self.loader.sampler_seed)

    def worker_options(self, collate_fn: Callable[[list[Any]], Any]) -> dict[str, Any]:
        """DataLoader keyword arguments for a loader this module builds itself (workers, pinning, seeding)."""
        return loader_options(
            collate_fn, num_workers=self.loader.num_workers, pin_memory=self.loader.pin_memory, seed=self.seed
        )

    def _resume_position(self) -> tuple[int | None, int]:
        return resume_position(self.trainer)


def _require_int(name: str, value: Any, *, minimum: int, optional: bool = True) -> None:
    if value is None and optional:
        return
    as_int: int | None = None
    if not isinstance(value, bool):
        try:
            as_int = operator.index(value)
        except TypeError:
            as_int = None
    if as_int is None or as_int < minimum:
        allowed = f"an int >= {minimum}" + (" or null" if optional else "")
        raise DataError(f"data.loader.{name} must be {allowed}, got {value!r}.")


def _require_bool(name: str, value: Any, *, optional: bool = True) -> None:
    if isinstance(value, bool) or (value is None and optional):
        return
    allowed = "true, false or null (automatic)" if optional else "true or false"
    raise DataError(f"data.loader.{name} must be {allowed}, got {value!r}.")
