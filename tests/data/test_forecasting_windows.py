"""Forecasting windows: holdouts never cross their split points, scalers only see the past (audited by
planting future values), missing targets are errors or masked, and the data module on a user's file."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.forecasting import ForecastingDataModule
from seqlit.data.datasets import ForecastWindowDataset
from seqlit.data.forecasting import (
    ForecastSplit,
    Windows,
    audit_forecast_split,
    audit_scaler,
    chronological_holdout,
    entity_holdout,
)
from seqlit.data.scaling import (
    ContextScaler,
    CovariateNormalizer,
    IdentityScaler,
    SeriesScaler,
    WindowScaler,
    in_sample_scale,
)
from seqlit.data.sources import SeriesPanel, load_m1_yearly, panel_from_frame
from seqlit.data.splits import LeakageError
from seqlit.errors import DataError
from seqlit.metrics.forecasting import mase_scale
from seqlit.types import ForecastBatch

HORIZON = 3


def named(entity: str) -> str:
    """A pattern for `entity 'b'` in a message."""
    return rf"entity '{entity}'"


def random_walk_frame(lengths: dict[str, int], seed: int = 0, start: int = 2000) -> pd.DataFrame:
    """Long-format rows (entity, time, target, promo) of positive random walks, one per entity."""
    rng = np.random.default_rng(seed)
    rows = []
    for entity, length in lengths.items():
        target = 100.0 + np.cumsum(rng.normal(0.0, 5.0, size=length))
        rows.append(pd.DataFrame({"entity": entity, "time": np.arange(start, start + length), "target": target,
                                  "promo": rng.integers(0, 2, size=length).astype(np.float64)}))
    return pd.concat(rows, ignore_index=True)


def small_panel(lengths: dict[str, int] | None = None, seed: int = 0) -> SeriesPanel:
    return panel_from_frame(random_walk_frame(lengths or {"a": 20, "b": 18, "c": 16}, seed))


def with_values(panel: SeriesPanel, values: list[np.ndarray]) -> SeriesPanel:
    return SeriesPanel(panel.entities, panel.times, values, panel.observed, panel.covariates, panel.covariate_names)


def series_index(panel: SeriesPanel, entity: str) -> int:
    return int(np.flatnonzero(panel.entities == entity)[0])


# ---- 1. scaler leakage is caught by planting the future ------------------------------------------------


class WholeSeriesScaler(SeriesScaler):
    """Leaky: fits each series' mean/std on all its values, including the evaluated ones."""

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> WholeSeriesScaler:
        return super().fit(panel, panel.lengths)


