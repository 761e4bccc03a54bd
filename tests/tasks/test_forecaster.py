"""Forecaster task: losses over observed targets only, quantiles, baselines through the same evaluation,
learning on M1 yearly, predictions in original units, refused checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch

from seqlit.cli import SeqlitCLI
from seqlit.data.datamodules.forecasting import ForecastingDataModule
from seqlit.errors import CheckpointMismatchError, SeqlitError
from seqlit.tasks.forecaster import Forecaster
from seqlit.types import ForecastBatch
from tests.builders import forecaster

REPO = Path(__file__).resolve().parents[2]
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def _batch(targets: torch.Tensor, mask: torch.Tensor) -> ForecastBatch:
    batch_size, horizon = targets.shape
    inputs = torch.randn(batch_size, 5, 1)
    return ForecastBatch(
        inputs=inputs, lengths=torch.full((batch_size,), 5), mask=torch.ones(batch_size, 5, dtype=torch.bool),
        targets=targets, target_mask=mask, location=torch.zeros(batch_size, dtype=torch.float64),
        scale=torch.ones(batch_size, dtype=torch.float64), mase_scale=torch.ones(batch_size, dtype=torch.float64),
        indices=torch.arange(batch_size), n_tokens=batch_size * 5, n_pad=0,
    )


def test_loss_counts_observed_targets_only_and_pinball_matches_its_formula() -> None:
    model = Forecaster(n_features=1, horizon=3, loss="quantile", quantiles=[0.1, 0.5, 0.9])
    targets = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    predictions = torch.zeros(2, 3, 3)
    summed = model._summed_loss(predictions, _batch(targets, mask))
    # pinball(y, 0) = q*y for y > 0, (q-1)*y for y < 0, averaged over quantiles: |y| * mean(q or 1-q) = |y| / 2
    expected = sum(abs(v) / 2 for v in (1.0, 2.0, 0.0, -1.0, 3.0))
    torch.testing.assert_close(summed, torch.tensor(expected))
    l1 = Forecaster(n_features=1, horizon=3)._summed_loss(torch.full((2, 3, 1), 1.0), _batch(targets, mask))
    torch.testing.assert_close(l1, torch.tensor(0.0 + 1.0 + 1.0 + 2.0 + 2.0))  # the masked 0 target is skipped


def test_quantiles_must_include_the_median_and_need_the_quantile_loss() -> None:
    with pytest.raises(ValueError, match="include 0.5"):
        Forecaster(n_features=1, horizon=3, loss="quantile", quantiles=[0.1, 0.9])
    with pytest.raises(ValueError, match="only used with loss: quantile"):
        Forecaster(n_features=1, horizon=3, quantiles=[0.5])


def test_checkpoint_for_another_horizon_is_refused() -> None:
    model = Forecaster(n_features=1, horizon=6)
    with pytest.raises(CheckpointMismatchError, match="horizon 4 but this run has 6"):
        model.on_load_checkpoint({"hyper_parameters": {"horizon": 4, "n_features": 1, "network": "direct"}})


def test_training_a_baseline_explains_how_to_evaluate_it() -> None:
    model = Forecaster(n_features=1, horizon=6, network="naive")
    with pytest.raises(SeqlitError, match="seqlit test"):
        model.configure_optimizers()


@pytest.mark.parametrize("network", ["direct", "encoder_decoder"])
def test_gru_learns_m1_yearly_and_beats_the_naive_forecast(network: str) -> None:
    pl.seed_everything(0)
    datamodule = ForecastingDataModule()
    extra = {"teacher_forcing": "linear", "teacher_forcing_c": 0.005} if network == "encoder_decoder" else {}
    model = forecaster(datamodule.n_features, datamodule.horizon, network=network, hidden_size=32, **extra)
    trainer = pl.Trainer(max_epochs=4, gradient_clip_val=1.0, **QUIET)
    trainer.fit(model, datamodule=datamodule)
    mase = trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/mase"]
    naive = trainer.test(Forecaster(1, 6, network="naive"), datamodule=datamodule, verbose=False)[0]["test/mase"]
    print(f"{network}: test MASE after 4 epochs {mase:.3f}, naive {naive:.3f}")
    assert naive == pytest.approx(4.894, abs=1e-3)
    assert mase < 3.9


def test_quantile_forecaster_logs_interval_coverage() -> None:
    pl.seed_everything(0)
    datamodule = ForecastingDataModule()
    model = forecaster(1, 6, hidden_size=16, loss="quantile", quantiles=[0.1, 0.5, 0.9])
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=10, **QUIET)
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= results["test/coverage"] <= 1.0 and results["test/mase"] > 0


def test_cli_fit_then_predict_writes_forecasts_in_original_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/m1_yearly_gru.yaml")
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    SeqlitCLI(args=["fit", "--config", config, "--trainer.max_epochs", "2", "--test_after_fit", "false", *quiet])
    SeqlitCLI(args=["predict", "--config", config, "--ckpt_path", "last", "--predictions_path", "forecast.csv", *quiet])
    forecasts = pd.read_csv(tmp_path / "forecast.csv")
    assert list(forecasts.columns) == ["id", "prediction", *[f"h{h}" for h in range(1, 7)]]
    assert len(forecasts) == 181 and forecasts["id"].str.endswith("@end").all()
    last_values = ForecastingDataModule().panel.values
    # Forecasts are in each series' own units: the first step lies near the series' last value.
    ratio = forecasts["h1"].to_numpy() / [values[-1] for values in last_values]
    assert 0.5 < float(pd.Series(ratio).median()) < 2.0


def test_windows_without_a_mase_scale_are_left_out_of_mase_only(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Forecaster(n_features=1, horizon=2, network="naive")
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    batch = _batch(torch.tensor([[1.0, 2.0], [4.0, 4.0]]), torch.ones(2, 2, dtype=torch.bool))
    batch.inputs[:, -1, 0] = 0.0  # naive forecast 0
    batch.mase_scale = torch.tensor([2.0, float("nan")], dtype=torch.float64)  # row 1: constant history
    model._evaluate(batch, "test")
    assert float(model.metrics["test_mase"].compute()) == pytest.approx((1.0 + 2.0) / 2 / 2.0)
    assert float(model.metrics["test_smape"].compute()) == pytest.approx(200.0)  # both rows: |y - 0| / |y| = 1
