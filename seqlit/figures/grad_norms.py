"""Gradient norm per layer (and gate) over epochs as one heatmap: a layer whose gradients die or blow up
shows as a row that fades or lights up, which a single total-norm curve hides."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from seqlit.figures.artifacts import Artifact, new_figure, render

MAX_ROWS = 60  # layers and gates; more would not fit a readable figure


def grad_norm_heatmap(history: Mapping[str, Mapping[int, float]], title: str = "gradient norm by layer") -> Artifact:
    """`history`: row name (a module `encoder.rnn.l0` or gate `encoder.rnn.l0/forget`) -> epoch -> mean norm.
    Colour is log10 of the norm; epochs without a value stay blank."""
    names = sorted(history, key=lambda name: ("/" in name, name))[:MAX_ROWS]  # modules first, then gates
    epochs = sorted({epoch for name in names for epoch in history[name]})
    grid = np.full((len(names), len(epochs)), np.nan)  # (rows, epochs)
    column = {epoch: i for i, epoch in enumerate(epochs)}
    for row, name in enumerate(names):
        for epoch, value in history[name].items():
            if value > 0 and math.isfinite(value):
                grid[row, column[epoch]] = math.log10(value)
    figure, axes = new_figure(3.5 + 0.18 * len(epochs) + 0.06 * max((len(n) for n in names), default=0),
                              1.5 + 0.22 * max(len(names), 1))
    image = axes.imshow(grid, cmap="magma", aspect="auto", interpolation="nearest")
    axes.set_yticks(range(len(names)), labels=names, fontsize=7)
    step = max(1, len(epochs) // 15)
    axes.set_xticks(range(0, len(epochs), step), labels=[str(epochs[i]) for i in range(0, len(epochs), step)])
    axes.set_xlabel("epoch")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="log10 norm")
    return render("grad_norms", figure)


def history_from_epoch_means(means: Mapping[str, float]) -> dict[str, float]:
    """GradNormMonitor's epoch means (`grad/norm/<module>_epoch`, `grad/norm_gate/<module>/<gate>_epoch`)
    -> row name -> value; the total and the clipped norm are left out (they are curves, not layers)."""
    rows: dict[str, float] = {}
    for key, value in means.items():
        name = key.removesuffix("_epoch")
        for prefix in ("grad/norm/", "grad/norm_gate/"):
            if name.startswith(prefix):
                rows[name[len(prefix):]] = float(value)
    return rows


__all__ = ["grad_norm_heatmap", "history_from_epoch_means"]