class PeekingScaler(WindowScaler):
    """Leaky for entity 'c' only: its location is the first *forecast* value, values[cut]."""

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> PeekingScaler:
        return self

    def statistics(self, panel: SeriesPanel, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
        location = np.array([panel.values[s][cut if panel.entities[s] == "c" else cut - 1]
                             for s, cut in zip(windows.series.tolist(), windows.cut.tolist())])
        return location, np.ones(len(windows))


class OneEntityWholeSpanScaler(SeriesScaler):
    """Leaky for entity 'b' only: its statistics include its val and test values."""

    def fit(self, panel: SeriesPanel, fit_limits: np.ndarray) -> OneEntityWholeSpanScaler:
        limits = np.asarray(fit_limits).copy()
        limits[panel.entities == "b"] = panel.lengths[panel.entities == "b"]
        return super().fit(panel, limits)


def test_planted_future_value_in_scaler_statistics_is_caught() -> None:
    panel = small_panel()
    split = chronological_holdout(panel.lengths, panel.entities, horizon=HORIZON)

    with pytest.raises(LeakageError, match=named("a") + r".*its training span"):
        audit_scaler(WholeSeriesScaler, panel, split)  # the first train window (entity 'a') already moves
    with pytest.raises(LeakageError, match=named("b") + r".*its training span"):
        audit_scaler(OneEntityWholeSpanScaler, panel, split)
    with pytest.raises(LeakageError, match=r"train window of " + named("c") + r".*its forecast origin"):
        audit_scaler(PeekingScaler, panel, split)

    # Plant a huge value in the test horizon of 'b': no statistic of any window may move.
    b = series_index(panel, "b")
    planted_values = [v.copy() for v in panel.values]
    planted_values[b][-1] = 1e9
    planted = with_values(panel, planted_values)
    assert split.test.cut[split.test.series == b][0] == panel.lengths[b] - HORIZON  # the planted step is test
    for factory in (ContextScaler, SeriesScaler, IdentityScaler):
        real_scaler = factory().fit(panel, split.fit_limits)
        planted_scaler = factory().fit(planted, split.fit_limits)
        for stage in ("train", "val", "test"):
            windows = split.stage(stage)
            expected = real_scaler.statistics(panel, windows)
            actual = planted_scaler.statistics(planted, windows)
            np.testing.assert_array_equal(actual[0], expected[0])
            np.testing.assert_array_equal(actual[1], expected[1])
            assert np.all(actual[1] > 0)
        audit_scaler(factory, panel, split)
        audit_scaler(factory, planted, split)
    # ... whereas the leaky scaler's statistics of b's train windows do move.
    leaky_real = WholeSeriesScaler().fit(panel, split.fit_limits).statistics(panel, split.train)
    leaky_planted = WholeSeriesScaler().fit(planted, split.fit_limits).statistics(planted, split.train)
    moved = ~np.isclose(leaky_real[0], leaky_planted[0])
    assert np.array_equal(moved, split.train.series == b)


def test_series_scaler_statistics_come_from_the_training_span_only() -> None:
    panel = small_panel()
    split = chronological_holdout(panel.lengths, panel.entities, horizon=HORIZON)
    scaler = SeriesScaler().fit(panel, split.fit_limits)
    for s, entity in enumerate(panel.entities.tolist()):
        span = panel.values[s][: panel.lengths[s] - 2 * HORIZON]
        assert split.fit_limits[s] == panel.lengths[s] - 2 * HORIZON
        assert scaler.stats[entity] == pytest.approx((span.mean(), span.std()))


# ---- 2. windows never cross the split point ----------------------------------------------------------


@pytest.fixture(scope="module")
def m1_panel() -> SeriesPanel:
    return panel_from_frame(load_m1_yearly())


def check_chronological_windows(
    split: ForecastSplit,
    lengths: np.ndarray,
    *,
    horizon: int,
    fold: int,
    min_context: int,
    context_length: int | None,
) -> None:
    """Every window of every series against the rule: train < val origin <= val targets < test origin ..."""
    val_origin = lengths - horizon - fold * horizon - horizon
    test_origin = val_origin + horizon
    np.testing.assert_array_equal(split.fit_limits, np.clip(val_origin, 0, None))
    for stage in ("train", "val", "test"):
        windows = split.stage(stage)
        expected_start = 0 if context_length is None else np.maximum(windows.cut - context_length, 0)
        np.testing.assert_array_equal(windows.context_start, expected_start)
        assert np.all(windows.cut >= min_context) and np.all(windows.target_end > windows.cut)
        assert np.all(windows.target_end - windows.cut <= horizon)
    train, val, test = split.train, split.val, split.test
    assert np.all(train.target_end <= val_origin[train.series])
    np.testing.assert_array_equal(val.cut, val_origin[val.series])
    np.testing.assert_array_equal(val.target_end, test_origin[val.series])
    np.testing.assert_array_equal(test.cut, test_origin[test.series])
    np.testing.assert_array_equal(test.target_end, lengths[test.series] - fold * horizon)
    # One evaluation window per long-enough series, none for the others.
    np.testing.assert_array_equal(val.series, np.flatnonzero(val_origin >= min_context))
    np.testing.assert_array_equal(test.series, np.flatnonzero(test_origin >= min_context))
    for windows in (val, test):
        assert np.all(split.fit_limits[windows.series] <= windows.cut)


@pytest.mark.parametrize("context_length", [None, 10])
@pytest.mark.parametrize("fold", [0, 1, 2])
def test_windows_never_cross_the_split_point(m1_panel: SeriesPanel, fold: int, context_length: int | None) -> None:
    panel, horizon = m1_panel, 6
    split = chronological_holdout(panel.lengths, panel.entities, horizon=horizon, fold=fold,
                                  context_length=context_length)
    check_chronological_windows(split, panel.lengths, horizon=horizon, fold=fold, min_context=3,
                                context_length=context_length)
    if fold == 0:
        assert len(split.val) == len(split.test) == len(panel)  # every M1 series has >= 15 years
    audit_forecast_split(split, panel, "chronological")

    # The model's context ends exactly at the cut and its targets start there (raw units, no scaling).
    for stage in ("val", "test", "train"):
        windows = split.stage(stage)
        dataset = ForecastWindowDataset(panel, windows, IdentityScaler(), horizon=horizon)
        for i in range(0, len(dataset), 1 if stage != "train" else 13):
            s, start, cut, end = (int(windows.series[i]), int(windows.context_start[i]), int(windows.cut[i]),
                                  int(windows.target_end[i]))
            item = dataset[i]
            values = panel.values[s]
            np.testing.assert_allclose(item["inputs"][:, 0].numpy(), values[start:cut], rtol=1e-6)
            assert item["inputs"].shape[0] == cut - start
            np.testing.assert_allclose(item["target"][: end - cut].numpy(), values[cut:end], rtol=1e-6)
            assert item["target_mask"].tolist() == [True] * (end - cut) + [False] * (horizon - end + cut)


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    horizon=st.integers(1, 5),
    min_context=st.integers(1, 6),
    stride=st.integers(1, 4),
    partial=st.booleans(),
    fold=st.integers(0, 2),
    context_length=st.one_of(st.none(), st.integers(1, 8)),
)
def test_chronological_holdout_invariants_hold_for_any_lengths(
    lengths: list[int], horizon: int, min_context: int, stride: int, partial: bool, fold: int,
    context_length: int | None,
) -> None:
    lengths_array = np.array(lengths, dtype=np.int64)
    entities = np.array([f"s{i}" for i in range(len(lengths))])
    val_origin = lengths_array - (fold + 2) * horizon
    test_origin = val_origin + horizon
    last_cut = np.maximum(val_origin, 0) - (1 if partial else horizon)
    has = {"train": bool(np.any(last_cut >= min_context)), "val": bool(np.any(val_origin >= min_context)),
           "test": bool(np.any(test_origin >= min_context))}
    kwargs = {"horizon": horizon, "fold": fold, "min_context": min_context, "context_length": context_length,
              "stride": stride, "partial": partial}
    if not all(has.values()):
        empty = next(name for name, present in has.items() if not present)
        with pytest.raises(DataError, match=f"no {empty} windows"):
            chronological_holdout(lengths_array, entities, **kwargs)
        return
    split = chronological_holdout(lengths_array, entities, **kwargs)
    check_chronological_windows(split, lengths_array, horizon=horizon, fold=fold, min_context=min_context,
                                context_length=context_length)
    train = split.train
    if partial:
        np.testing.assert_array_equal(train.target_end, np.minimum(train.cut + horizon, val_origin[train.series]))
    else:
        assert np.all(train.target_end - train.cut == horizon)  # a full horizon in every training window
    for s in range(len(lengths)):
        cuts = train.cut[train.series == s]
        if last_cut[s] < min_context:
            assert cuts.shape[0] == 0
            continue
        # The most recent training window is always kept; the others step back by `stride`.
        assert cuts[-1] == last_cut[s]
        assert np.all(np.diff(cuts) == stride) and cuts[0] - stride < min_context
    assert sorted(split.skipped["val"]) == sorted(entities[val_origin < min_context].tolist())
    panel = SeriesPanel(entities, [np.arange(n) for n in lengths], [np.arange(n, dtype=np.float64) for n in lengths],
                        [np.ones(n, dtype=bool) for n in lengths], [np.zeros((n, 0)) for n in lengths], [])
    audit_forecast_split(split, panel, "chronological")


