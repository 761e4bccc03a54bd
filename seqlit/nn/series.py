"""Per-series input transforms for classifiers: instance normalisation and training-time augmentation.

All take padded (B, T, F) values with a (B, T) mask and leave padded steps exactly zero, so a series is
transformed the same alone or in a padded batch (augmentation draws its noise per batch, as dropout does).
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqlit.errors import SettingError


def instance_normalise(values: Tensor, mask: Tensor, eps: float = 1e-5) -> Tensor:
    """Each series and feature to zero mean and unit variance over its own valid steps: (B, T, F) -> (B, T, F).

    Removes level and scale differences between series (a sensor's offset, a speaker's loudness) that the
    data set's global normaliser keeps; a constant series becomes zeros.
    """
    observed = mask.unsqueeze(-1).to(values.dtype)  # (B, T, 1)
    count = observed.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    mean = (values * observed).sum(dim=1, keepdim=True) / count  # (B, 1, F)
    variance = ((values - mean) ** 2 * observed).sum(dim=1, keepdim=True) / count  # (B, 1, F)
    return (values - mean) / (variance + eps).sqrt() * observed  # (B, T, F)


def check_augmentation(**rates: float) -> None:
    """Refuses a negative augmentation rate, naming the model option (`model.jitter`, `model.scaling`)."""
    for name, value in rates.items():
        if value < 0:
            raise SettingError(f"model.{name} must be >= 0 (0 switches the augmentation off), got {value}.")


def jitter_and_scale(values: Tensor, mask: Tensor, jitter: float, scaling: float) -> Tensor:
    """Training augmentation: Gaussian noise of std `jitter` on every valid step, and each series' features
    multiplied by 1 + N(0, scaling^2). Inputs are normalised (std about 1), so both are in units of the data's
    spread. (B, T, F) -> (B, T, F), padding kept at zero. The rates are checked once, by `check_augmentation`,
    when the model is built, not on every training step."""
    observed = mask.unsqueeze(-1).to(values.dtype)  # (B, T, 1)
    if scaling > 0:
        factors = 1.0 + scaling * torch.randn(values.shape[0], 1, values.shape[2], device=values.device, dtype=values.dtype)
        values = values * factors  # (B, T, F)
    if jitter > 0:
        values = values + jitter * torch.randn_like(values)
    return values * observed  # (B, T, F)
