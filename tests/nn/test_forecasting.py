"""Forecasting networks: padding never leaks in, the fused and step-by-step decoders agree, baselines are exact."""

from __future__ import annotations

import pytest
import torch

from seqlit.data.functional import pad_sequences
from seqlit.nn.forecasting import BaselineForecaster, DirectForecaster, EncoderDecoderForecaster


def _contexts(lengths: list[int], features: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, features, generator=generator) for n in lengths]


@pytest.mark.parametrize("network", ["direct", "encoder_decoder"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_forecast_does_not_depend_on_batch_padding(network: str, cell: str) -> None:
    torch.manual_seed(0)
    model = (DirectForecaster(2, horizon=4, quantiles=[0.1, 0.5, 0.9], hidden_size=8, cell=cell) if network == "direct"
             else EncoderDecoderForecaster(2, horizon=4, quantiles=[0.1, 0.5, 0.9], hidden_size=8, cell=cell))
    model.eval()
    contexts = _contexts([3, 9, 5])
    batched = model(pad_sequences(contexts, 0.0), torch.tensor([3, 9, 5]))  # (3, 4, 3)
    assert batched.shape == (3, 4, 3)
    for row, context in enumerate(contexts):
        alone = model(context[None], torch.tensor([context.shape[0]]))
        torch.testing.assert_close(batched[row], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_teacher_forced_decoder_fed_its_own_forecasts_equals_free_running(cell: str) -> None:
    """The fused all-steps path and the step loop are the same computation."""
    torch.manual_seed(0)
    model = EncoderDecoderForecaster(2, horizon=5, hidden_size=8, cell=cell)
    model.eval()
    inputs, lengths = pad_sequences(_contexts([6, 4]), 0.0), torch.tensor([6, 4])
    free = model(inputs, lengths)  # (2, 5, 1) step by step, fed its own forecasts
    forced = model(inputs, lengths, targets=free[..., 0].detach(), teacher_forcing_prob=1.0)  # fused
    torch.testing.assert_close(forced, free, rtol=1e-5, atol=1e-6)
    other_targets = model(inputs, lengths, targets=torch.full((2, 5), 50.0), teacher_forcing_prob=0.0)
    torch.testing.assert_close(other_targets, free)  # without teacher forcing the targets are never read


def test_scheduled_sampling_never_feeds_a_missing_target() -> None:
    torch.manual_seed(0)
    model = EncoderDecoderForecaster(1, horizon=4, hidden_size=8)
    inputs, lengths = pad_sequences(_contexts([5, 5], features=1), 0.0), torch.tensor([5, 5])
    targets = torch.tensor([[1.0, float("nan"), 2.0, float("nan")], [0.5, 0.5, 0.5, 0.5]])
    mask = ~targets.isnan()
    for probability in (0.5, 1.0):
        assert torch.isfinite(model(inputs, lengths, targets, mask, teacher_forcing_prob=probability)).all()


def test_baselines_match_their_textbook_formulas_and_ignore_padding() -> None:
    series = [torch.tensor([1.0, 2.0, 4.0, 7.0]), torch.tensor([5.0, 3.0, 6.0, 2.0, 8.0, 4.0])]
    inputs = pad_sequences([s[:, None] for s in series], 99.0)  # padding must never be read
    lengths = torch.tensor([4, 6])
    naive = BaselineForecaster("naive", horizon=3)(inputs, lengths)[..., 0]
    torch.testing.assert_close(naive, torch.tensor([[7.0] * 3, [4.0] * 3]))
    drift = BaselineForecaster("drift", horizon=3)(inputs, lengths)[..., 0]
    torch.testing.assert_close(drift, torch.tensor([[9.0, 11.0, 13.0], [3.8, 3.6, 3.4]]))
    seasonal = BaselineForecaster("seasonal_naive", horizon=5, seasonality=2)(inputs, lengths)[..., 0]
    torch.testing.assert_close(seasonal, torch.tensor([[4.0, 7.0, 4.0, 7.0, 4.0], [8.0, 4.0, 8.0, 4.0, 8.0]]))


@pytest.mark.parametrize("kind", ["naive", "seasonal_naive", "drift"])
def test_baselines_commute_with_affine_scaling(kind: str) -> None:
    """So forecasting in each window's scaled units and mapping back gives the classical forecast."""
    inputs = pad_sequences(_contexts([7, 4], features=1), 0.0)
    lengths = torch.tensor([7, 4])
    baseline = BaselineForecaster(kind, horizon=4, seasonality=3)  # type: ignore[arg-type]
    location, scale = torch.tensor([3.0, -2.0]), torch.tensor([0.5, 4.0])
    scaled = (inputs - location[:, None, None]) / scale[:, None, None]
    mapped_back = baseline(scaled, lengths) * scale[:, None, None] + location[:, None, None]
    torch.testing.assert_close(mapped_back, baseline(inputs, lengths), rtol=1e-5, atol=1e-5)
