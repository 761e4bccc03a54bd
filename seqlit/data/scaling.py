"""Causal scaling of forecasting windows: per-window scalers that never look past the cut, the covariate
normaliser fitted on the training spans, and the in-sample scale that is the MASE denominator.

`make_scaler` picks a `WindowScaler` by its `data.scaling` name; `seqlit.data.forecasting.audit_scaler`
proves on setup that its statistics do not move when values after the cut (or the series' training span) change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np

from seqlit.data.forecasting import Windows
from seqlit.data.sources import SeriesPanel
from seqlit.errors import DataError, check_checkpoint_matches

ScalingName = Literal["context", "series", "none"]
SCALINGS: tuple[str, ...] = ("context", "series", "none")
_MAX_NAMED = 5


class WindowScaler(ABC):
    """An affine map per window, value -> (value - location) / scale, that must not look past the cut."""

    @abstractmethod
    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> WindowScaler:
        """Fits any per-series statistics on each series' first `fit_limits[s]` steps only."""

    @abstractmethod
    def statistics(self, panel: SeriesPanel, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        """(location (N,), scale (N,) > 0) float64 for each window."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class ContextScaler(WindowScaler):
    """Location = the last context value, scale = the context's mean absolute one-step change.

    The loss in these units is the window's own MASE, and an RNN sees every series at a comparable
    level whatever its magnitude. A flat context falls back to its mean absolute value, then to 1.
    """

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> ContextScaler:
        return self  # nothing but the context is used

    def statistics(self, panel: SeriesPanel, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        location = np.empty(len(windows))
        scale = np.empty(len(windows))
        for i, (s, start, cut) in enumerate(zip(windows.series.tolist(), windows.context_start.tolist(),
                                                 windows.cut.tolist())):
            context = panel.values[s][start:cut]
            observed = panel.observed[s][start:cut]
            location[i] = context[-1]
            scale[i] = _positive_scale(context, observed)
        return location, scale


class SeriesScaler(WindowScaler):
    """Location and scale per series (mean and standard deviation of its observed training-span values)."""

    def __init__(self) -> None:
        self.stats: dict[str, tuple[float, float]] = {}  # str(entity) -> (mean, std)

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> SeriesScaler:
        self.stats = {}
        for s, limit in enumerate(np.asarray(fit_limits).tolist()):
            span = panel.values[s][:limit][panel.observed[s][:limit]]
            if span.shape[0] == 0:
                continue
            std = float(span.std())
            self.stats[str(panel.entities[s])] = (float(span.mean()), std if std > 0 else _fallback(span))
        return self

    def statistics(self, panel: SeriesPanel, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        names = [str(panel.entities[s]) for s in windows.series.tolist()]
        unknown = sorted({name for name in names if name not in self.stats})
        if unknown:
            raise DataError(
                f"series scaling has no training-span statistics for entit{'y' if len(unknown) == 1 else 'ies'} "
                f"{unknown[:_MAX_NAMED]}: they have no step before their first evaluated step (or were not in the "
                "training data). Fix: use data.scaling: context, which needs only each window's own history."
            )
        pairs = np.array([self.stats[name] for name in names], dtype=np.float64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    def state_dict(self) -> dict[str, Any]:
        return {"stats": {name: list(pair) for name, pair in self.stats.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("stats")
        if saved is None:
            return
        if self.stats:
            missing = sorted(set(self.stats) - set(saved))[:_MAX_NAMED]
            check_checkpoint_matches(
                "series scaling for the entities", sorted(saved), sorted(self.stats),
                fix=f"the checkpoint lacks e.g. {missing}. Resume or predict with the entities the model was "
                "trained on, or use data.scaling: context.",
            )
        self.stats = {name: (float(pair[0]), float(pair[1])) for name, pair in saved.items()}


class IdentityScaler(WindowScaler):
    """No scaling (location 0, scale 1): only for data already on a common scale."""

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> IdentityScaler:
        return self

    def statistics(self, panel: SeriesPanel, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(windows)), np.ones(len(windows))


def make_scaler(name: ScalingName) -> WindowScaler:
    scalers: dict[str, type[WindowScaler]] = {"context": ContextScaler, "series": SeriesScaler,
                                              "none": IdentityScaler}
    if name not in scalers:
        raise DataError(f"unknown data.scaling {name!r}; choose one of {', '.join(map(repr, SCALINGS))}.")
    return scalers[name]()


class CovariateNormalizer:
    """Per-channel mean/std of the covariates over the training spans (steps before each fit limit)."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None  # (C,)
        self.std: np.ndarray | None = None  # (C,)

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> CovariateNormalizer:
        rows = [c[:limit] for c, limit in zip(panel.covariates, np.asarray(fit_limits).tolist())]
        stacked = np.concatenate(rows, axis=0) if rows else np.empty((0, len(panel.covariate_names)))  # (N, C)
        if stacked.shape[1] and stacked.shape[0] == 0:
            raise DataError("no training steps to fit the covariate normaliser on; check the split settings.")
        self.mean = stacked.mean(axis=0) if stacked.shape[0] else np.zeros(stacked.shape[1])
        std = stacked.std(axis=0) if stacked.shape[0] else np.ones(stacked.shape[1])
        self.std = np.where(std > 0, std, 1.0)
        return self

    def transform(self, covariates: np.ndarray) -> np.ndarray:
        """(T, C) -> (T, C) standardised."""
        assert self.mean is not None and self.std is not None, "fit before transform"
        return (covariates - self.mean) / self.std

    def state_dict(self) -> dict[str, Any]:
        return {"mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mean") is not None:
            self.mean = np.asarray(state["mean"], dtype=np.float64)
            self.std = np.asarray(state["std"], dtype=np.float64)


def in_sample_scale(values: np.ndarray, observed: np.ndarray, seasonality: int = 1) -> float:
    """Mean |y_t - y_{t-m}| over observed pairs of one series' history: the MASE denominator (NaN if none)."""
    if values.shape[0] <= seasonality:
        return float("nan")
    valid = observed[seasonality:] & observed[:-seasonality]
    if not valid.any():
        return float("nan")
    return float(np.abs(values[seasonality:] - values[:-seasonality])[valid].mean())


# ---- helpers -----------------------------------------------------------------------------------------


def _positive_scale(context: np.ndarray, observed: np.ndarray) -> float:
    """Mean absolute one-step change over observed pairs, else mean absolute level, else 1."""
    pairs = observed[1:] & observed[:-1]
    if pairs.any():
        change = float(np.abs(np.diff(context))[pairs].mean())
        if change > 0:
            return change
    return _fallback(context[observed] if observed.any() else context)


def _fallback(values: np.ndarray) -> float:
    level = float(np.abs(values).mean()) if values.shape[0] else 0.0
    return level if level > 0 else 1.0
