"""Forecast accuracy as the M-competitions and the Monash archive report it: MASE and sMAPE.

MASE divides each series' mean absolute forecast error by the mean absolute error of the in-sample
seasonal naive forecast on that series' *history* (never its future), so a score of 1 means "as good
as repeating last season in sample". Both metrics average per series first, then over series, and keep
summed states so a DDP sync adds exact totals.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqlit.metrics.mean import MeanPerTarget


def mase_scale(history: Tensor, mask: Tensor | None = None, seasonality: int = 1) -> Tensor:
    """history (B, T), mask (B, T) True on observed steps -> (B,) mean |y_t - y_{t-m}| over observed pairs.

    Raises when a series has no pair m steps apart, or a zero scale (a constant history), since its
    MASE would be undefined; the message names the series' row.
    """
    if seasonality < 1:
        raise ValueError(f"seasonality must be >= 1 (1 for yearly data), got {seasonality}.")
    if mask is None:
        mask = torch.ones_like(history, dtype=torch.bool)
    differences = (history[:, seasonality:] - history[:, :-seasonality]).abs()  # (B, T - m)
    valid = mask[:, seasonality:] & mask[:, :-seasonality]  # (B, T - m)
    counts = valid.sum(dim=1)  # (B,)
    scale = (differences * valid).sum(dim=1) / counts.clamp_min(1)  # (B,)
    too_short = torch.nonzero(counts == 0).flatten()
    if too_short.numel():
        raise ValueError(
            f"series at rows {too_short[:10].tolist()} have no two observations {seasonality} step(s) apart, so "
            "their MASE scale is undefined; give each series a longer history or drop those series."
        )
    flat = torch.nonzero(scale == 0).flatten()
    if flat.numel():
        raise ValueError(
            f"series at rows {flat[:10].tolist()} have a constant history (in-sample naive error 0), so MASE would "
            "divide by zero; drop them or report sMAPE for them."
        )
    return scale


class _PerSeriesMean(MeanPerTarget):
    """A per-series score summed over series (float64) with the series count; `compute` is their mean."""

    def _add(self, per_series: Tensor, has_targets: Tensor, scale: Tensor | None = None) -> None:
        """per_series (B,) float64 scores, has_targets (B,) bool; series without targets are skipped."""
        if scale is not None:
            per_series = per_series / scale  # (B,)
        MeanPerTarget.update(self, per_series[has_targets].sum(), has_targets.sum())


class MeanAbsoluteScaledError(_PerSeriesMean):
    """Mean over series of mean_h |y - ŷ| / scale, with `scale` from `mase_scale` on each series' history."""

    def update(self, predictions: Tensor, targets: Tensor, scale: Tensor, mask: Tensor | None = None) -> None:
        """predictions, targets (B, H), scale (B,), mask (B, H) True on observed targets -> adds the series
        with at least one observed target."""
        _check_shapes(predictions, targets)
        errors = (predictions.to(torch.float64) - targets.to(torch.float64)).abs()  # (B, H)
        self._add(*_horizon_mean(errors, mask), scale=scale.to(torch.float64))


class SymmetricMAPE(_PerSeriesMean):
    """Mean over series of mean_h 200 |y - ŷ| / (|y| + |ŷ|), in percent (0 where both are 0)."""

    def update(self, predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        """predictions, targets (B, H), mask (B, H) True on observed targets -> adds the series with at
        least one observed target."""
        _check_shapes(predictions, targets)
        predictions, targets = predictions.to(torch.float64), targets.to(torch.float64)
        denominator = predictions.abs() + targets.abs()  # (B, H)
        ratio = torch.where(denominator > 0, 200.0 * (predictions - targets).abs() / denominator, 0.0)  # (B, H)
        self._add(*_horizon_mean(ratio, mask))


def _horizon_mean(values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """values (B, H), mask (B, H) -> (mean over observed steps (B,), whether any step is observed (B,))."""
    if mask is None:
        return values.mean(dim=1), torch.ones(values.shape[0], dtype=torch.bool, device=values.device)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the forecasts' {tuple(values.shape)}.")
    counts = mask.sum(dim=1)  # (B,)
    return (values * mask).sum(dim=1) / counts.clamp_min(1), counts > 0


def _check_shapes(predictions: Tensor, targets: Tensor) -> None:
    if predictions.shape != targets.shape or predictions.dim() != 2:
        raise ValueError(
            f"forecast metrics take predictions and targets of the same (series, horizon) shape, got "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}."
        )
