"""Map-style data sets over `SequenceRecords`; transforms are applied lazily per item."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from seqlit.data.collate import ForecastSample, Sample
from seqlit.data.forecasting import Windows
from seqlit.data.normalise import FeatureNormalizer
from seqlit.data.scaling import CovariateNormalizer, WindowScaler, in_sample_scale
from seqlit.data.sources import SequenceRecords, SeriesPanel
from seqlit.errors import DataError
from seqlit.types import IGNORE_INDEX


class SequenceClassificationDataset(Dataset[Sample]):
    """(T, F) feature sequences with one class index each.

    The normaliser is read at access time, not copied at construction, so statistics restored
    from a checkpoint after `setup` (Lightning restores data module state after setup) apply.
    """

    def __init__(
        self,
        records: SequenceRecords,
        class_to_index: dict[str, int],
        normalizer: FeatureNormalizer | None = None,
    ) -> None:
        self.records = records
        self.normalizer = normalizer
        if records.labels is None:
            self.targets = np.full(len(records), IGNORE_INDEX, dtype=np.int64)
        else:
            self.targets = np.array([class_to_index[label] for label in records.labels], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        sequence = self.records.sequences[index]  # (T, F)
        if self.normalizer is not None:
            sequence = self.normalizer.transform(sequence)
        return Sample(
            index=index,
            inputs=torch.from_numpy(np.ascontiguousarray(sequence, dtype=np.float32)),  # (T, F)
            target=torch.tensor(self.targets[index], dtype=torch.long),
        )

    @property
    def lengths(self) -> np.ndarray:
        return self.records.lengths  # (N,)


class ForecastWindowDataset(Dataset[ForecastSample]):
    """Windows over a panel, scaled by `scaler` (statistics computed once, from the past only).

    Input channels: the scaled target, then an `observed` flag when the panel has masked values
    (`observed_channel`), then the standardised covariates. `mase_scale` is the in-sample seasonal naive
    error of the series' whole history before the cut, which is what MASE divides by.
    """

    def __init__(
        self,
        panel: SeriesPanel,
        windows: Windows,
        scaler: WindowScaler,
        *,
        horizon: int,
        seasonality: int = 1,
        covariates: CovariateNormalizer | None = None,
        observed_channel: bool = False,
    ) -> None:
        self.panel = panel
        self.windows = windows
        self.horizon = horizon
        self.covariates = covariates
        self.observed_channel = observed_channel
        self.location, self.scale = scaler.statistics(panel, windows)  # (N,), (N,)
        self.mase_scale = np.array([
            in_sample_scale(panel.values[s][:cut], panel.observed[s][:cut], seasonality)
            for s, cut in zip(windows.series.tolist(), windows.cut.tolist())
        ])  # (N,)
        self._check_scaled_range()

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def lengths(self) -> np.ndarray:
        return self.windows.context_lengths  # (N,)

    def __getitem__(self, index: int) -> ForecastSample:
        s = int(self.windows.series[index])
        start, cut, end = (int(self.windows.context_start[index]), int(self.windows.cut[index]),
                           int(self.windows.target_end[index]))
        location, scale = float(self.location[index]), float(self.scale[index])
        values, observed = self.panel.values[s], self.panel.observed[s]
        channels = [((values[start:cut] - location) / scale)[:, None]]  # (T, 1)
        if self.observed_channel:
            channels.append(observed[start:cut, None].astype(np.float64))  # (T, 1)
        if self.covariates is not None and self.panel.covariate_names:
            channels.append(self.covariates.transform(self.panel.covariates[s][start:cut]))  # (T, C)
        target = np.zeros(self.horizon)  # (H,)
        target_mask = np.zeros(self.horizon, dtype=bool)  # (H,)
        target[: end - cut] = (values[cut:end] - location) / scale
        target_mask[: end - cut] = observed[cut:end]
        return ForecastSample(
            index=index,
            inputs=torch.from_numpy(np.concatenate(channels, axis=1).astype(np.float32)),  # (T, F)
            target=torch.from_numpy(np.where(target_mask, target, 0.0).astype(np.float32)),  # (H,)
            target_mask=torch.from_numpy(target_mask),  # (H,)
            location=location,
            scale=scale,
            mase_scale=float(self.mase_scale[index]),
        )

    def _check_scaled_range(self) -> None:
        """Every window's scaled values must fit float32 (a finite scale, a bounded ratio); otherwise the loss and
        the metrics would silently be NaN for the whole run."""
        limit = float(np.finfo(np.float32).max)
        peak = np.array([np.abs(self.panel.values[s]).max(initial=0.0) for s in self.windows.series.tolist()])  # (N,)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            bound = (peak + np.abs(self.location)) / self.scale  # (N,) largest scaled magnitude of each window
        bad = np.flatnonzero(~(np.isfinite(self.location) & np.isfinite(self.scale) & (self.scale > 0)
                               & np.isfinite(bound) & (bound < limit)))
        if bad.shape[0]:
            raise DataError(
                f"{bad.shape[0]} window(s) overflow float32 after scaling (e.g. {self.item_id(int(bad[0]))}: location "
                f"{self.location[bad[0]]:.3g}, scale {self.scale[bad[0]]:.3g}); the values are too large or too far "
                "apart. Fix: rescale the target column (e.g. take logs) or correct the outliers."
            )

    def item_id(self, index: int) -> str:
        """`entity@origin`: the series and the time of its first forecast step (or `end` past the data)."""
        s, cut = int(self.windows.series[index]), int(self.windows.cut[index])
        origin = self.panel.time_at(s, cut) if cut < len(self.panel.values[s]) else "end"
        return f"{self.panel.entities[s]}@{origin}"
