"""Multi-horizon forecasting: an RNN (direct head or encoder-decoder) or a classical baseline, trained in
scaled units and scored by MASE and sMAPE in original units."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal, Union

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from seqlit.errors import SeqlitError, SettingError, check_checkpoint_matches
from seqlit.metrics.forecasting import MeanAbsoluteScaledError, SymmetricMAPE
from seqlit.metrics.mean import MeanPerTarget
from seqlit.nn.forecasting import BASELINES, BaselineForecaster, BaselineName
from seqlit.parts import build, factory_class
from seqlit.schedules import TeacherForcingSchedule
from seqlit.tasks.base import SeqlitTask
from seqlit.tasks.optim import adamw, warmup_cosine
from seqlit.types import ForecastBatch

LossName = Literal["l1", "mse", "quantile"]
# (input_size, horizon, quantiles) -> a network mapping (inputs, lengths, targets, target_mask,
# teacher_forcing_prob) to (B, H, Q) forecasts in scaled units (seqlit.nn.DirectForecaster's interface)
NetworkFactory = Callable[[int, int, list[float]], nn.Module]


class Forecaster(SeqlitTask):
    """Forecasts the next `horizon` values of each series from its context window.

    `n_features`, `horizon` and `seasonality` come from the data module through CLI linking. `network` is a
    factory built as `network(n_features, horizon, quantiles)` (`seqlit.nn.DirectForecaster`,
    `seqlit.nn.EncoderDecoderForecaster`, or your own), or the name of a classical baseline
    (`naive | seasonal_naive | drift`), evaluated by the same code (`seqlit test ... --model.init_args.network
    naive`, no checkpoint). The loss is taken in each window's scaled units (with context scaling, L1 there
    is the window's own MASE); `quantile` trains one output per entry of `quantiles` with the pinball loss
    and forecasts the median. `teacher_forcing` schedules how often an autoregressive decoder is fed the
    truth in training. Logged: `train/loss`, `val|test/loss`, `val|test/mase`, `val|test/smape`, and with
    quantiles `val|test/coverage` (share of observed targets inside the outermost quantiles). A window
    whose history has no MASE scale (constant, or shorter than the season) is left out of MASE only.
    """

    monitor: ClassVar[tuple[str, str]] = ("val/mase", "min")
    figure_family: ClassVar[str | None] = "forecasting"
    size_parameters: ClassVar[tuple[str, ...]] = ("network.hidden_size",)
    cell_parameters: ClassVar[tuple[str, ...]] = ("network.cell",)
    bidirectional_parameters: ClassVar[tuple[str, ...]] = ("network.bidirectional",)

    def __init__(
        self,
        n_features: int,
        horizon: int,
        seasonality: int = 1,
        network: Union[BaselineName, NetworkFactory] = {  # noqa: B006 - a plain-data spec, never mutated
            "class_path": "seqlit.nn.DirectForecaster", "init_args": {"hidden_size": 64, "cell": "gru"},
        },
        loss: LossName = "l1",
        quantiles: list[float] | None = None,
        teacher_forcing: TeacherForcingSchedule = {  # noqa: B006
            "class_path": "seqlit.schedules.TeacherForcingSchedule", "init_args": {"kind": "constant"},
        },
        optimizer: OptimizerCallable = adamw(3e-3, weight_decay=0.0),
        lr_scheduler: LRSchedulerCallable | None = warmup_cosine(0.05, 0.0),
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        if loss not in ("l1", "mse", "quantile"):
            raise SettingError(f"unknown loss {loss!r}; choose 'l1', 'mse' or 'quantile'.")
        if loss == "quantile":
            quantiles = sorted(quantiles or [0.1, 0.5, 0.9])
            if 0.5 not in quantiles or not all(0.0 < q < 1.0 for q in quantiles):
                raise SettingError(f"quantiles must lie in (0, 1) and include 0.5 (the point forecast), got {quantiles}")
        elif quantiles is not None:
            raise SettingError(f"quantiles are only used with loss: quantile (got loss={loss!r}); drop them.")
        if horizon < 1 or seasonality < 1:
            raise SettingError(f"horizon and seasonality must be >= 1, got {horizon} and {seasonality}.")
        self.save_plain_hyperparameters()
        self.quantiles = quantiles or [0.5]
        self.point_index = self.quantiles.index(0.5)
        if isinstance(network, str) and network in BASELINES:
            if loss == "quantile":
                raise SettingError(f"the {network} baseline gives point forecasts only; use loss: l1 with it.")
            self.network: nn.Module = BaselineForecaster(network, horizon, seasonality)  # type: ignore[arg-type]
        elif isinstance(network, str) and "." not in network:
            raise SettingError(
                f"unknown network {network!r}; use a class such as seqlit.nn.DirectForecaster or one of the "
                f"baselines {list(BASELINES)}."
            )
        else:
            self.network = build(network, n_features, horizon, list(self.quantiles), what="network")
        self.autoregressive = hasattr(self.network, "decoder")  # feeds its own forecasts back, step by step
        self.teacher_forcing = (
            teacher_forcing if isinstance(teacher_forcing, TeacherForcingSchedule)
            else build(teacher_forcing, what="teacher_forcing")
        )
        self.metrics = nn.ModuleDict({
            f"{stage}_{name}": metric()
            for stage in ("val", "test")
            for name, metric in (("mase", MeanAbsoluteScaledError), ("smape", SymmetricMAPE),
                                 ("coverage", MeanPerTarget), ("loss", MeanPerTarget))
        })

    def forward(self, batch: ForecastBatch, teacher_forcing_prob: float = 0.0) -> Tensor:
        """-> (B, H, Q) forecasts in scaled units."""
        return self.network(batch.inputs, batch.lengths, batch.targets, batch.target_mask, teacher_forcing_prob)

    def training_step(self, batch: ForecastBatch, batch_idx: int) -> Tensor:
        probability = self.teacher_forcing(self.global_step) if self.autoregressive else 0.0
        summed = self._summed_loss(self(batch, probability), batch)
        n_targets = batch.n_targets
        self.step_normalizer.add(n_targets)
        self.log("train/loss", summed.detach() / max(1, n_targets), batch_size=max(1, n_targets), on_step=True,
                 on_epoch=True)
        if self.autoregressive and self.is_logging_step():
            self.log("train/teacher_forcing_prob", probability, on_step=True, on_epoch=False)
        return summed  # divided by the targets of the whole accumulated step after backward

    def on_train_epoch_end(self) -> None:
        if self.autoregressive:  # the probability in force at the epoch's end, also for runs shorter than a log interval
            self.log("train/teacher_forcing_prob", self.teacher_forcing(max(0, self.global_step - 1)), on_epoch=True)

    def validation_step(self, batch: ForecastBatch, batch_idx: int) -> Tensor:
        """-> (B, H, Q) scaled forecasts, which validation callbacks (seqlit.callbacks.TaskFigures) receive."""
        return self._evaluate(batch, "val")

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

    def configure_optimizers(self) -> Any:
        if not any(p.requires_grad for p in self.parameters()):
            raise SeqlitError(
                f"the {self.hparams.network} baseline has nothing to train; evaluate it with `seqlit test --config "
                f"... --model.init_args.network {self.hparams.network}` (no checkpoint needed)."
            )
        return super().configure_optimizers()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint made for another horizon, input layout or network."""
        saved = checkpoint.get("hyper_parameters", {})
        for key, default in (("horizon", None), ("n_features", None), ("quantiles", [0.5])):
            if key in saved:
                check_checkpoint_matches(
                    key, saved[key] or default, self.hparams.get(key) or default,
                    fix="use the data and model settings of that run or train a new model.",
                )
        check_checkpoint_matches(
            "the network", _network_name(saved.get("network")), _network_name(self.hparams.get("network")),
            fix="use the model settings of that run or train a new model.",
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

    def _evaluate(self, batch: ForecastBatch, stage: str) -> Tensor:
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
        return predictions.detach()


def _network_name(network: Any) -> str | None:
    """A baseline's name or a network's class path, for comparing checkpoints."""
    if network is None or isinstance(network, str):
        return network
    cls = factory_class(network)
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else None
