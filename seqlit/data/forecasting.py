"""Forecasting windows over a panel of series: holdouts by time or entity, and their audits.

A window is (series, context_start, cut, target_end): the model reads steps [context_start, cut) and
predicts steps [cut, cut + horizon), of which those before `target_end` are inside the window's split.
Every split is audited on setup: no evaluated step precedes (or is) a training target of its series,
and the scaler's statistics (`seqlit.data.scaling`) do not move when values after the cut (or the series'
training span) change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from seqlit.data.sources import SeriesPanel
from seqlit.data.split_audit import audit
from seqlit.data.splits import LeakageError, Split, entity_split
from seqlit.errors import DataError

STAGES: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Windows:
    """Window coordinates, one entry per window (all (N,) int64 step indices into the series)."""

    series: np.ndarray  # (N,) index into the panel
    context_start: np.ndarray  # (N,) first context step
    cut: np.ndarray  # (N,) first forecast step = one past the last context step
    target_end: np.ndarray  # (N,) one past the last target step inside the split (<= cut + horizon)

    def __post_init__(self) -> None:
        for name in ("series", "context_start", "cut", "target_end"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))

    def __len__(self) -> int:
        return int(self.series.shape[0])

    @property
    def context_lengths(self) -> np.ndarray:
        return self.cut - self.context_start  # (N,)

    def take(self, positions: np.ndarray) -> Windows:
        return Windows(self.series[positions], self.context_start[positions], self.cut[positions],
                       self.target_end[positions])

    @staticmethod
    def concatenate(parts: list[Windows]) -> Windows:
        return Windows(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                         ("series", "context_start", "cut", "target_end")))


@dataclass(frozen=True)
class ForecastSplit:
    """Train / val / test windows plus, per series, how many leading steps statistics may be fitted on.

    `fit_limits[s]` is the first step of series s that is evaluated anywhere (or its length when it is
    only trained on); normalisers see steps before it only. `skipped` names, per evaluation split, the
    entities whose history was too short for a window there.
    """

    train: Windows
    val: Windows
    test: Windows
    fit_limits: np.ndarray  # (S,) int64
    skipped: dict[str, list[object]]

    def stage(self, name: str) -> Windows:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


# ---- windows and holdouts ----------------------------------------------------------------------------


def sliding_windows(
    limits: np.ndarray,
    *,
    horizon: int,
    min_context: int,
    context_length: int | None = None,
    stride: int = 1,
    partial: bool = True,
    series: np.ndarray | None = None,
) -> Windows:
    """Training windows whose targets all lie before `limits[s]` in each series s.

    Cuts run from `min_context` to the last one whose first target (partial) or whole horizon (not
    partial) fits, counted back from that last cut in steps of `stride`, so the most recent windows are
    always kept. The context is everything before the cut, or its last `context_length` steps.
    """
    _check_positive(horizon=horizon, min_context=min_context, stride=stride)
    if context_length is not None:
        _check_positive(context_length=context_length)
    limits = np.asarray(limits, dtype=np.int64)
    chosen = np.arange(limits.shape[0]) if series is None else np.asarray(series, dtype=np.int64)
    parts = []
    for s in chosen.tolist():
        last_cut = int(limits[s]) - (1 if partial else horizon)
        cuts = np.arange(last_cut, min_context - 1, -stride, dtype=np.int64)[::-1]  # (W,)
        if cuts.shape[0] == 0:
            continue
        starts = np.zeros_like(cuts) if context_length is None else np.maximum(cuts - context_length, 0)
        parts.append(Windows(np.full_like(cuts, s), starts, cuts, np.minimum(cuts + horizon, limits[s])))
    return Windows.concatenate(parts) if parts else _no_windows()


def origin_windows(
    origins: np.ndarray,
    lengths: np.ndarray,
    *,
    horizon: int,
    min_context: int,
    context_length: int | None = None,
    series: np.ndarray | None = None,
) -> tuple[Windows, np.ndarray]:
    """One window per chosen series, forecasting from `origins[s]`; returns it and the series skipped
    because fewer than `min_context` steps precede their origin."""
    origins = np.asarray(origins, dtype=np.int64)
    chosen = np.arange(origins.shape[0]) if series is None else np.asarray(series, dtype=np.int64)
    cuts = origins[chosen]
    keep = cuts >= min_context
    chosen, cuts = chosen[keep], cuts[keep]
    starts = np.zeros_like(cuts) if context_length is None else np.maximum(cuts - context_length, 0)
    ends = np.minimum(cuts + horizon, np.asarray(lengths, dtype=np.int64)[chosen])
    skipped = (np.arange(origins.shape[0]) if series is None else np.asarray(series, dtype=np.int64))[~keep]
    return Windows(chosen, starts, cuts, ends), skipped


def chronological_holdout(
    lengths: np.ndarray,
    entities: np.ndarray,
    *,
    horizon: int,
    fold: int = 0,
    fold_step: int | None = None,
    min_context: int = 3,
    context_length: int | None = None,
    stride: int = 1,
    partial: bool = True,
) -> ForecastSplit:
    """The last `horizon` steps of every series are test, the `horizon` before them validation, the rest train.

    `fold` k > 0 moves both origins back by k * `fold_step` (default `horizon`) steps: the rolling-origin
    backtest, where each fold trains only on what came before its own validation origin.
    """
    _check_positive(horizon=horizon, min_context=min_context)
    if fold < 0:
        raise DataError(f"data.fold must be >= 0 (0 = the last horizon is test), got {fold}.")
    step = horizon if fold_step is None else fold_step
    _check_positive(fold_step=step)
    lengths = np.asarray(lengths, dtype=np.int64)
    test_origin = lengths - horizon - fold * step  # (S,)
    val_origin = test_origin - horizon  # (S,)
    train = sliding_windows(np.maximum(val_origin, 0), horizon=horizon, min_context=min_context,
                            context_length=context_length, stride=stride, partial=partial)
    # Targets stop at the next origin, so val never reaches into the test steps of a backtest fold.
    val, val_skipped = origin_windows(val_origin, np.minimum(test_origin, lengths), horizon=horizon,
                                      min_context=min_context, context_length=context_length)
    test, test_skipped = origin_windows(test_origin, lengths - fold * step, horizon=horizon,
                                        min_context=min_context, context_length=context_length)
    split = ForecastSplit(
        train=train,
        val=val,
        test=test,
        fit_limits=np.clip(val_origin, 0, None),
        skipped={"val": entities[val_skipped].tolist(), "test": entities[test_skipped].tolist()},
    )
    _require_windows(split, "chronological", lengths, horizon, min_context)
    return split


def entity_holdout(
    lengths: np.ndarray,
    entities: np.ndarray,
    *,
    horizon: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_context: int = 3,
    context_length: int | None = None,
    stride: int = 1,
    partial: bool = True,
) -> ForecastSplit:
    """Whole series held out: train windows slide over every step of the training entities; val and test
    entities are evaluated on their last `horizon` steps, forecast from everything before."""
    _check_positive(horizon=horizon, min_context=min_context)
    lengths = np.asarray(lengths, dtype=np.int64)
    roles = entity_split(entities, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    train = sliding_windows(lengths, horizon=horizon, min_context=min_context, context_length=context_length,
                            stride=stride, partial=partial, series=roles.train)
    origins = lengths - horizon
    val, val_skipped = origin_windows(origins, lengths, horizon=horizon, min_context=min_context,
                                      context_length=context_length, series=roles.val)
    test, test_skipped = origin_windows(origins, lengths, horizon=horizon, min_context=min_context,
                                        context_length=context_length, series=roles.test)
    fit_limits = lengths.copy()
    fit_limits[np.concatenate([roles.val, roles.test])] = np.clip(origins[np.concatenate([roles.val, roles.test])],
                                                                  0, None)
    split = ForecastSplit(train=train, val=val, test=test, fit_limits=fit_limits,
                          skipped={"val": entities[val_skipped].tolist(), "test": entities[test_skipped].tolist()})
    _require_windows(split, "entity", lengths, horizon, min_context)
    return split


def forecast_origins(lengths: np.ndarray, *, min_context: int, context_length: int | None = None) -> Windows:
    """Windows that forecast past the end of every long-enough series (for `seqlit predict`): no targets."""
    lengths = np.asarray(lengths, dtype=np.int64)
    keep = np.flatnonzero(lengths >= min_context)
    starts = np.zeros_like(keep) if context_length is None else np.maximum(lengths[keep] - context_length, 0)
    return Windows(keep, starts, lengths[keep], lengths[keep])


# ---- audits ------------------------------------------------------------------------------------------


def audit_forecast_split(split: ForecastSplit, panel: SeriesPanel, mode: Literal["chronological", "entity"]) -> None:
    """Raises LeakageError unless every window is well formed and the split respects its mode.

    chronological: per entity, every val target comes after every train target and every test target after
    every val target (`seqlit.data.split_audit.audit` over the windows' target spans); entity: no entity has
    windows in two splits. In both modes no statistic may be fitted on a step that is evaluated.
    """
    parts = [split.train, split.val, split.test]
    for name, windows in zip(STAGES, parts):
        _audit_window_shapes(name, windows, panel)
    every = Windows.concatenate(parts)
    sizes = np.cumsum([0] + [len(w) for w in parts])
    positions = Split(*(np.arange(sizes[i], sizes[i + 1]) for i in range(3)))
    entities = panel.entities[every.series]
    if mode == "chronological":
        first = np.array([panel.times[s][c] for s, c in zip(every.series.tolist(), every.cut.tolist())])
        last = np.array([panel.times[s][e - 1] for s, e in zip(every.series.tolist(), every.target_end.tolist())])
        audit(positions, mode="chronological", entities=entities, start_times=first, end_times=last)
    else:
        audit(positions, mode="entity", entities=entities)
    for name, windows in (("val", split.val), ("test", split.test)):
        early = np.flatnonzero(split.fit_limits[windows.series] > windows.cut)
        if early.shape[0]:
            w = int(early[0])
            s = int(windows.series[w])
            raise LeakageError(
                f"statistics of entity {panel.entity(s)!r} would be fitted on {split.fit_limits[s]} steps, past its "
                f"{name} forecast origin at time {panel.time_at(s, int(windows.cut[w]))!r}; the evaluated values "
                "would shape the normaliser. Fix: fit statistics only before the first evaluated step."
            )


def audit_scaler(
    scaler_factory: Any, panel: SeriesPanel, split: ForecastSplit, *, max_windows: int = 5000
) -> None:
    """Proves the scaling causal by changing the future and checking that no statistic moves.

    1. A fresh scaler fitted on a panel whose steps at and after each series' fit limit are replaced by
       planted values must produce the same statistics as one fitted on the real panel.
    2. Each window's (location, scale) must not change when the values from its cut on are planted.
    Checks up to `max_windows` windows (evenly spaced) per split; raises LeakageError naming the entity.
    """
    reference = scaler_factory().fit(panel, split.fit_limits)
    planted = scaler_factory().fit(_plant_after(panel, split.fit_limits), split.fit_limits)
    for name in STAGES:
        windows = _evenly_spaced(split.stage(name), max_windows)
        if len(windows) == 0:
            continue
        expected = reference.statistics(panel, windows)
        moved = _moved(expected, planted.statistics(panel, windows))
        if moved.shape[0]:
            _raise_scaler_leak(panel, windows, int(moved[0]), name, "its training span (the fitted statistics)")
        for cut in np.unique(windows.cut).tolist():
            at_cut = np.flatnonzero(windows.cut == cut)
            subset = windows.take(at_cut)
            limits = np.full(len(panel), np.iinfo(np.int64).max)
            limits[subset.series] = cut
            changed = _moved(tuple(v[at_cut] for v in expected), reference.statistics(_plant_after(panel, limits),
                                                                                      subset))
            if changed.shape[0]:
                _raise_scaler_leak(panel, subset, int(changed[0]), name, "its forecast origin")


def _plant_after(panel: SeriesPanel, limits: np.ndarray) -> SeriesPanel:
    """A copy of the panel whose values at and after `limits[s]` are replaced by large, distinct numbers."""
    values = []
    for s, series in enumerate(panel.values):
        changed = series.copy()
        limit = int(min(limits[s], series.shape[0]))
        changed[limit:] = 1e6 * (np.abs(series[limit:]) + 1.0) + np.arange(series.shape[0] - limit)
        values.append(changed)
    return SeriesPanel(panel.entities, panel.times, values, panel.observed, panel.covariates, panel.covariate_names)


def _moved(expected: tuple[np.ndarray, np.ndarray], actual: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Positions where location or scale differ (relative tolerance 1e-9)."""
    differs = ~np.isclose(expected[0], actual[0], rtol=1e-9, atol=0) | ~np.isclose(expected[1], actual[1],
                                                                                     rtol=1e-9, atol=0)
    return np.flatnonzero(differs)


def _raise_scaler_leak(panel: SeriesPanel, windows: Windows, position: int, stage: str, what: str) -> None:
    s = int(windows.series[position])
    cut = int(windows.cut[position])
    origin = panel.time_at(s, cut) if cut < len(panel.values[s]) else "the end of the series"
    raise LeakageError(
        f"scaler leakage: the scaling statistics of a {stage} window of entity {panel.entity(s)!r} (forecast origin "
        f"{origin!r}) change when values after {what} change, so they were computed from the future. Fix: fit "
        "normalisers on each window's context or the training span only (data.scaling: context or series)."
    )


def _audit_window_shapes(name: str, windows: Windows, panel: SeriesPanel) -> None:
    lengths = panel.lengths[windows.series] if len(windows) else np.empty(0, dtype=np.int64)
    bad = np.flatnonzero(
        (windows.context_start < 0)
        | (windows.context_start >= windows.cut)
        | (windows.target_end <= windows.cut)
        | (windows.target_end > lengths)
    )
    if bad.shape[0]:
        w = int(bad[0])
        raise LeakageError(
            f"{bad.shape[0]} malformed {name} window(s), e.g. entity {panel.entity(int(windows.series[w]))!r} with "
            f"context [{windows.context_start[w]}, {windows.cut[w]}) and targets [{windows.cut[w]}, "
            f"{windows.target_end[w]}) in a series of {lengths[w]} steps; a context must be non-empty and end "
            "where its targets start."
        )


# ---- helpers -----------------------------------------------------------------------------------------


def _evenly_spaced(windows: Windows, limit: int) -> Windows:
    if len(windows) <= limit:
        return windows
    return windows.take(np.unique(np.linspace(0, len(windows) - 1, limit).round().astype(np.int64)))


def _no_windows() -> Windows:
    empty = np.empty(0, dtype=np.int64)
    return Windows(empty, empty, empty, empty)


def _require_windows(split: ForecastSplit, mode: str, lengths: np.ndarray, horizon: int, min_context: int) -> None:
    for name in STAGES:
        if len(split.stage(name)) == 0:
            raise DataError(
                f"the {mode} forecasting split has no {name} windows: with horizon={horizon} and "
                f"min_context={min_context}, series of {int(lengths.min())}-{int(lengths.max())} steps leave no "
                f"{name} window. Fix: lower data.min_context or data.horizon (or data.fold), or provide longer series."
            )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"data.{name} must be a positive integer, got {value!r}.")
