"""MASE and sMAPE: formulas, edge cases, and the M1-yearly protocol check (naive forecast = 4.89 MASE)."""

from __future__ import annotations

import math

import pytest
import torch

from seqlit.data.sources import load_m1_yearly
from seqlit.metrics.forecasting import MeanAbsoluteScaledError, SymmetricMAPE, mase_scale


def test_mase_scale_uses_only_observed_history_pairs_at_the_season_lag() -> None:
    history = torch.tensor([[1.0, 3.0, 2.0, 6.0, 0.0], [5.0, 5.0, 8.0, 7.0, 11.0]])
    mask = torch.tensor([[True, True, True, True, False], [True, True, True, True, True]])
    torch.testing.assert_close(mase_scale(history, mask), torch.tensor([(2 + 1 + 4) / 3, (0 + 3 + 1 + 4) / 4]))
    torch.testing.assert_close(mase_scale(history[1:], seasonality=2), torch.tensor([(3 + 2 + 3) / 3]))


def test_undefined_scales_are_explained() -> None:
    with pytest.raises(ValueError, match="rows \\[0\\] have a constant history"):
        mase_scale(torch.tensor([[2.0, 2.0, 2.0]]))
    with pytest.raises(ValueError, match="no two observations 4 step"):
        mase_scale(torch.tensor([[1.0, 2.0, 3.0]]), seasonality=4)


def test_mase_and_smape_average_per_series_then_over_series() -> None:
    mase, smape = MeanAbsoluteScaledError(), SymmetricMAPE()
    predictions = torch.tensor([[2.0, 2.0], [0.0, 10.0]])
    targets = torch.tensor([[1.0, 3.0], [0.0, 30.0]])
    mase.update(predictions, targets, scale=torch.tensor([0.5, 10.0]))
    smape.update(predictions, targets)
    assert math.isclose(float(mase.compute()), (2.0 + 1.0) / 2, rel_tol=1e-6)
    expected_smape = ((200 / 3 + 200 / 5) / 2 + (0.0 + 200 * 20 / 40) / 2) / 2  # 0/0 counts as 0
    assert math.isclose(float(smape.compute()), expected_smape, rel_tol=1e-6)


def test_m1_yearly_naive_forecast_reproduces_the_published_protocol() -> None:
    frame = load_m1_yearly()
    series = [group["target"].to_numpy() for _, group in frame.groupby("entity", sort=False)]
    assert list(frame.columns) == ["entity", "time", "target"] and len(series) == 181
    assert all((group["time"].diff().dropna() == 1).all() for _, group in frame.groupby("entity"))  # yearly steps
    assert min(len(values) for values in series) == 15
    mase, smape = MeanAbsoluteScaledError(), SymmetricMAPE()
    for values in series:
        history, future = torch.tensor(values[:-6])[None], torch.tensor(values[-6:])[None]  # horizon 6
        naive = history[:, -1:].expand(-1, 6)  # last observed value, repeated
        mase.update(naive, future, mase_scale(history))
        smape.update(naive, future)
    assert abs(float(mase.compute()) - 4.894) < 0.001
    assert abs(float(smape.compute()) - 22.43) < 0.01
