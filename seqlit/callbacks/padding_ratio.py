"""Measures how much of every training batch is padding and how fast real tokens flow, so the compute
that unbucketed variable-length batches waste is logged and flagged instead of silently paid for."""

from __future__ import annotations

import math
import operator
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from seqlit.padding import padding_fraction, random_batching_padding_ratio


class PaddingRatioMonitor(pl.Callback):
    """Logs the padding share and real-token throughput of training batches; warns when padding is high.

    Reads any batch with `n_tokens` and `n_pad` attributes (a `seqlit.types.SeqBatch`); other batch
    types are skipped after one warning.

    Logged keys:
        - `data/padding_ratio` (step): padded steps / (real + padded steps) of the batch.
        - `data/tokens_per_sec` (step): real (non-pad) steps per second of wall time since the previous
          logged batch, so data loading counts; the first batch of an epoch is timed from the epoch start.
        - `data/padding_ratio_epoch` (epoch): all padding over the whole padded grid of the epoch, i.e.
          weighted by tokens, not the mean of per-batch ratios (a few huge batches dominate the cost).
        - `data/tokens_per_sec_epoch` (epoch): real steps of the epoch / its wall time.
        - `data/padding_ratio_random` (epoch, when the loader's item lengths are known): the mean padding
          ratio of `random_trials` seeded random batchings of the same lengths and batch size, the
          figure bucketing is to be judged against.

    Validation runs inside a training epoch are left out of the timing. Times are host wall clock
    (`time.perf_counter`) with no CUDA synchronisation, on purpose: syncing every step would slow the
    run it measures. GPU work is queued asynchronously, so per-step rates are noisy on CUDA; the epoch
    rate averages that out. Under DDP the per-step values are this rank's, the epoch values are summed
    over all ranks (one small all-reduce at epoch end).

    Args:
        warn_above: warn (once per fit) when an epoch's padding ratio exceeds this fraction.
        log_every_n_steps: log step values every n training batches, counted over the fit like the
            trainer's own `log_every_n_steps`, which still decides which steps reach the logger. None (the
            default) takes the trainer's value: logging a step the trainer does not write costs ~1 ms of
            Lightning bookkeeping for nothing. Otherwise pick a divisor of the trainer's value: where the
            trainer writes a step that this callback skipped, Lightning re-sends the callback's previous
            value. `data/tokens_per_sec` then covers all batches since the last logged one.
        compare_random: compute `data/padding_ratio_random` and print a one-line comparison.
        random_trials: random batchings averaged for that comparison.
    """

    def __init__(
        self,
        warn_above: float = 0.3,
        log_every_n_steps: int | None = None,
        compare_random: bool = True,
        random_trials: int = 5,
    ) -> None:
        super().__init__()
        self.warn_above = _fraction("warn_above", warn_above)
        self.log_every_n_steps = (
            None if log_every_n_steps is None else _positive_int("log_every_n_steps", log_every_n_steps)
        )
        if not isinstance(compare_random, bool):
            raise ValueError(f"compare_random must be True or False, got {compare_random!r}.")
        self.compare_random = compare_random
        self.random_trials = _positive_int("random_trials", random_trials)
        self.random_ratio: float | None = None
        self._warned = False
        self._warned_unmeasurable = False
        self._reported_comparison = False
        self._batches_seen = 0
        self._reset_epoch()

    # ---- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Starts a fresh fit: the once-per-fit warnings may fire again (a checkpoint restores `warned` later)."""
        if stage == "fit":
            self._warned = False
            self._warned_unmeasurable = False
            self._reported_comparison = False
            self._batches_seen = 0
            self.random_ratio = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Simulates random batching of the training loader's lengths, when the loader exposes them."""
        if not self.compare_random:
            return
        batching = _lengths_and_batch_size(trainer.train_dataloader)
        if batching is not None:
            lengths, batch_size = batching
            self.random_ratio = random_batching_padding_ratio(lengths, batch_size, self.random_trials)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset_epoch()
        self._epoch_start = self._window_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self._batches_seen += 1
        counts = _token_counts(batch)
        if counts is None:
            self._warn_unmeasurable(batch)
            # This batch's time belongs to no counted tokens, so the next rate starts after it.
            self._window_start, self._window_tokens = now, 0
            return
        n_tokens, n_pad = counts
        self._epoch_tokens += n_tokens
        self._epoch_pad += n_pad
        self._window_tokens += n_tokens
        # Counted over the fit, not per epoch, to stay in step with the trainer's own logging cadence.
        if self._batches_seen % (self.log_every_n_steps or max(trainer.log_every_n_steps, 1)) != 0:
            return
        batch_size = _batch_size(batch)
        pl_module.log(
            "data/padding_ratio", padding_fraction(n_tokens, n_pad), on_step=True, on_epoch=False, batch_size=batch_size
        )
        window_start = now if self._window_start is None else self._window_start
        elapsed = now - window_start
        if elapsed > 0:
            pl_module.log(
                "data/tokens_per_sec",
                self._window_tokens / elapsed,
                on_step=True,
                on_epoch=False,
                batch_size=batch_size,
            )
        self._window_start, self._window_tokens = now, 0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Only validation inside a running training epoch is paused; sanity checks come before any epoch.
        if self._epoch_start is not None:
            self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._validation_start is None:
            return
        paused = time.perf_counter() - self._validation_start
        self._validation_start = None
        if self._epoch_start is not None:
            self._epoch_start += paused
        if self._window_start is not None:
            self._window_start += paused

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        epoch_start = now if self._epoch_start is None else self._epoch_start
        # Every rank reaches this collective, even one that measured nothing, so DDP cannot hang here.
        n_tokens, n_pad = self._summed_over_ranks(trainer, pl_module, self._epoch_tokens, self._epoch_pad)
        self._reset_epoch()
        if n_tokens + n_pad == 0:
            return
        ratio = padding_fraction(n_tokens, n_pad)
        # The values are already global; sync_dist only averages identical numbers and keeps Lightning
        # from warning about unsynced epoch metrics under DDP.
        epoch_log: dict[str, Any] = {"on_step": False, "on_epoch": True, "batch_size": 1, "sync_dist": True}
        pl_module.log("data/padding_ratio_epoch", ratio, **epoch_log)
        elapsed = now - epoch_start
        if elapsed > 0:
            pl_module.log("data/tokens_per_sec_epoch", n_tokens / elapsed, **epoch_log)
        if self.random_ratio is not None:
            pl_module.log("data/padding_ratio_random", self.random_ratio, **epoch_log)
            if not self._reported_comparison:
                _say(trainer, f"padding ratio: this loader {ratio:.3f} (first epoch), "
                              f"random batching would give {self.random_ratio:.3f}")
        self._reported_comparison = True
        if ratio > self.warn_above and not self._warned:
            self._warned = True
            random_note = "" if self.random_ratio is None else f" (random batching: {self.random_ratio:.1%})"
            rank_zero_warn(
                f"{ratio:.1%} of the padded training steps this epoch were padding{random_note}, above "
                f"warn_above={self.warn_above}: that share of the RNN compute is wasted. Batch similar lengths "
                "together: enable data.loader.bucketing (BucketBatchSampler), or if it is on, lower "
                "data.loader.bucket_size_multiplier so each bucket spans a narrower range of lengths."
            )

    def state_dict(self) -> dict[str, Any]:
        return {"warned": self._warned, "batches_seen": self._batches_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._warned = bool(state_dict.get("warned", False))
        # Restored so a resumed run keeps logging on the same steps as the trainer.
        self._batches_seen = int(state_dict.get("batches_seen", 0))

    # ---- helpers -----------------------------------------------------------------------------------
    def _reset_epoch(self) -> None:
        self._epoch_tokens = 0
        self._epoch_pad = 0
        self._window_tokens = 0
        self._epoch_start: float | None = None
        self._window_start: float | None = None
        self._validation_start: float | None = None

    def _warn_unmeasurable(self, batch: Any) -> None:
        if self._warned_unmeasurable:
            return
        self._warned_unmeasurable = True
        rank_zero_warn(
            f"PaddingRatioMonitor cannot measure batches of type {type(batch).__name__}: it reads their "
            "`n_tokens` and `n_pad` attributes (as on seqlit.types.SeqBatch). Such batches are skipped; "
            "collate with seqlit's SequenceCollator to get padding statistics."
        )

    @staticmethod
    def _summed_over_ranks(
        trainer: pl.Trainer, pl_module: pl.LightningModule, n_tokens: int, n_pad: int
    ) -> tuple[int, int]:
        if trainer.world_size <= 1:
            return n_tokens, n_pad
        # int64 keeps counts exact at any scale and all-reduces on both gloo and NCCL.
        totals = torch.tensor([n_tokens, n_pad], dtype=torch.long, device=pl_module.device)
        summed = trainer.strategy.reduce(totals, reduce_op="sum")
        return int(summed[0]), int(summed[1])


def _lengths_and_batch_size(loader: Any) -> tuple[np.ndarray, int] | None:
    """Item lengths and samples per batch of a training loader, or None when it does not expose them.

    A length-aware batch sampler (`lengths`, `batch_size`, optional `max_tokens`) is asked first; a plain
    DataLoader falls back to its data set's `lengths` and its batch sampler's `batch_size`.
    """
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is None:
        return None
    sampler_lengths = _as_lengths(getattr(batch_sampler, "lengths", None))
    if sampler_lengths is not None:
        batch_size = _optional_int(getattr(batch_sampler, "batch_size", None))
        if batch_size is None and getattr(batch_sampler, "max_tokens", None) is not None:
            # Only a token cap: compare with random batches as large as the plan's batches on average.
            # len(batch_sampler) counts this rank's batches, the lengths cover every rank's items.
            n_batches = len(batch_sampler) * int(getattr(batch_sampler, "num_replicas", 1))
            batch_size = max(1, round(sampler_lengths.size / n_batches)) if n_batches else None
        return None if batch_size is None or batch_size < 1 else (sampler_lengths, batch_size)
    dataset = getattr(loader, "dataset", None)
    dataset_lengths = _as_lengths(getattr(dataset, "lengths", None))
    batch_size = _optional_int(getattr(batch_sampler, "batch_size", None))
    if dataset_lengths is None or batch_size is None or batch_size < 1:
        return None
    try:
        n_items = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None
    # A `lengths` of another size describes something else (e.g. a source before filtering).
    return (dataset_lengths, batch_size) if dataset_lengths.size == n_items else None


def _as_lengths(candidate: Any) -> np.ndarray | None:
    """`candidate` as a 1-D int array of item lengths, or None if it is not one (e.g. a method)."""
    if candidate is None or callable(candidate):
        return None
    try:
        values = np.asarray(candidate)
    except (TypeError, ValueError):
        return None
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
        return None
    return values


def _optional_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _token_counts(batch: Any) -> tuple[int, int] | None:
    """(real steps, padded steps) of a batch that carries them, else None."""
    n_tokens = getattr(batch, "n_tokens", None)
    n_pad = getattr(batch, "n_pad", None)
    if n_tokens is None or n_pad is None:
        return None
    return int(n_tokens), int(n_pad)


def _batch_size(batch: Any) -> int:
    # Given explicitly so Lightning never tries to infer it from a custom batch type.
    size = getattr(batch, "batch_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 1


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1] (e.g. 0.3 for 30% padding), got {value!r}.")
    return float(value)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive int, got {value!r}.") from None
    if as_int < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value!r}.")
    return as_int


def _say(trainer: pl.Trainer, message: str) -> None:
    """One line on the console: through a running tqdm bar (which clears and redraws itself around it) when there is
    one, else as Lightning's rank-zero info line."""
    bar = trainer.progress_bar_callback
    if isinstance(bar, TQDMProgressBar) and bar.is_enabled:
        bar.print(message)
    else:
        rank_zero_info(message)


__all__ = ["PaddingRatioMonitor"]