# ---- 3. the split audit rejects tampered splits ------------------------------------------------------


def test_audit_rejects_entity_split_sharing_an_entity() -> None:
    panel = small_panel({f"e{i}": 12 + i for i in range(10)})
    split = entity_holdout(panel.lengths, panel.entities, horizon=HORIZON, val_fraction=0.2, test_fraction=0.2)
    audit_forecast_split(split, panel, "entity")
    roles = {name: set(panel.entities[split.stage(name).series].tolist()) for name in ("train", "val", "test")}
    assert not (roles["train"] & roles["val"]) and not (roles["train"] & roles["test"])
    assert not (roles["val"] & roles["test"])

    s = int(split.train.series[0])
    entity = panel.entities[s]
    n = int(panel.lengths[s])
    leaked = Windows.concatenate([split.val, Windows([s], [0], [n - HORIZON], [n])])
    tampered = dataclasses.replace(split, val=leaked)
    with pytest.raises(LeakageError, match=rf"entity leakage: 1 entity appears .*'{entity}' \(train, val\)"):
        audit_forecast_split(tampered, panel, "entity")

    # An evaluated entity whose statistics would be fitted on its own evaluated steps.
    v = int(split.val.series[0])
    limits = split.fit_limits.copy()
    limits[v] = panel.lengths[v]
    with pytest.raises(LeakageError, match=r"statistics of " + named(str(panel.entities[v]))):
        audit_forecast_split(dataclasses.replace(split, fit_limits=limits), panel, "entity")


