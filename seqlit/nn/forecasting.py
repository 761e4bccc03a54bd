"""Forecasting networks over scaled context windows, and the classical baselines with the same interface.

Every forecaster maps a padded context (B, T, F), channel 0 being the scaled target, to (B, H, Q):
H horizon steps times Q outputs (1 for a point forecast, one per quantile otherwise), in the same
scaled units. Shapes: B batch, T context length, F features, H horizon, Q outputs, N hidden size.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError
from seqlit.nn.cell_layer import CellSpec
from seqlit.nn.decoders import teacher_forcing_coins
from seqlit.nn.device import to_device_async
from seqlit.nn.encoders import RNNEncoder
from seqlit.nn.init import init_linear_

BaselineName = Literal["naive", "seasonal_naive", "drift"]
BASELINES: tuple[str, ...] = ("naive", "seasonal_naive", "drift")


def last_values(inputs: Tensor, lengths: Tensor) -> Tensor:
    """inputs (B, T, F), lengths (B,) -> (B,) channel 0 at each context's last real step."""
    rows = torch.arange(inputs.shape[0], device=inputs.device)
    return inputs[rows, to_device_async(lengths, inputs.device) - 1, 0]  # (B,)


class DirectForecaster(nn.Module):
    """RNN encoder over the context; an MLP maps the final state to every horizon step at once.

    Direct multi-horizon output has no exposure bias and no error feedback between steps, which is why
    it is the usual choice for short horizons such as yearly data. The head predicts the change from
    the last context value (a learned correction to the naive forecast), so it need not reproduce the
    level however the window is scaled.
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        quantiles: list[float] | None = None,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: CellSpec = "gru",
        bidirectional: bool = False,
        layer_norm: bool = False,
        dropout: float = 0.0,
        head_hidden_size: int | None = None,
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.n_outputs = n_outputs = len(quantiles or [0.5])
        self.encoder = RNNEncoder(input_size, hidden_size, num_layers=num_layers, cell=cell,
                                  bidirectional=bidirectional, dropout=dropout, layer_norm=layer_norm)
        head_hidden_size = head_hidden_size or hidden_size
        first, last = nn.Linear(self.encoder.output_size, head_hidden_size), nn.Linear(head_hidden_size,
                                                                                     horizon * n_outputs)
        init_linear_(first)
        init_linear_(last)
        self.head = nn.Sequential(nn.Dropout(dropout), first, nn.ReLU(), nn.Dropout(dropout), last)

    def forward(
        self, inputs: Tensor, lengths: Tensor, targets: Tensor | None = None, target_mask: Tensor | None = None,
        teacher_forcing_prob: float = 0.0,
    ) -> Tensor:
        """inputs (B, T, F), lengths (B,) -> (B, H, Q); targets are not used (no decoder to feed)."""
        encoded = self.encoder(inputs, lengths)
        directions = self.encoder.num_directions
        final = torch.cat(list(encoded.hidden[-directions:]), dim=-1)  # (B, D*N) top layer, every direction
        change = self.head(final).view(-1, self.horizon, self.n_outputs)  # (B, H, Q)
        return last_values(inputs, lengths)[:, None, None] + change  # (B, H, Q)


class EncoderDecoderForecaster(nn.Module):
    """Encoder RNN, then a decoder RNN stepping through the horizon, fed the previous value.

    In training the decoder reads the true previous value with probability `teacher_forcing_prob` per
    series and step, otherwise its own point forecast (scheduled sampling, as in the seq2seq decoder);
    missing targets are never fed. Evaluation is free-running. The point forecast fed back is output
    `point_index` (the median when quantiles are predicted). Each step predicts the change from the
    value it was fed, like the direct head predicts the change from the last context value.
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        quantiles: list[float] | None = None,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: CellSpec = "gru",
        layer_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        quantiles = quantiles or [0.5]
        self.horizon = horizon
        self.n_outputs = len(quantiles)
        self.point_index = quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2
        self.encoder = RNNEncoder(input_size, hidden_size, num_layers=num_layers, cell=cell, dropout=dropout,
                                  layer_norm=layer_norm)
        # Decoder input: the previous value and a one-hot of the step, so each step can learn its own offset.
        self.decoder = RNNEncoder(1 + horizon, hidden_size, num_layers=num_layers, cell=cell, dropout=dropout,
                                  layer_norm=layer_norm)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, self.n_outputs)
        init_linear_(self.head)

    def forward(
        self, inputs: Tensor, lengths: Tensor, targets: Tensor | None = None, target_mask: Tensor | None = None,
        teacher_forcing_prob: float = 0.0,
    ) -> Tensor:
        """inputs (B, T, F), lengths (B,), targets / target_mask (B, H) for teacher forcing -> (B, H, Q)."""
        state = self.encoder(inputs, lengths).state
        batch = inputs.shape[0]
        previous = last_values(inputs, lengths)  # (B,)
        steps = torch.eye(self.horizon, device=inputs.device, dtype=inputs.dtype).expand(batch, -1, -1)  # (B, H, H)
        if targets is None or teacher_forcing_prob <= 0.0:
            forced = torch.zeros(batch, self.horizon, dtype=torch.bool, device=inputs.device)  # (B, H)
        else:
            forced = teacher_forcing_coins((batch, self.horizon), teacher_forcing_prob, inputs.device)  # (B, H)
            forced[:, 0] = False  # step 0 reads the last context value, which is always known
            if target_mask is not None:
                forced[:, 1:] &= target_mask[:, :-1]
        if bool(forced[:, 1:].all()) and targets is not None:
            # Fully teacher forced: one fused call over all H steps.
            fed = torch.cat([previous[:, None], targets[:, :-1]], dim=1)  # (B, H)
            outputs, _ = self.decoder(torch.cat([fed[..., None], steps], dim=-1), None, state)  # (B, H, N)
            return fed[..., None] + self.head(self.dropout(outputs))  # (B, H, Q)
        predictions = []
        for t in range(self.horizon):
            if t > 0:
                point = predictions[-1][:, 0, self.point_index].detach()  # (B,)
                previous = torch.where(forced[:, t], targets[:, t - 1], point) if targets is not None else point
            step_input = torch.cat([previous[:, None, None], steps[:, t : t + 1]], dim=-1)  # (B, 1, 1 + H)
            output, state = self.decoder(step_input, None, state)  # (B, 1, N)
            predictions.append(previous[:, None, None] + self.head(self.dropout(output)))  # (B, 1, Q)
        return torch.cat(predictions, dim=1)  # (B, H, Q)


