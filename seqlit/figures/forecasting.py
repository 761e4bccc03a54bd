"""Forecasting figures: history, forecast (with the outermost quantile band under a quantile loss) and
truth for fixed validation series, and the distribution of per-series MASE over the validation set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqlit.figures.artifacts import Artifact, TableArtifact, new_figure, render
from seqlit.figures.maker import FigureMaker


class ForecastingFigures(FigureMaker):
    """Figures of `seqlit.tasks.Forecaster` (or a module whose forward maps a `ForecastBatch` to (B, H, Q)
    scaled forecasts, with `quantiles` and `point_index`, and whose `validation_step` returns them).
    `history` caps the context steps drawn; `worst` rows of the per-series MASE table are kept."""

    def __init__(self, history: int = 40, worst: int = 20) -> None:
        self.history = history
        self.worst = worst
        self._mase: list[Tensor] = []  # per window, (B,) each
        self._indices: list[Tensor] = []

    def reset(self) -> None:
        self._mase, self._indices = [], []

    def observe(self, module: Any, batch: Any, outputs: Any) -> None:
        if not isinstance(outputs, Tensor) or outputs.dim() != 3:
            return
        point = _original(outputs[..., getattr(module, "point_index", 0)], batch)  # (B, H)
        truth = _original(batch.targets, batch)  # (B, H)
        mask = batch.target_mask.to(point.dtype)  # (B, H)
        errors = ((point - truth).abs() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,)
        scale = batch.mase_scale.to(errors.dtype)  # (B,), NaN or 0 where undefined
        usable = (scale > 0) & (batch.target_mask.any(dim=1))  # (B,)
        self._mase.append((errors / torch.where(usable, scale, 1.0))[usable].detach())
        self._indices.append(batch.indices.to(usable.device)[usable])

    def make(self, module: Any, items: Any | None, epoch: int) -> list[Artifact]:
        artifacts: list[Artifact] = []
        if items is not None:
            artifacts += self._forecasts(module, items, epoch)
        if self._mase:
            mase = torch.cat(self._mase).double().cpu().numpy()  # (N,)
            indices = torch.cat(self._indices).cpu().numpy()  # (N,)
            artifacts.append(mase_distribution_figure(mase, epoch))
            order = np.argsort(-mase, kind="stable")[: self.worst]
            rows = [[epoch, int(indices[i]), round(float(mase[i]), 4)] for i in order]
            artifacts.append(TableArtifact("val_worst_mase", ["epoch", "window", "mase"], rows))
        return artifacts

    def _forecasts(self, module: Any, items: Any, epoch: int) -> list[Artifact]:
        """The fixed windows' forecasts as a figure and as a table (point forecast and truth per step)."""
        forecasts = _original(module(items), items).cpu().numpy()  # (B, H, Q)
        history = _original(items.inputs[..., 0], items).cpu().numpy()  # (B, T)
        truth = _original(items.targets, items).cpu().numpy()  # (B, H)
        observed = items.target_mask.cpu().numpy()  # (B, H)
        quantiles = list(getattr(module, "quantiles", [0.5]))
        point_index = int(getattr(module, "point_index", 0))
        n_items = forecasts.shape[0]
        columns = 2 if n_items > 1 else 1
        rows = (n_items + columns - 1) // columns
        figure, axes = new_figure(5.0 * columns, 2.6 * rows, rows, columns)
        flat = axes.ravel()
        for row, ax in enumerate(flat[:n_items]):
            length = int(items.lengths[row])
            shown = min(length, self.history)
            past = np.arange(-shown, 0)
            future = np.arange(forecasts.shape[1])
            ax.plot(past, history[row, length - shown : length], color="black", linewidth=1, label="history")
            if len(quantiles) > 1:
                ax.fill_between(future, forecasts[row, :, 0], forecasts[row, :, -1], color="tab:blue", alpha=0.2,
                                linewidth=0, label=f"q{quantiles[0]:g}-q{quantiles[-1]:g}")
            ax.plot(future, forecasts[row, :, point_index], color="tab:blue", marker=".", label="forecast")
            mask = observed[row]
            ax.plot(future[mask], truth[row][mask], color="tab:green", marker="x", linestyle="--", label="truth")
            ax.axvline(-0.5, color="grey", linewidth=0.5)
            ax.set_title(f"window {int(items.indices[row])}", fontsize=9)
        for ax in flat[n_items:]:
            ax.axis("off")
        flat[0].legend(fontsize=7, loc="best")
        figure.suptitle(f"forecasts, epoch {epoch}")
        rows = [
            [epoch, int(index), " ".join(f"{v:.4g}" for v in forecasts[row, :, point_index]),
             " ".join(f"{v:.4g}" if seen else "nan" for v, seen in zip(truth[row], observed[row]))]
            for row, index in enumerate(items.indices.tolist())
        ]
        return [render("forecasts", figure), TableArtifact("val_forecasts", ["epoch", "window", "forecast", "truth"], rows)]


def mase_distribution_figure(mase: np.ndarray, epoch: int) -> Artifact:
    """Histogram of per-series MASE with its median and mean (the mean is what `val/mase` averages)."""
    figure, axes = new_figure(5.5, 3.2)
    axes.hist(mase, bins=min(40, max(5, len(mase) // 4)), color="tab:blue", alpha=0.8)
    axes.axvline(float(np.median(mase)), color="tab:orange", linestyle="--", label=f"median {np.median(mase):.3f}")
    axes.axvline(float(mase.mean()), color="tab:red", linestyle=":", label=f"mean {mase.mean():.3f}")
    axes.axvline(1.0, color="grey", linewidth=0.8, label="naive in-sample (1.0)")
    axes.set_xlabel("MASE per series")
    axes.set_ylabel("series")
    axes.legend(fontsize=8)
    axes.set_title(f"per-series MASE, {len(mase)} series, epoch {epoch}")
    return render("mase_distribution", figure)


def _original(scaled: Tensor, batch: Any) -> Tensor:
    """(B, ...) scaled -> original units, float64."""
    extra = (1,) * (scaled.dim() - 1)
    scale = batch.scale.to(scaled.device).view(-1, *extra)
    location = batch.location.to(scaled.device).view(-1, *extra)
    return scaled.detach().to(torch.float64) * scale + location


__all__ = ["ForecastingFigures", "mase_distribution_figure"]
