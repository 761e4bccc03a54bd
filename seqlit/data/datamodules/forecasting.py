"""Forecasting data: M1 yearly or the user's long-format panel, cut into context/horizon windows by time
(last horizon = test, the one before = validation, rolling origins for backtests) or by entity, scaled
from the past only, audited on every setup, augmented in training only."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from seqlit.data.collate import ForecastCollator
from seqlit.data.datamodules.base import LoaderSettings, SeqlitDataModule
from seqlit.data.datasets import ForecastWindowDataset
from seqlit.data.forecasting import (
    ForecastSplit,
    Windows,
    audit_forecast_split,
    audit_scaler,
    chronological_holdout,
    entity_holdout,
    forecast_origins,
)
from seqlit.data.functional import step_dropout, time_jitter
from seqlit.data.scaling import CovariateNormalizer, ScalingName, make_scaler
from seqlit.data.sources import SeriesPanel, load_m1_yearly, load_panel, panel_from_frame
from seqlit.errors import DataError, check_checkpoint_matches
from seqlit.types import ForecastBatch
from seqlit.validation import require_fraction, require_int_at_least

M1_YEARLY_HORIZON = 6
DEFAULT_MAX_CONTEXT_LENGTH = 10_000  # steps an RNN unrolls per window; set context_length to cut longer histories
DEFAULT_LOADER = LoaderSettings(batch_size=64)


class ForecastingDataModule(SeqlitDataModule):
    """Windows of many series for multi-horizon forecasting.

    Args:
        dataset: `m1_yearly` (181 series bundled with aeon, horizon 6) or `long_format` (`path`: a
            CSV/TSV/Parquet file with `entity, time, target, covariates...` rows).
        horizon: steps to forecast (default 6 for M1; required for long_format).
        seasonality: season length m for MASE's in-sample scale and the seasonal naive baseline (1 = yearly).
        split: `chronological` (every series' last horizon is test, the one before validation) or `entity`
            (whole series held out, `val_fraction` / `test_fraction` of the entities, `split_seed`).
        fold / fold_step: rolling-origin backtest: fold k moves both origins k * fold_step steps back.
        context_length: steps of history the model reads (None: everything before the origin).
        max_context_length: a size guard (default `DEFAULT_MAX_CONTEXT_LENGTH` = 10,000 steps; null: no limit): a
            window whose context is longer is refused, naming `context_length` as the way to cut contexts.
        min_context: shortest context a window may have; stride: steps between training cuts.
        partial_windows: also train on windows whose horizon runs past the training span (masked).
        scaling: `context` (per window: last value and mean absolute change of the context), `series`
            (per series mean/std of its training span) or `none`. Audited on every setup.
        missing: `error` on a NaN target (naming entity and time) or `mask` it out of loss and metrics.
        jitter / step_dropout: training-only augmentation of the context (noise of `jitter` x each
            series' std; each step but the last hidden with probability `step_dropout`).
        loader: batching and loading (`LoaderSettings`); None: `DEFAULT_LOADER`, 64 windows per batch (also in
            evaluation), bucketed by context length.
    """

    default_task = "seqlit.tasks.Forecaster"

    def __init__(
        self,
        dataset: Literal["m1_yearly", "long_format"] = "m1_yearly",
        path: str | None = None,
        entity_column: str = "entity",
        time_column: str = "time",
        target_column: str = "target",
        covariate_columns: list[str] | None = None,
        horizon: int | None = None,
        seasonality: int = 1,
        split: Literal["chronological", "entity"] = "chronological",
        fold: int = 0,
        fold_step: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        context_length: int | None = None,
        max_context_length: int | None = DEFAULT_MAX_CONTEXT_LENGTH,
        min_context: int = 3,
        stride: int = 1,
        partial_windows: bool = True,
        scaling: ScalingName = "context",
        missing: Literal["error", "mask"] = "error",
        jitter: float = 0.0,
        step_dropout: float = 0.0,
        loader: LoaderSettings | None = None,
    ) -> None:
        super().__init__(loader or DEFAULT_LOADER)
        if dataset not in ("m1_yearly", "long_format"):
            raise DataError(f"unknown dataset {dataset!r}; choose 'm1_yearly' or 'long_format'.")
        if dataset == "long_format" and (path is None or horizon is None):
            raise DataError("dataset 'long_format' needs data.path (a CSV/TSV/Parquet file) and data.horizon.")
        if split not in ("chronological", "entity"):
            raise DataError(f"unknown data.split {split!r}; choose 'chronological' or 'entity'.")
        if split == "entity" and fold:
            raise DataError("data.fold (rolling origins) applies to split: chronological; set fold: 0 with entity.")
        if seasonality < 1:
            raise DataError(f"data.seasonality must be >= 1 (1 for yearly data), got {seasonality}.")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            require_fraction(f"data.{name}", value)
        if not 0.0 <= step_dropout < 1.0 or jitter < 0.0:
            raise DataError(f"data.jitter must be >= 0 and data.step_dropout in [0, 1); got {jitter}, {step_dropout}.")
        self.dataset = dataset
        self.path = path
        self.columns = {"entity_column": entity_column, "time_column": time_column, "target_column": target_column,
                        "covariate_columns": list(covariate_columns or [])}
        self.horizon = horizon if horizon is not None else M1_YEARLY_HORIZON
        self.seasonality = seasonality
        self.split_mode = split
        self.fold = fold
        self.fold_step = fold_step
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.context_length = context_length
        if max_context_length is not None:
            require_int_at_least("data.max_context_length", max_context_length, 1)
        self.max_context_length = max_context_length
        self.min_context = min_context
        self.stride = stride
        self.partial_windows = partial_windows
        self.scaling = scaling
        self.missing = missing
        self.jitter = jitter
        self.step_dropout = step_dropout
        self.scaler = make_scaler(scaling)
        self.covariate_normalizer = CovariateNormalizer()
        self.collate = ForecastCollator()

    # Sizes the CLI links into the model (apply_on="instantiate").
    @property
    def n_features(self) -> int:
        return 1 + int(self.missing == "mask") + len(self.columns["covariate_columns"])

    def setup(self, stage: str) -> None:
        panel, split = self.panel, self.split
        if self.covariate_normalizer.mean is None:
            self.covariate_normalizer.fit(panel, split.fit_limits)
        self.scaler.fit(panel, split.fit_limits)
        for name in ("train", "val", "test"):
            self.datasets[name] = self._dataset(split.stage(name))
        for name in ("val", "test"):
            self._warn_undefined_mase(name)
        if stage == "predict":
            windows = forecast_origins(panel.lengths, min_context=self.min_context, context_length=self.context_length)
            self._check_context_lengths("predict", windows)
            self.datasets["predict"] = self._dataset(windows)

    def item_ids(self, stage: str) -> list[str]:
        """`entity@origin time` of each window, by dataset index (labels the predictions CSV)."""
        dataset = self.datasets[stage]
        return [dataset.item_id(i) for i in range(len(dataset))]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augments the context of training batches only (validation, test and predict see real data)."""
        trainer = self.trainer
        if not isinstance(batch, ForecastBatch) or trainer is None or not trainer.training:
            return batch
        return self.augment(batch)

    def augment(self, batch: ForecastBatch) -> ForecastBatch:
        """Jitters the target channel and hides random context steps (never the last one, the anchor)."""
        if self.jitter == 0.0 and self.step_dropout == 0.0:
            return batch
        inputs = batch.inputs.clone()  # (B, T, F)
        target = inputs[..., :1]  # (B, T, 1)
        if self.jitter > 0.0:
            target = time_jitter(target, batch.mask, self.jitter)
        if self.step_dropout > 0.0:
            droppable = batch.mask.clone()  # (B, T)
            rows = torch.arange(batch.batch_size, device=droppable.device)
            droppable[rows, batch.lengths.to(droppable.device) - 1] = False
            target, dropped = step_dropout(target, droppable, self.step_dropout, fill=0.0)
            if self.missing == "mask":
                inputs[..., 1] = inputs[..., 1].masked_fill(dropped, 0.0)  # the observed flag says "hidden"
        inputs[..., :1] = target
        return replace(batch, inputs=inputs)

    def state_dict(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon,
            "input_channels": self.n_features,
            "scaling": self.scaling,
            "scaler": self.scaler.state_dict(),
            "covariates": self.covariate_normalizer.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, what, current in (("horizon", "data.horizon", self.horizon),
                                   ("input_channels", "input channels (target, observed flag, covariates)",
                                    self.n_features),
                                   ("scaling", "data.scaling", self.scaling)):
            check_checkpoint_matches(what, state_dict.get(key), current,
                                     fix="use the data settings the model was trained with.")
        self.scaler.load_state_dict(state_dict.get("scaler", {}))
        self.covariate_normalizer.load_state_dict(state_dict.get("covariates", {}))
        for name, dataset in self.datasets.items():  # Lightning restores state after setup: rescale
            self.datasets[name] = self._dataset(dataset.windows)

    # ---- helpers -------------------------------------------------------------------------------
    @cached_property
    def panel(self) -> SeriesPanel:
        if self.dataset == "m1_yearly":
            columns = {"entity_column": "entity", "time_column": "time", "target_column": "target"}
            return panel_from_frame(load_m1_yearly(), missing=self.missing, source="M1 yearly", **columns)
        assert self.path is not None
        return load_panel(self.path, missing=self.missing, **self.columns)

    @cached_property
    def split(self) -> ForecastSplit:
        """The windows of every split, audited (split rule and scaler causality) before anything sees them."""
        panel = self.panel
        common = {"horizon": self.horizon, "min_context": self.min_context, "context_length": self.context_length,
                  "stride": self.stride, "partial": self.partial_windows}
        if self.split_mode == "chronological":
            split = chronological_holdout(panel.lengths, panel.entities, fold=self.fold, fold_step=self.fold_step,
                                          **common)
        else:
            split = entity_holdout(panel.lengths, panel.entities, val_fraction=self.val_fraction,
                                   test_fraction=self.test_fraction, seed=self.split_seed, **common)
        for name in ("train", "val", "test"):
            self._check_context_lengths(name, split.stage(name))
        audit_forecast_split(split, panel, self.split_mode)
        audit_scaler(lambda: make_scaler(self.scaling), panel, split)
        sizes = ", ".join(f"{name} {len(split.stage(name))}" for name in ("train", "val", "test"))
        skipped = "; ".join(f"{len(v)} series too short for a {k} window" for k, v in split.skipped.items() if v)
        rank_zero_info(f"seqlit: {len(panel)} series, {self.split_mode} split, windows: {sizes}"
                       + (f" ({skipped})" if skipped else "") + "; leakage and scaler audits passed.")
        return split

    def _check_context_lengths(self, name: str, windows: Windows) -> None:
        """The size guard: refuses contexts longer than `max_context_length` before any window is unrolled."""
        if self.max_context_length is None:
            return
        too_long = np.flatnonzero(windows.context_lengths > self.max_context_length)
        if too_long.shape[0]:
            first = int(too_long[0])
            entity = self.panel.entity(int(windows.series[first]))
            raise DataError(
                f"{too_long.shape[0]} {name} window(s) have a context longer than data.max_context_length="
                f"{self.max_context_length} (e.g. entity {entity!r}: {int(windows.context_lengths[first]):,} steps). "
                "Fix: set data.context_length (e.g. 512) to read only the last steps before each origin, or raise "
                "data.max_context_length (null: no limit)."
            )

    def _dataset(self, windows: Windows) -> ForecastWindowDataset:
        return ForecastWindowDataset(
            self.panel, windows, self.scaler, horizon=self.horizon, seasonality=self.seasonality,
            covariates=self.covariate_normalizer, observed_channel=self.missing == "mask",
        )

    def _warn_undefined_mase(self, name: str) -> None:
        """Windows whose history has no MASE scale are left out of MASE (sMAPE still counts them): say which."""
        dataset = self.datasets[name]
        bad = np.flatnonzero(~(dataset.mase_scale > 0))  # NaN (too short) or 0 (constant history)
        if bad.shape[0]:
            ids = [dataset.item_id(int(i)) for i in bad[:5]]
            rank_zero_warn(
                f"{bad.shape[0]} {name} window(s) have an undefined MASE scale (a history shorter than seasonality + "
                f"1 = {self.seasonality + 1} steps, or constant), e.g. {ids}; MASE leaves them out, sMAPE counts "
                "them. Drop those series or raise data.min_context to evaluate every window on both."
            )
