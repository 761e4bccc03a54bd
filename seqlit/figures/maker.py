"""The interface of a task family's figures: which validation items to show, what to collect while
validation runs, and what to draw at its end (`seqlit.callbacks.TaskFigures` drives it)."""

from __future__ import annotations

from typing import Any

import torch

from seqlit.figures.artifacts import Artifact


class FigureMaker:
    """Base of the per-task figure makers; a subclass overrides `make` and, where it needs the whole
    validation set (a confusion matrix, an error distribution), `reset` and `observe`.

    The fixed items are a seeded sample of the validation data set, chosen once, so every epoch shows the
    same items and a change in them is the model's doing.
    """

    def fixed_items(self, loader: Any, max_items: int, seed: int) -> Any | None:
        """A batch of `max_items` validation items, seeded: `loader.collate_fn` over sorted random positions."""
        dataset = getattr(loader, "dataset", None)
        collate = getattr(loader, "collate_fn", None)
        if dataset is None or collate is None or max_items < 1:
            return None
        try:
            size = len(dataset)
        except TypeError:
            return None
        if size == 0:
            return None
        generator = torch.Generator().manual_seed(seed)
        positions = sorted(torch.randperm(size, generator=generator)[:max_items].tolist())
        return collate([dataset[i] for i in positions])

    def reset(self) -> None:
        """Called when a validation whose figures will be drawn starts."""

    def observe(self, module: Any, batch: Any, outputs: Any) -> None:
        """Called after each validation batch of such a validation, with what `validation_step` returned."""

    def make(self, module: Any, items: Any | None, epoch: int) -> list[Artifact]:
        """The figures and tables of this validation; `items` is the fixed batch, on the module's device."""
        return []


__all__ = ["FigureMaker"]