def test_audit_rejects_chronological_split_whose_train_targets_reach_the_val_span() -> None:
    panel = small_panel()
    split = chronological_holdout(panel.lengths, panel.entities, horizon=HORIZON)
    audit_forecast_split(split, panel, "chronological")
    b = series_index(panel, "b")
    last = int(np.flatnonzero(split.train.series == b)[-1])  # its target ends at b's val origin
    assert split.train.target_end[last] == split.val.cut[split.val.series == b][0]
    target_end = split.train.target_end.copy()
    target_end[last] += 1  # one target step inside the val span
    train = Windows(split.train.series, split.train.context_start, split.train.cut, target_end)
    with pytest.raises(LeakageError, match=r"chronological leakage: 1 val item\(s\).*entity 'b'"):
        audit_forecast_split(dataclasses.replace(split, train=train), panel, "chronological")
    # A window whose context does not end where its targets start is malformed.
    bad = Windows(split.test.series, split.test.cut, split.test.cut, split.test.target_end)
    with pytest.raises(LeakageError, match=r"malformed test window"):
        audit_forecast_split(dataclasses.replace(split, test=bad), panel, "chronological")


# ---- 4. missing and non-finite values ----------------------------------------------------------------


def nan_frame() -> pd.DataFrame:
    frame = random_walk_frame({"a": 10, "b": 10})
    frame.loc[(frame.entity == "b") & (frame.time.isin([2000, 2001, 2005])), "target"] = np.nan
    return frame


def test_nan_target_error_names_entity_and_time() -> None:
    with pytest.raises(DataError, match=r"missing \(NaN\) for entity 'b' at time 2000 \(3 missing.*missing: mask"):
        panel_from_frame(nan_frame())
    frame = random_walk_frame({"a": 10, "b": 10})
    frame.loc[(frame.entity == "b") & (frame.time == 2005), "target"] = np.nan
    with pytest.raises(DataError, match=r"entity 'b' at time 2005 .*data\.missing: mask"):
        panel_from_frame(frame)

    for missing in ("error", "mask"):
        infinite = random_walk_frame({"a": 10, "b": 10})
        infinite.loc[(infinite.entity == "a") & (infinite.time == 2003), "target"] = np.inf
        with pytest.raises(DataError, match=r"infinite for entity 'a' at time 2003"):
            panel_from_frame(infinite, missing=missing)
        bad_covariate = random_walk_frame({"a": 10, "b": 10})
        bad_covariate.loc[(bad_covariate.entity == "b") & (bad_covariate.time == 2007), "promo"] = np.nan
        with pytest.raises(DataError, match=r"covariate 'promo' is NaN/Inf for entity 'b' at time 2007"):
            panel_from_frame(bad_covariate, covariate_columns=["promo"], missing=missing)
    with pytest.raises(DataError, match="data.missing must be"):
        panel_from_frame(nan_frame(), missing="drop")  # type: ignore[arg-type]


