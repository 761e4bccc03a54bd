"""Writes `predict_step` outputs to one CSV file, in data set order, with item ids and probabilities; under DDP
rank 0 writes the rows of every rank."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from seqlit.distributed import gather_from_every_rank


class PredictionWriter(BasePredictionWriter):
    """Collects per-batch prediction dicts and writes one CSV row per item when prediction ends.

    Reads the keys `index`, `prediction` and optionally `probabilities` + `class_names` (classifiers) or
    `values` + `value_names` (e.g. a forecast per horizon step and quantile), one column each. Item ids
    come from the data module's `item_ids("predict")` when it has one, else the index is used.
    The file is written to a temporary name and renamed, so a crash never leaves half a file.

    Under DDP each rank predicts a disjoint share of the items; the rows of all ranks are gathered and
    rank 0 alone writes them (ranks writing one path would race and each leave only its share), so the
    file has every item once, in data set order, and needs no shared file system. Every rank reaches the
    gather: Lightning's and seqlit's distributed samplers refuse to leave a rank without items.
    """

    def __init__(self, output_path: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        rows: dict[int, list[str]] = {}
        header: list[str] = ["id", "prediction"]
        item_ids = _item_ids(trainer)
        for output in _flatten(predictions):
            columns, names = _extra_columns(output)
            header = ["id", "prediction", *names]
            for row, index in enumerate(output["index"].tolist()):
                item = str(item_ids[index]) if item_ids is not None else str(index)
                values = [item, str(output["prediction"][row])]
                if columns is not None:
                    values += columns[row]
                rows[index] = values  # by data set index, so an item a sampler repeated is written once
        gathered = gather_from_every_rank((header, rows))
        if trainer.global_rank != 0:
            return
        merged = {index: values for _, rank_rows in gathered for index, values in rank_rows.items()}
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.output_path.with_suffix(self.output_path.suffix + ".tmp")
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(merged[index] for index in sorted(merged))
        os.replace(temporary, self.output_path)
        print(f"seqlit: wrote {len(merged)} predictions to {self.output_path}")


def _extra_columns(output: dict[str, Any]) -> tuple[list[list[str]] | None, list[str]]:
    """Per-row extra cells and their header names: class probabilities `p_<class>` (6 decimals) or named
    `values` such as forecasts per horizon step (6 significant digits)."""
    if output.get("probabilities") is not None and output.get("class_names") is not None:
        cells = [[f"{p:.6f}" for p in row] for row in output["probabilities"].float().tolist()]
        return cells, [f"p_{name}" for name in output["class_names"]]
    if output.get("values") is not None and output.get("value_names") is not None:
        cells = [[f"{v:.6g}" for v in row] for row in output["values"].tolist()]
        return cells, list(output["value_names"])
    return None, []


def _flatten(predictions: Sequence[Any]) -> list[dict[str, Any]]:
    """Lightning nests predictions per dataloader when there are several."""
    flat: list[dict[str, Any]] = []
    for item in predictions:
        if isinstance(item, dict):
            flat.append(item)
        else:
            flat.extend(_flatten(item))
    return flat


def _item_ids(trainer: pl.Trainer) -> Any:
    datamodule = getattr(trainer, "datamodule", None)
    getter = getattr(datamodule, "item_ids", None)
    return getter("predict") if callable(getter) else None


__all__ = ["PredictionWriter"]
