"""`ConvFrontend`: a strided 1-D convolution stack before the recurrent layer, so long series reach the RNN
as a few hundred steps of local features instead of thousands of raw values.

Built as `frontend(input_size, longest_sequence)`: with `max_steps`, the first convolution's stride is chosen
once from the longest *training* sequence (linked from the data module) so that no sequence gives the RNN more
than `max_steps` steps; short data sets get stride 1 and the stack is then a plain local feature extractor.
Padding never leaks in: every layer's padded positions are zeroed, and a sequence's outputs are the same
alone or in a padded batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError
from seqlit.nn.device import to_device_async
from seqlit.nn.dropout import check_probability
from seqlit.validation import require_int_at_least


class ConvFrontend(nn.Module):
    """(B, T, I) features, lengths (B,) -> (B, ceil(T / stride), channels) features, new lengths (B,).

    Each layer is Conv1d -> LayerNorm over channels -> GELU -> dropout; the first one strides. LayerNorm (not
    BatchNorm) keeps a sequence's features independent of the other sequences in its batch.
    """

    def __init__(
        self,
        input_size: int,
        longest_sequence: int | None = None,
        channels: int = 64,
        kernel_size: int = 5,
        num_layers: int = 2,
        max_steps: int | None = 200,
        stride: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("channels", channels), ("num_layers", num_layers)):
            require_int_at_least(f"ConvFrontend {name}", value, 1)
        require_int_at_least("ConvFrontend kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise SettingError(f"ConvFrontend kernel_size must be odd (centred windows), got {kernel_size}.")
        if max_steps is not None:
            require_int_at_least("ConvFrontend max_steps", max_steps, 1)
        if stride is not None:
            require_int_at_least("ConvFrontend stride", stride, 1)
        check_probability("ConvFrontend dropout", dropout)
        self.input_size = input_size
        self.output_size = channels
        self.stride = stride or _stride_for(longest_sequence, max_steps)
        # The strided layer's window covers at least two strides, so no input step is skipped.
        first_kernel = max(kernel_size, 2 * self.stride + 1)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for layer in range(num_layers):
            kernel = first_kernel if layer == 0 else kernel_size
            self.convs.append(
                nn.Conv1d(input_size if layer == 0 else channels, channels, kernel,
                          stride=self.stride if layer == 0 else 1, padding=kernel // 2)
            )
            self.norms.append(nn.LayerNorm(channels))
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Steps left after the strided layer: ceil(length / stride), (B,) -> (B,)."""
        return torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """inputs (B, T, I), lengths (B,) -> features (B, T', C) zero past each new length, new lengths (B,)."""
        lengths = to_device_async(lengths, inputs.device)
        mask = _step_mask(lengths, inputs.shape[1], inputs.dtype)  # (B, 1, T)
        features = inputs.transpose(1, 2) * mask  # (B, I, T): padding is exactly zero, as for a lone sequence
        new_lengths = self.output_lengths(lengths)
        for conv, norm in zip(self.convs, self.norms):
            features = conv(features)  # (B, C, T')
            mask = _step_mask(new_lengths, features.shape[-1], features.dtype)  # (B, 1, T')
            features = norm(features.transpose(1, 2)).transpose(1, 2)  # per step, over channels
            features = self.dropout(self.activation(features)) * mask  # (B, C, T')
        return features.transpose(1, 2), new_lengths  # (B, T', C), (B,)


def _stride_for(longest_sequence: int | None, max_steps: int | None) -> int:
    """The smallest stride that leaves at most `max_steps` steps of the longest training sequence."""
    if longest_sequence is None or max_steps is None:
        return 1
    return max(1, math.ceil(longest_sequence / max_steps))


def step_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B,) lengths -> (B, steps) bool mask, True on valid steps (on the lengths' device)."""
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)


def _step_mask(lengths: Tensor, steps: int, dtype: torch.dtype) -> Tensor:
    """(B,) lengths -> (B, 1, steps) mask of `dtype` to multiply (B, C, steps) features by."""
    return step_mask(lengths, steps).unsqueeze(1).to(dtype)