def test_nan_target_masked_when_configured() -> None:
    frame = nan_frame()
    panel = panel_from_frame(frame, missing="mask")
    b = series_index(panel, "b")
    raw_b = frame[frame.entity == "b"].target.to_numpy()
    # Leading NaNs (2000, 2001) are dropped; 2005 is forward-filled from 2004 and flagged unobserved.
    assert panel.times[b].tolist() == list(range(2002, 2010))
    nan_step = 3  # 2005
    assert panel.observed[b].tolist() == [True, True, True, False, True, True, True, True]
    assert panel.values[b][nan_step] == raw_b[4]  # the 2004 value
    np.testing.assert_array_equal(np.delete(panel.values[b], nan_step), np.delete(raw_b[2:], nan_step))
    assert np.all(np.isfinite(panel.values[b])) and panel.observed[1 - b].all()

    windows = Windows([b, b], [0, 0], [2, 6], [5, 8])  # targets covering 2005; context covering 2005
    dataset = ForecastWindowDataset(panel, windows, ContextScaler(), horizon=HORIZON, observed_channel=True)
    covering = dataset[0]
    assert covering["target_mask"].tolist() == [True, False, True]
    assert covering["target"][1].item() == 0.0
    expected = (panel.values[b][[2, 4]] - dataset.location[0]) / dataset.scale[0]
    np.testing.assert_allclose(covering["target"][[0, 2]].numpy(), expected, rtol=1e-5, atol=1e-5)
    context = dataset[1]
    assert context["inputs"].shape == (6, 2)
    assert context["inputs"][:, 1].tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert context["inputs"][nan_step, 0] == context["inputs"][nan_step - 1, 0]  # forward-filled, finite
    assert context["target_mask"].tolist() == [True, True, False]  # only 2 steps left in the series
    # The masked step is left out of the context scale and of the MASE scale: pairs (0,1), (1,2), (4,5).
    values = panel.values[b][:6]
    pairs = [abs(values[1] - values[0]), abs(values[2] - values[1]), abs(values[5] - values[4])]
    assert dataset.scale[1] == pytest.approx(np.mean(pairs))
    assert dataset.mase_scale[1] == pytest.approx(np.mean(pairs))


# ---- 5. the data module on the user's file -----------------------------------------------------------


LENGTHS = {f"store-{i}": 14 + 2 * i for i in range(6)}


@pytest.fixture(params=["csv", "parquet"])
def panel_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    frame = random_walk_frame(LENGTHS, seed=3).sample(frac=1.0, random_state=0)  # rows in any order
    path = tmp_path / f"sales.{request.param}"
    if request.param == "csv":
        frame.to_csv(path, index=False)
    else:
        pytest.importorskip("pyarrow")
        frame.to_parquet(path, index=False)
    return path


def make_module(path: Path, **overrides: object) -> ForecastingDataModule:
    options: dict[str, object] = {"dataset": "long_format", "path": str(path), "horizon": HORIZON,
                                  "covariate_columns": ["promo"],
                                  "loader": LoaderSettings(batch_size=8, sampler_seed=0)}
    options.update(overrides)
    return ForecastingDataModule(**options)  # type: ignore[arg-type]


