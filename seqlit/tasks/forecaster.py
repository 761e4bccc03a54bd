"""Multi-horizon forecasting: an RNN (direct head or encoder-decoder) or a classical baseline, trained in
scaled units and scored by MASE and sMAPE in original units."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from seqlit.errors import CheckpointMismatchError, SeqlitError
from seqlit.metrics.forecasting import MeanAbsoluteScaledError, SymmetricMAPE
from seqlit.metrics.mean import MeanPerTarget
from seqlit.nn.encoders import CellType
from seqlit.nn.forecasting import BASELINES, BaselineForecaster, DirectForecaster, EncoderDecoderForecaster
from seqlit.schedules import TeacherForcingKind, TeacherForcingSchedule
from seqlit.tasks.accumulation import EffectiveBatchNormalizer
from seqlit.tasks.optim import OptimizerName, configure_from_hparams
from seqlit.types import ForecastBatch

NetworkName = Literal["direct", "encoder_decoder", "naive", "seasonal_naive", "drift"]
LossName = Literal["l1", "mse", "quantile"]


class Forecaster(pl.LightningModule):
    """Forecasts the next `horizon` values of each series from its context window.

    `n_features`, `horizon` and `seasonality` come from the data module through CLI linking. The loss is
    taken in each window's scaled units (with context scaling, L1 there is the window's own MASE);
    `quantile` trains one output per entry of `quantiles` with the pinball loss and forecasts the median.
    `network: naive | seasonal_naive | drift` gives the classical baselines, evaluated by the same code
    (`seqlit test ... --model.init_args.network naive`, no checkpoint). Logged: `train/loss`,
    `val|test/loss`, `val|test/mase`, `val|test/smape`, and with quantiles `val|test/coverage` (share of
    observed targets inside the outermost quantiles). A window whose history has no MASE scale (constant,
    or shorter than the season) is left out of MASE only; the data module warns which.
    """

    # The widths `seqlit compare` scales (together, in proportion) to match another variant's parameter count.
    size_parameters: ClassVar[tuple[str, ...]] = ("hidden_size",)

    def __init__(
        self,
        n_features: int,
        horizon: int,
        seasonality: int = 1,
        network: NetworkName = "direct",
        cell: CellType = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        head_hidden_size: int | None = None,
        loss: LossName = "l1",
        quantiles: list[float] | None = None,
        teacher_forcing: TeacherForcingKind = "constant",
        teacher_forcing_k: float | None = None,
        teacher_forcing_c: float | None = None,
        teacher_forcing_min: float = 0.0,
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if loss == "quantile":
            quantiles = sorted(quantiles or [0.1, 0.5, 0.9])
            if 0.5 not in quantiles or not all(0.0 < q < 1.0 for q in quantiles):
                raise ValueError(f"quantiles must lie in (0, 1) and include 0.5 (the point forecast), got {quantiles}")
        elif quantiles is not None:
            raise ValueError(f"quantiles are only used with loss: quantile (got loss={loss!r}); drop them.")
        if loss not in ("l1", "mse", "quantile"):
            raise ValueError(f"unknown loss {loss!r}; choose 'l1', 'mse' or 'quantile'.")
        self.save_hyperparameters()
        self.quantiles = quantiles or [0.5]
        self.point_index = self.quantiles.index(0.5)
        n_outputs = len(self.quantiles)
        if network in BASELINES:
            if loss == "quantile":
                raise ValueError(f"the {network} baseline gives point forecasts only; use loss: l1 with it.")
            self.network: torch.nn.Module = BaselineForecaster(network, horizon, seasonality)  # type: ignore[arg-type]
        elif network == "direct":
            self.network = DirectForecaster(n_features, horizon, hidden_size, num_layers, cell, bidirectional, dropout,
                                            head_hidden_size, n_outputs)
        elif network == "encoder_decoder":
            if bidirectional:
                raise ValueError("the encoder_decoder network hands its final state to a forward decoder; set "
                                 "bidirectional: false (or use network: direct).")
            self.network = EncoderDecoderForecaster(n_features, horizon, hidden_size, num_layers, cell, dropout,
                                                    n_outputs, self.point_index)
        else:
            raise ValueError(f"unknown network {network!r}; choose direct, encoder_decoder or one of {BASELINES}.")
        self.teacher_forcing = TeacherForcingSchedule(
            teacher_forcing, k=teacher_forcing_k, c=teacher_forcing_c, minimum=teacher_forcing_min
        )
        self.step_normalizer = EffectiveBatchNormalizer()
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": metric()
            for stage in ("val", "test")
            for name, metric in (("mase", MeanAbsoluteScaledError), ("smape", SymmetricMAPE),
                                 ("coverage", MeanPerTarget), ("loss", MeanPerTarget))
        })

    def forward(self, batch: ForecastBatch, teacher_forcing_prob: float = 0.0) -> Tensor:
        """-> (B, H, Q) forecasts in scaled units."""
        return self.network(batch.inputs, batch.lengths, batch.targets, batch.target_mask, teacher_forcing_prob)

    def training_step(self, batch: ForecastBatch, batch_idx: int) -> Tensor:
        probability = self.teacher_forcing(self.global_step) if self.hparams.network == "encoder_decoder" else 0.0
        summed = self._summed_loss(self(batch, probability), batch)
        n_targets = batch.n_targets
        self.step_normalizer.add(n_targets)
        self.log("train/loss", summed.detach() / max(1, n_targets), batch_size=max(1, n_targets), on_step=True,
                 on_epoch=True, prog_bar=True)
        if self.hparams.network == "encoder_decoder":
            self.log("train/teacher_forcing_prob", probability, on_step=True, on_epoch=False)
        return summed  # divided by the targets of the whole accumulated step after backward

    def on_after_backward(self) -> None:
        self.step_normalizer.on_after_backward(self)

    def validation_step(self, batch: ForecastBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: ForecastBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: ForecastBatch, batch_idx: int) -> dict[str, Any]:
        original = self._to_original(self(batch), batch)  # (B, H, Q)
        point = original[..., self.point_index]  # (B, H)
        horizon = self.hparams.horizon
        names = [f"h{h + 1}" for h in range(horizon)]
        if len(self.quantiles) > 1:
            names = [f"h{h + 1}_q{q:g}" for h in range(horizon) for q in self.quantiles]
        return {
            "index": batch.indices,
            "prediction": [" ".join(f"{v:.6g}" for v in row) for row in point.tolist()],
            "values": original.reshape(original.shape[0], -1),  # (B, H*Q)
            "value_names": names,
        }

    def configure_optimizers(self) -> dict[str, Any]:
        if not any(p.requires_grad for p in self.parameters()):
            raise SeqlitError(
                f"the {self.hparams.network} baseline has nothing to train; evaluate it with `seqlit test --config "
                f"... --model.init_args.network {self.hparams.network}` (no checkpoint needed)."
            )
        return configure_from_hparams(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint made for another horizon, input layout or network."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("horizon", "n_features", "network", "quantiles"):
            if key in saved and saved[key] != self.hparams.get(key):
                raise CheckpointMismatchError(
                    f"the checkpoint was trained with {key}={saved[key]!r} but this run has {key}="
                    f"{self.hparams.get(key)!r}; use the data and model settings of that run or train a new model."
                )

    # ---- helpers ---------------------------------------------------------------------------------
    def _summed_loss(self, predictions: Tensor, batch: ForecastBatch) -> Tensor:
        """Sum over observed targets of the loss in scaled units (pinball averaged over quantiles)."""
        mask = batch.target_mask.to(predictions.dtype)  # (B, H)
        errors = batch.targets[..., None] - predictions  # (B, H, Q)
        if self.hparams.loss == "l1":
            per_target = errors.abs()[..., 0]
        elif self.hparams.loss == "mse":
            per_target = errors.square()[..., 0]
        else:
            levels = torch.tensor(self.quantiles, dtype=predictions.dtype, device=predictions.device)  # (Q,)
            per_target = torch.maximum(levels * errors, (levels - 1.0) * errors).mean(dim=-1)  # (B, H)
        return (per_target * mask).sum()

    @staticmethod
    def _to_original(scaled: Tensor, batch: ForecastBatch) -> Tensor:
        """(B, H, ...) scaled -> original units, in float64."""
        extra = (1,) * (scaled.dim() - 1)
        return scaled.to(torch.float64) * batch.scale.view(-1, *extra) + batch.location.view(-1, *extra)

    def _evaluate(self, batch: ForecastBatch, stage: str) -> None:
        predictions = self(batch)  # (B, H, Q)
        # Summed states, so the DDP loss covers every rank's windows exactly (see seqlit.metrics.mean).
        loss = self.metrics[f"{stage}_loss"]
        loss.update(self._summed_loss(predictions, batch), batch.n_targets)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val")
        original = self._to_original(predictions, batch)  # (B, H, Q)
        targets = self._to_original(batch.targets, batch)  # (B, H)
        point = original[..., self.point_index]  # (B, H)
        mase, smape = self.metrics[f"{stage}_mase"], self.metrics[f"{stage}_smape"]
        # A window whose history has no MASE scale (constant or too short) is left out of MASE only.
        has_scale = (batch.mase_scale > 0)[:, None]  # (B, 1), False for NaN and 0
        mase.update(point, targets, torch.where(has_scale[:, 0], batch.mase_scale, 1.0), batch.target_mask & has_scale)
        smape.update(point, targets, batch.target_mask)
        self.log(f"{stage}/mase", mase, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/smape", smape, on_epoch=True)
        if len(self.quantiles) > 1:
            inside = (targets >= original[..., 0]) & (targets <= original[..., -1])  # (B, H)
            coverage = self.metrics[f"{stage}_coverage"]
            observed = inside[batch.target_mask]  # (N,)
            coverage.update(observed.sum(), observed.numel())
            self.log(f"{stage}/coverage", coverage, on_epoch=True)