class BaselineForecaster(nn.Module):
    """Classical benchmarks, computed on the same scaled windows and scored by the same metrics.

    - `naive`: the last value, repeated.
    - `seasonal_naive`: the value one season (`seasonality` steps) before each forecast step.
    - `drift`: the line through the context's first and last values, extended (random walk with drift).

    All three commute with the per-window affine scaling, so they equal the classical forecasts in
    original units. With a truncated context (`context_length`), drift uses only that context.
    """

    def __init__(self, kind: BaselineName, horizon: int, seasonality: int = 1) -> None:
        super().__init__()
        if kind not in BASELINES:
            raise SettingError(f"unknown baseline {kind!r}; choose one of {', '.join(map(repr, BASELINES))}.")
        if seasonality < 1:
            raise SettingError(f"seasonality must be >= 1, got {seasonality}")
        self.kind = kind
        self.horizon = horizon
        self.seasonality = seasonality

    def forward(
        self, inputs: Tensor, lengths: Tensor, targets: Tensor | None = None, target_mask: Tensor | None = None,
        teacher_forcing_prob: float = 0.0,
    ) -> Tensor:
        """inputs (B, T, F), lengths (B,) -> (B, H, 1)."""
        lengths = to_device_async(lengths, inputs.device)
        last = last_values(inputs, lengths)  # (B,)
        ahead = torch.arange(1, self.horizon + 1, device=inputs.device, dtype=inputs.dtype)  # (H,)
        if self.kind == "naive":
            forecast = last[:, None].expand(-1, self.horizon)  # (B, H)
        elif self.kind == "drift":
            first = inputs[:, 0, 0]  # (B,)
            slope = (last - first) / (lengths - 1).clamp_min(1).to(inputs.dtype)  # (B,)
            forecast = last[:, None] + slope[:, None] * ahead  # (B, H)
        else:
            if bool((lengths < self.seasonality).any()):
                raise ValueError(f"seasonal_naive needs contexts of at least seasonality={self.seasonality} steps.")
            # Step h repeats the value at position len - m + ((h - 1) mod m).
            offsets = torch.arange(self.horizon, device=inputs.device) % self.seasonality  # (H,)
            positions = lengths[:, None] - self.seasonality + offsets  # (B, H)
            forecast = inputs[:, :, 0].gather(1, positions)  # (B, H)
        return forecast[..., None]  # (B, H, 1)