def test_data_module_reads_a_user_file_into_windows(panel_file: Path) -> None:
    dm = make_module(panel_file)
    assert dm.n_features == 2
    dm.setup("fit")
    frame = random_walk_frame(LENGTHS, seed=3)
    panel = dm.panel
    assert sorted(panel.entities.tolist()) == sorted(LENGTHS)
    assert {e: int(n) for e, n in zip(panel.entities.tolist(), panel.lengths.tolist())} == LENGTHS

    batches = list(dm.train_dataloader())
    assert sum(b.batch_size for b in batches) == len(dm.datasets["train"])
    for batch in batches:
        assert isinstance(batch, ForecastBatch)
        B, T = batch.batch_size, int(batch.lengths.max())
        assert batch.inputs.shape == (B, T, 2) and batch.mask.shape == (B, T)
        assert batch.targets.shape == (B, HORIZON) and batch.target_mask.shape == (B, HORIZON)
        assert batch.location.shape == batch.scale.shape == batch.mase_scale.shape == (B,)
        assert torch.all(batch.scale > 0) and torch.all(torch.isfinite(batch.inputs))
        assert torch.all(batch.inputs[~batch.mask] == 0)

    # Test windows are exactly the last `horizon` steps of every series, in original units.
    test = dm.datasets["test"]
    assert len(test) == len(LENGTHS)
    np.testing.assert_array_equal(test.windows.cut, panel.lengths[test.windows.series] - HORIZON)
    np.testing.assert_array_equal(test.windows.target_end, panel.lengths[test.windows.series])
    for i in range(len(test)):
        entity = panel.entities[int(test.windows.series[i])]
        item = test[i]
        raw = item["target"].double().numpy() * item["scale"] + item["location"]
        np.testing.assert_allclose(raw, frame[frame.entity == entity].target.to_numpy()[-HORIZON:], rtol=1e-5)
        assert item["target_mask"].all()
    # The covariate channel is standardised with training-span statistics only.
    train_promo = np.concatenate([c[:limit, 0] for c, limit in zip(panel.covariates, dm.split.fit_limits)])
    assert dm.covariate_normalizer.mean == pytest.approx([train_promo.mean()])
    assert dm.covariate_normalizer.std == pytest.approx([train_promo.std()])
    val = dm.datasets["val"]
    np.testing.assert_array_equal(val.windows.cut, panel.lengths[val.windows.series] - 2 * HORIZON)
    np.testing.assert_array_equal(dm.split.fit_limits, panel.lengths - 2 * HORIZON)
    dm.setup("predict")
    predict = dm.datasets["predict"]
    np.testing.assert_array_equal(predict.windows.cut, panel.lengths[predict.windows.series])
    assert dm.item_ids("test")[0].endswith(f"@{2000 + int(panel.lengths[test.windows.series[0]]) - HORIZON}")


def test_data_module_entity_split_holds_out_whole_series(panel_file: Path) -> None:
    dm = make_module(panel_file, split="entity", val_fraction=0.2, test_fraction=0.2)
    dm.setup("fit")
    panel = dm.panel
    held = {name: set(panel.entities[dm.datasets[name].windows.series].tolist()) for name in ("train", "val", "test")}
    assert held["train"] and held["val"] and held["test"]
    assert not (held["train"] & held["val"]) and not (held["train"] & held["test"])
    assert not (held["val"] & held["test"])
    assert held["train"] | held["val"] | held["test"] == set(LENGTHS)
    for name in ("val", "test"):
        windows = dm.datasets[name].windows
        np.testing.assert_array_equal(windows.cut, panel.lengths[windows.series] - HORIZON)


def test_data_module_validates_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    random_walk_frame(LENGTHS).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"seasonality must be >= 1"):
        make_module(path, seasonality=0)
    with pytest.raises(DataError, match=r"data\.fold .*split: chronological"):
        make_module(path, split="entity", fold=1)
    with pytest.raises(DataError, match=r"needs data\.path .* and data\.horizon"):
        ForecastingDataModule(dataset="long_format", path=str(path))
    with pytest.raises(DataError, match=r"data\.fold must be >= 0"):
        make_module(path, fold=-1).setup("fit")
    with pytest.raises(DataError, match=r"no (val|test|train) windows"):
        make_module(path, fold=10).setup("fit")
    with pytest.raises(DataError, match=r"step_dropout in \[0, 1\)"):
        make_module(path, step_dropout=1.0)
    assert make_module(path, missing="mask").n_features == 3
    dm = make_module(path, fold=1, seasonality=2)
    dm.setup("fit")  # a backtest fold: test stops one horizon before the end
    test = dm.datasets["test"].windows
    np.testing.assert_array_equal(test.target_end, dm.panel.lengths[test.series] - HORIZON)


# ---- 6. augmentation is train-only -------------------------------------------------------------------


