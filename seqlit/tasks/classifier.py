"""Sequence classification: RNN encoder, masked pooling, linear head."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from seqlit.errors import SettingError, check_checkpoint_matches
from seqlit.metrics.mean import MeanPerTarget
from seqlit.nn.frontend import step_mask
from seqlit.nn.pooling import PoolingType, SequencePooling
from seqlit.nn.protocol import check_recurrent_layer
from seqlit.nn.series import check_augmentation, instance_normalise, jitter_and_scale
from seqlit.parts import build
from seqlit.tasks.base import SeqlitTask
from seqlit.tasks.optim import adamw, warmup_cosine
from seqlit.types import SeqBatch

EncoderFactory = Callable[[int], nn.Module]  # input_size -> a recurrent layer (seqlit.nn.protocol)
HeadFactory = Callable[[int, int], nn.Module]  # (input_size, n_classes) -> logits module
# (input_size, longest training sequence) -> module: (inputs, lengths) -> (features, lengths), with `output_size`
FrontendFactory = Callable[[int, int | None], nn.Module]


class SequenceClassifier(SeqlitTask):
    """Labels a whole variable-length sequence: recurrent encoder, masked pooling, head.

    `n_features`, `n_classes` and `class_names` come from the data module through CLI argument
    linking. The parts are factories YAML names by `class_path`: `encoder` is built as
    `encoder(n_features)` (any recurrent layer, e.g. `seqlit.nn.RNNEncoder` with your own `cell`), `head`
    as `head(pooled size, n_classes)`. Optional: a `frontend` before the encoder, built as
    `frontend(n_features, longest_sequence)` (e.g. `seqlit.nn.ConvFrontend`, which shortens long series);
    `instance_norm` (each series to zero mean, unit variance); training-time `jitter` and `scaling`
    augmentation (`seqlit.nn.series`). Defaults: a bidirectional GRU of 64, last-step pooling, dropout 0.2
    before the linear head, AdamW with 5% warmup and cosine decay, no front-end or augmentation.
    """

    figure_family: ClassVar[str | None] = "classification"
    size_parameters: ClassVar[tuple[str, ...]] = ("encoder.hidden_size",)
    cell_parameters: ClassVar[tuple[str, ...]] = ("encoder.cell",)
    bidirectional_parameters: ClassVar[tuple[str, ...]] = ("encoder.bidirectional",)

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        class_names: list[str] | None = None,
        longest_sequence: int | None = None,
        frontend: FrontendFactory | None = None,
        instance_norm: bool = False,
        encoder: EncoderFactory = {  # noqa: B006 - a plain-data spec, never mutated
            "class_path": "seqlit.nn.RNNEncoder",
            "init_args": {"hidden_size": 64, "cell": "gru", "bidirectional": True},
        },
        pooling: PoolingType = "last",
        head: HeadFactory = {"class_path": "seqlit.nn.ClassificationHead", "init_args": {"dropout": 0.2}},  # noqa: B006
        label_smoothing: float = 0.0,
        jitter: float = 0.0,
        scaling: float = 0.0,
        optimizer: OptimizerCallable = adamw(3e-3),
        lr_scheduler: LRSchedulerCallable | None = warmup_cosine(0.05, 0.01),
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        if class_names is not None and len(class_names) != n_classes:
            raise ValueError(f"class_names has {len(class_names)} names for n_classes={n_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise SettingError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        check_augmentation(jitter=jitter, scaling=scaling)
        self.save_plain_hyperparameters()
        self.frontend = None if frontend is None else build(frontend, n_features, longest_sequence, what="frontend")
        encoder_input = n_features if self.frontend is None else self.frontend.output_size
        self.encoder = check_recurrent_layer(build(encoder, encoder_input, what="encoder"), "SequenceClassifier.encoder")
        directions = 2 if self.encoder.bidirectional else 1
        self.pooling = SequencePooling(pooling, self.encoder.output_size, directions)
        self.head = build(head, self.pooling.output_size, n_classes, what="head")
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(n_classes, average="micro"),
                "f1": MulticlassF1Score(n_classes, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Summed states, so the DDP loss covers every rank's items exactly (see seqlit.metrics.mean).
        self.eval_losses = nn.ModuleDict({"val": MeanPerTarget(), "test": MeanPerTarget()})

    def forward(self, inputs: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        """inputs (B, T, F), lengths (B,), mask (B, T) -> logits (B, C)."""
        if self.hparams.instance_norm:
            inputs = instance_normalise(inputs, mask)  # (B, T, F)
        if self.frontend is not None:
            inputs, lengths = self.frontend(inputs, lengths)  # (B, T', C), (B,) on the inputs' device
            mask = step_mask(lengths, inputs.shape[1])  # (B, T')
        outputs, _ = self.encoder(inputs, lengths)  # (B, T, D*H)
        pooled = self.pooling(outputs, mask, lengths)  # (B, D*H)
        return self.head(pooled)  # (B, C)

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        inputs = batch.inputs  # (B, T, F)
        if self.hparams.jitter > 0 or self.hparams.scaling > 0:
            inputs = jitter_and_scale(inputs, batch.mask, self.hparams.jitter, self.hparams.scaling)
        logits = self(inputs, batch.lengths, batch.mask)  # (B, C)
        summed = F.cross_entropy(
            logits, batch.targets, reduction="sum", label_smoothing=self.hparams.label_smoothing
        )
        n_targets = batch.batch_size  # one target per sequence
        self.step_normalizer.add(n_targets)
        mean_loss = summed.detach() / max(1, n_targets)
        self.log("train/loss", mean_loss, batch_size=n_targets, on_step=True, on_epoch=True)
        # The summed loss is divided by the targets of the whole (accumulated) step after backward.
        return summed

    def validation_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        """-> logits (B, C), which validation callbacks (seqlit.callbacks.TaskFigures) receive as `outputs`."""
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: SeqBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: SeqBatch, batch_idx: int) -> dict[str, Any]:
        probabilities = torch.softmax(self(batch.inputs, batch.lengths, batch.mask), dim=-1)  # (B, C)
        predicted = probabilities.argmax(dim=-1)  # (B,)
        names = self.hparams.class_names or [str(i) for i in range(self.hparams.n_classes)]
        return {
            "index": batch.indices,
            "prediction": [names[i] for i in predicted.tolist()],
            "probabilities": probabilities,
            "class_names": names,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint whose classes differ from the data's: predictions would be mislabelled."""
        check_checkpoint_matches(
            "classes", checkpoint.get("hyper_parameters", {}).get("class_names"), self.hparams.class_names,
            fix="use the training data's label set or train a new model.",
        )

    def _evaluate(self, batch: SeqBatch, stage: str, metrics: MetricCollection) -> Tensor:
        logits = self(batch.inputs, batch.lengths, batch.mask)  # (B, C)
        metrics.update(logits, batch.targets)
        self.eval_losses[stage].update(F.cross_entropy(logits, batch.targets, reduction="sum"), batch.batch_size)
        self.log(f"{stage}/loss", self.eval_losses[stage], on_epoch=True, prog_bar=stage == "val")
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val")
        return logits.detach()
