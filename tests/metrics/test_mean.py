"""MeanPerTarget: the mean over targets from summed states, usable after an inference-mode reset."""

import math

import pytest
import torch

from seqlit.metrics.mean import MeanPerTarget


def test_mean_is_weighted_by_targets_not_by_batches() -> None:
    metric = MeanPerTarget()
    metric.update(torch.tensor(3.0), 1)  # one target with loss 3
    metric.update(torch.tensor(4.0), 4)  # four targets with loss 1 each
    assert float(metric.compute()) == pytest.approx(7.0 / 5)  # the mean of batch means would be 2.0


def test_nan_before_any_target_and_zero_after_reset() -> None:
    metric = MeanPerTarget()
    assert math.isnan(float(metric.compute()))
    metric.update(torch.tensor(2.0), 2)
    metric.reset()
    metric.update(torch.tensor(5.0), 5)
    assert float(metric.compute()) == 1.0


def test_states_reset_in_inference_mode_still_accept_updates_afterwards() -> None:
    """What `trainer.validate` followed by `trainer.fit` does to a metric."""
    metric = MeanPerTarget()
    with torch.inference_mode():
        metric.update(torch.tensor(1.0), 1)
        metric.reset()
    metric.update(torch.tensor(6.0), 3)
    assert float(metric.compute()) == 2.0
