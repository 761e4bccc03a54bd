"""Sequence classification: RNN encoder, masked pooling, linear head."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from seqlit.errors import CheckpointMismatchError
from seqlit.metrics.mean import MeanPerTarget
from seqlit.nn.encoders import CellType, RNNEncoder
from seqlit.nn.init import init_linear_
from seqlit.nn.pooling import PoolingType, SequencePooling
from seqlit.tasks.accumulation import EffectiveBatchNormalizer
from seqlit.tasks.optim import OptimizerName, configure_from_hparams
from seqlit.types import SeqBatch


class SequenceClassifier(pl.LightningModule):
    """Labels a whole variable-length sequence.

    `n_features`, `n_classes` and `class_names` come from the data module through CLI argument
    linking; the rest are the practitioner's defaults (bidirectional GRU, dropout 0.2, AdamW with
    5% warmup and cosine decay; gradient clipping at 1.0 is set on the Trainer).
    """

    # The widths `seqlit compare` scales (together, in proportion) to match another variant's parameter count.
    size_parameters: ClassVar[tuple[str, ...]] = ("hidden_size",)

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        class_names: list[str] | None = None,
        cell: CellType = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.2,
        pooling: PoolingType = "last",
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != n_classes:
            raise ValueError(f"class_names has {len(class_names)} names for n_classes={n_classes}")
        self.save_hyperparameters()
        self.encoder = RNNEncoder(
            n_features, hidden_size, num_layers=num_layers, cell=cell, bidirectional=bidirectional, dropout=dropout
        )
        self.pooling = SequencePooling(pooling, self.encoder.output_size, self.encoder.num_directions)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.output_size, n_classes)
        init_linear_(self.head)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(n_classes, average="micro"),
                "f1": MulticlassF1Score(n_classes, average="macro"),
            }
        )
        self.step_normalizer = EffectiveBatchNormalizer()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Summed states, so the DDP loss covers every rank's items exactly (see seqlit.metrics.mean).
        self.eval_losses = nn.ModuleDict({"val": MeanPerTarget(), "test": MeanPerTarget()})

    def forward(self, inputs: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        """inputs (B, T, F), lengths (B,), mask (B, T) -> logits (B, C)."""
        encoded = self.encoder(inputs, lengths)  # outputs (B, T, D*H)
        pooled = self.pooling(encoded.outputs, mask, lengths)  # (B, D*H)
        return self.head(self.dropout(pooled))  # (B, C)

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        logits = self(batch.inputs, batch.lengths, batch.mask)  # (B, C)
        summed = F.cross_entropy(
            logits, batch.targets, reduction="sum", label_smoothing=self.hparams.label_smoothing
        )
        n_targets = batch.batch_size  # one target per sequence
        self.step_normalizer.add(n_targets)
        mean_loss = summed.detach() / max(1, n_targets)
        self.log("train/loss", mean_loss, batch_size=n_targets, on_step=True, on_epoch=True, prog_bar=True)
        # The summed loss is divided by the targets of the whole (accumulated) step after backward.
        return summed

    def on_after_backward(self) -> None:
        self.step_normalizer.on_after_backward(self)

    def validation_step(self, batch: SeqBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

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

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_from_hparams(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint whose classes differ from the data's: predictions would be mislabelled."""
        saved = checkpoint.get("hyper_parameters", {}).get("class_names")
        current = self.hparams.class_names
        if saved is not None and current is not None and list(saved) != list(current):
            raise CheckpointMismatchError(
                f"the checkpoint was trained on classes {list(saved)[:20]} but the data has "
                f"{list(current)[:20]}; use the training data's label set or train a new model."
            )

    def _evaluate(self, batch: SeqBatch, stage: str, metrics: MetricCollection) -> None:
        logits = self(batch.inputs, batch.lengths, batch.mask)  # (B, C)
        metrics.update(logits, batch.targets)
        self.eval_losses[stage].update(F.cross_entropy(logits, batch.targets, reduction="sum"), batch.batch_size)
        self.log(f"{stage}/loss", self.eval_losses[stage], on_epoch=True, prog_bar=stage == "val")
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val")
