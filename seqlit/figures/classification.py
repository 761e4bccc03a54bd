"""Classification figures: the confusion matrix (normalised by true class), per-class F1, and the fixed
validation items with their predicted class and its probability."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqlit.figures.artifacts import Artifact, TableArtifact, new_figure, render
from seqlit.figures.maker import FigureMaker

ANNOTATE_UP_TO = 15  # classes; beyond that the numbers in the cells are unreadable


class ClassificationFigures(FigureMaker):
    """Figures of a sequence classifier (`seqlit.tasks.SequenceClassifier`, or any module whose
    `validation_step` returns logits (B, C) and whose hparams hold `n_classes` and `class_names`)."""

    def __init__(self) -> None:
        self._counts: Tensor | None = None  # (C * C,) true-major confusion counts, on the module's device

    def reset(self) -> None:
        self._counts = None

    def observe(self, module: Any, batch: Any, outputs: Any) -> None:
        if not isinstance(outputs, Tensor) or outputs.dim() != 2:
            return
        n_classes = outputs.shape[-1]
        predicted = outputs.argmax(dim=-1)  # (B,)
        pairs = batch.targets.to(predicted.device) * n_classes + predicted  # (B,)
        counts = torch.bincount(pairs, minlength=n_classes * n_classes)  # (C * C,)
        self._counts = counts if self._counts is None else self._counts + counts

    def make(self, module: Any, items: Any | None, epoch: int) -> list[Artifact]:
        artifacts: list[Artifact] = []
        names = _class_names(module)
        if self._counts is not None:
            n_classes = len(names)
            confusion = self._counts.reshape(n_classes, n_classes).cpu().numpy()  # (C, C) true x predicted
            artifacts.append(confusion_matrix_figure(confusion, names, epoch))
            artifacts.append(per_class_f1_figure(confusion, names, epoch))
        if items is not None:
            artifacts.append(_items_table(module, items, names, epoch))
        return artifacts


def confusion_matrix_figure(confusion: np.ndarray, names: list[str], epoch: int) -> Artifact:
    """Rows are true classes, normalised to sum to 1 (recall on the diagonal); a class absent from the
    validation set keeps a row of zeros."""
    totals = confusion.sum(axis=1, keepdims=True)  # (C, 1)
    normalised = np.divide(confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0)
    size = 2.5 + 0.45 * len(names)
    figure, axes = new_figure(size + 1.0, size)
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"confusion matrix (by true class), epoch {epoch}")
    if len(names) <= ANNOTATE_UP_TO:
        for row in range(len(names)):
            for column in range(len(names)):
                value = normalised[row, column]
                if value > 0:
                    axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                              color="white" if value > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return render("confusion_matrix", figure)


def per_class_f1(confusion: np.ndarray) -> np.ndarray:
    """(C, C) true x predicted counts -> (C,) F1 = 2TP / (2TP + FP + FN); 0 for a class never seen nor predicted."""
    true_positive = np.diag(confusion).astype(float)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # (C,) 2TP + FP + FN
    return np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)


def per_class_f1_figure(confusion: np.ndarray, names: list[str], epoch: int) -> Artifact:
    scores = per_class_f1(confusion)
    figure, axes = new_figure(2.5 + 0.4 * len(names), 3.2)
    axes.bar(range(len(names)), scores, color="tab:blue")
    axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("F1")
    axes.axhline(float(scores.mean()), color="tab:orange", linestyle="--", linewidth=1)
    axes.set_title(f"per-class F1 (macro {scores.mean():.3f}, dashed), epoch {epoch}", fontsize=9)
    return render("per_class_f1", figure)


def _items_table(module: Any, items: Any, names: list[str], epoch: int) -> TableArtifact:
    logits = module(items.inputs, items.lengths, items.mask)  # (B, C)
    probabilities = torch.softmax(logits.float(), dim=-1)  # (B, C)
    confidence, predicted = probabilities.max(dim=-1)  # (B,), (B,)
    rows = [
        [epoch, int(index), names[int(target)], names[int(guess)], round(float(p), 4)]
        for index, target, guess, p in zip(items.indices.tolist(), items.targets.tolist(), predicted.tolist(),
                                           confidence.tolist())
    ]
    return TableArtifact("val_items", ["epoch", "item", "true", "predicted", "probability"], rows)


def _class_names(module: Any) -> list[str]:
    hparams = getattr(module, "hparams", {})
    n_classes = int(hparams.get("n_classes", 0))
    return list(hparams.get("class_names") or [str(i) for i in range(n_classes)])


__all__ = ["ClassificationFigures", "confusion_matrix_figure", "per_class_f1", "per_class_f1_figure"]