def one_train_batch(path: Path, **overrides: object) -> tuple[ForecastingDataModule, ForecastBatch]:
    dm = make_module(path, loader=LoaderSettings(batch_size=32, bucketing=False, sampler_seed=0), **overrides)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.n_pad > 0  # mixed context lengths, so there is padding to leave alone
    return dm, batch


def test_augment_is_train_only(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    random_walk_frame(LENGTHS).to_csv(path, index=False)
    dm, batch = one_train_batch(path, jitter=0.1, step_dropout=0.3, missing="mask", scaling="series")
    original = batch.inputs.clone()
    rows = torch.arange(batch.batch_size)
    last = batch.lengths - 1

    for trainer in (None, SimpleNamespace(training=False)):
        dm.trainer = trainer  # type: ignore[assignment]
        assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    torch.manual_seed(0)
    augmented = dm.on_after_batch_transfer(batch, 0)
    assert torch.equal(batch.inputs, original)  # the loader's batch is not modified in place
    assert isinstance(augmented, ForecastBatch) and not torch.equal(augmented.inputs, original)
    assert torch.equal(augmented.inputs[~batch.mask], original[~batch.mask])  # padding untouched
    assert torch.equal(augmented.targets, batch.targets) and torch.equal(augmented.target_mask, batch.target_mask)
    assert torch.equal(augmented.inputs[..., 2], original[..., 2])  # covariates are not augmented
    # Hidden steps: target channel 0 and observed flag 0; some were hidden, never the last real step.
    hidden = (augmented.inputs[..., 1] == 0) & batch.mask
    assert hidden.any() and not hidden[rows, last].any()
    assert torch.all(augmented.inputs[..., 0][hidden] == 0)
    assert torch.all(augmented.inputs[rows, last, 1] == 1)

    # Step dropout alone never changes the last real step's value (the anchor).
    dm2, batch2 = one_train_batch(path, step_dropout=0.3, scaling="series")
    dm2.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    torch.manual_seed(1)
    dropped = dm2.on_after_batch_transfer(batch2, 0)
    rows2, last2 = torch.arange(batch2.batch_size), batch2.lengths - 1
    assert not torch.equal(dropped.inputs, batch2.inputs)
    assert torch.equal(dropped.inputs[rows2, last2], batch2.inputs[rows2, last2])
    assert torch.equal(dropped.inputs[~batch2.mask], batch2.inputs[~batch2.mask])
    # No augmentation configured: the batch passes through even in training.
    dm3, batch3 = one_train_batch(path)
    dm3.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    assert dm3.on_after_batch_transfer(batch3, 0) is batch3


# ---- 7. scaling correctness --------------------------------------------------------------------------


def panel_of(*series: list[float], observed: list[list[bool]] | None = None) -> SeriesPanel:
    values = [np.array(v, dtype=np.float64) for v in series]
    flags = [np.ones(len(v), dtype=bool) for v in series] if observed is None else [np.array(o) for o in observed]
    return SeriesPanel(np.array([f"s{i}" for i in range(len(series))]), [np.arange(len(v)) for v in values],
                       values, flags, [np.zeros((len(v), 0)) for v in values], [])


def test_context_scaler_is_last_value_and_mean_absolute_change() -> None:
    panel = panel_of([1, 3, 2, 6, 6, 100], [4, 4, 4, 9], [0, 0, 0, 9], [-2, -2, -2, 9], [5, 9], [1, 3, 3, 7, 9],
                     observed=[[True] * 6, [True] * 4, [True] * 4, [True] * 4, [True] * 2,
                               [True, True, False, True, True]])
    windows = Windows([0, 0, 1, 2, 3, 4, 5], [0, 2, 0, 0, 0, 0, 0], [5, 5, 3, 3, 3, 1, 4], [6, 6, 4, 4, 4, 2, 5])
    location, scale = ContextScaler().statistics(panel, windows)
    np.testing.assert_array_equal(location, [6, 6, 4, 0, -2, 5, 7])
    expected_scale = [
        (2 + 1 + 4 + 0) / 4,  # mean |diff| of the whole context, not of the future value 100
        (4 + 0) / 2,  # only the context [2, 6, 6]
        4.0,  # flat context: mean |value|
        1.0,  # flat zero context: 1
        2.0,  # flat negative context: mean |value|
        5.0,  # a one-step context has no change: mean |value|
        2.0,  # the unobserved step 2 takes part in no pair: |3 - 1| only
    ]
    np.testing.assert_allclose(scale, expected_scale)

    rng = np.random.default_rng(5)
    panel = small_panel({"a": 30, "b": 25}, seed=7)
    split = chronological_holdout(panel.lengths, panel.entities, horizon=HORIZON, context_length=6)
    location, scale = ContextScaler().statistics(panel, split.train)
    for i in rng.choice(len(split.train), size=20, replace=False).tolist():
        s, start, cut = int(split.train.series[i]), int(split.train.context_start[i]), int(split.train.cut[i])
        context = panel.values[s][start:cut]
        assert location[i] == context[-1]
        assert scale[i] == pytest.approx(np.abs(np.diff(context)).mean())


@pytest.mark.parametrize("seasonality", [1, 2, 3])
def test_in_sample_scale_matches_the_mase_metric(seasonality: int) -> None:
    rng = np.random.default_rng(seasonality)
    values = rng.normal(10.0, 3.0, size=12)
    for observed in (np.ones(12, dtype=bool), np.arange(12) != 5):
        expected = np.mean([abs(values[t] - values[t - seasonality]) for t in range(seasonality, 12)
                            if observed[t] and observed[t - seasonality]])
        numpy_scale = in_sample_scale(values, observed, seasonality)
        torch_scale = mase_scale(torch.from_numpy(values)[None], torch.from_numpy(observed)[None], seasonality)
        assert numpy_scale == pytest.approx(expected)
        assert torch_scale.item() == pytest.approx(numpy_scale, rel=1e-12)
    # Too short a history: NaN here, an error in the metric (the data module warns and MASE skips it).
    assert math.isnan(in_sample_scale(values[:seasonality], np.ones(seasonality, dtype=bool), seasonality))
    with pytest.raises(ValueError, match="no two observations"):
        mase_scale(torch.from_numpy(values[:seasonality])[None], seasonality=seasonality)


def test_window_mase_scale_uses_the_whole_history_before_the_cut() -> None:
    panel = small_panel({"a": 20, "b": 16}, seed=2)
    split = chronological_holdout(panel.lengths, panel.entities, horizon=HORIZON, context_length=4)
    for seasonality in (1, 2):
        dataset = ForecastWindowDataset(panel, split.val, ContextScaler(), horizon=HORIZON, seasonality=seasonality,
                                        covariates=CovariateNormalizer().fit(panel, split.fit_limits))
        for i in range(len(dataset)):
            s, cut = int(split.val.series[i]), int(split.val.cut[i])
            history = torch.from_numpy(panel.values[s][:cut])[None]
            assert dataset.mase_scale[i] == pytest.approx(mase_scale(history, seasonality=seasonality).item())
            assert dataset[i]["inputs"].shape[0] == 4  # the context is shorter than the MASE history


def test_leakage_messages_write_the_entity_as_the_user_wrote_it() -> None:
    panel = small_panel()
    split = chronological_holdout(panel.lengths, panel.entities, horizon=HORIZON)
    messages = []
    with pytest.raises(LeakageError) as scaler_leak:
        audit_scaler(WholeSeriesScaler, panel, split)
    messages.append(str(scaler_leak.value))
    limits = split.fit_limits.copy()
    limits[0] = panel.lengths[0]
    with pytest.raises(LeakageError) as fit_leak:
        audit_forecast_split(dataclasses.replace(split, fit_limits=limits), panel, "chronological")
    messages.append(str(fit_leak.value))
    bad = Windows(split.test.series, split.test.cut, split.test.cut, split.test.target_end)
    with pytest.raises(LeakageError) as malformed:
        audit_forecast_split(dataclasses.replace(split, test=bad), panel, "chronological")
    messages.append(str(malformed.value))
    for message in messages:
        assert "entity 'a'" in message and "np.str_" not in message, message
