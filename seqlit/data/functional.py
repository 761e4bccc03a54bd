"""Pure tensor functions for padding, masking and training-time augmentation; collates and modules wrap them.

Padding statistics (`padding_counts` and friends) live in `seqlit.padding`, shared with callbacks and doctor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_sequences(
    sequences: Sequence[Tensor], padding_value: float = 0.0, max_length: int | None = None
) -> Tensor:
    """Stacks variable-length (T_i, ...) tensors into a right-padded (B, T, ...) tensor.

    `max_length` pads further than the longest item (never truncates: a longer item is an error,
    because silently cutting sequences changes what the model sees).
    """
    if len(sequences) == 0:
        raise ValueError("pad_sequences got no sequences: a batch needs at least one item.")
    longest = max(int(s.shape[0]) for s in sequences)
    target_length = longest if max_length is None else max_length
    if target_length < longest:
        raise ValueError(
            f"pad_sequences: an item has {longest} steps but max_length={max_length}; "
            "raise max_length or truncate the data before batching."
        )
    first = sequences[0]
    out = first.new_full((len(sequences), target_length, *first.shape[1:]), padding_value)  # (B, T, ...)
    for row, seq in enumerate(sequences):
        out[row, : seq.shape[0]] = seq
    return out


def lengths_to_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Boolean (B, T) mask that is True on the first `lengths[b]` steps of row b."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    total = int(lengths.max()) if max_length is None else max_length
    # A shorter grid would mark every step of a longer row as real; checked on the CPU only, where it costs no
    # device synchronisation (collates build masks there).
    if max_length is not None and lengths.device.type == "cpu" and lengths.numel() and int(lengths.max()) > total:
        raise ValueError(
            f"lengths_to_mask: a row has {int(lengths.max())} steps but max_length={max_length}; pass the padded "
            "length of the batch (at least the longest row)."
        )
    steps = torch.arange(total, device=lengths.device)  # (T,)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def mask_to_lengths(mask: Tensor) -> Tensor:
    """Inverse of `lengths_to_mask` for right-padded masks: (B, T) bool -> (B,) long."""
    return mask.long().sum(dim=1)


# ---- augmentation (training only; the data modules decide when to apply it) ------------------------------


def time_jitter(values: Tensor, mask: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """values (B, T, F), mask (B, T) -> values plus Gaussian noise of `sigma` x each series' per-feature std.

    The std is measured on the series' own observed steps, so the noise is scale-free across series; padded
    steps are left exactly as they were. Returns a new tensor.
    """
    _check_rate("sigma", sigma, upper=None)
    observed = mask.unsqueeze(-1).to(values.dtype)  # (B, T, 1)
    count = observed.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    mean = (values * observed).sum(dim=1, keepdim=True) / count  # (B, 1, F)
    std = (((values - mean) ** 2 * observed).sum(dim=1, keepdim=True) / count).sqrt()  # (B, 1, F)
    noise = torch.randn(values.shape, generator=generator, dtype=values.dtype).to(values.device)  # (B, T, F)
    return values + sigma * std * noise * observed  # (B, T, F)


def step_dropout(
    values: Tensor, mask: Tensor, p: float, fill: float = 0.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """values (B, T, F), mask (B, T) -> (values with dropped steps set to `fill`, (B, T) mask of dropped steps).

    Each observed step is dropped with probability `p`; padding is never dropped. The second result lets a
    model be told which steps were hidden (e.g. as an extra input feature).
    """
    _check_rate("p", p, upper=1.0)
    draws = torch.rand(mask.shape, generator=generator).to(mask.device)  # (B, T)
    dropped = (draws < p) & mask  # (B, T)
    return values.masked_fill(dropped.unsqueeze(-1), fill), dropped  # (B, T, F), (B, T)


def token_dropout(
    ids: Tensor, p: float, replacement: int, protected: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """ids (B, T) -> a copy where each token is replaced by `replacement` (e.g. UNK_ID) with probability `p`.

    `protected` (B, T) bool marks positions never replaced (padding, BOS/EOS); the targets are not touched.
    """
    _check_rate("p", p, upper=1.0)
    replace = torch.rand(ids.shape, generator=generator).to(ids.device) < p  # (B, T)
    if protected is not None:
        replace &= ~protected
    return ids.masked_fill(replace, replacement)  # (B, T)


def _check_rate(name: str, value: float, upper: float | None) -> None:
    if value < 0 or (upper is not None and value >= upper):
        bound = f"[0, {upper})" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value}; use 0 to switch the augmentation off.")
