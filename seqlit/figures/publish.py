"""Sends one validation's figures and tables to every logger that can show them, and to the run's folder:
W&B (`wandb.Image`, `wandb.Table`), TensorBoard (images and Markdown text) and PNG/CSV files under
`<version dir>/figures/epoch_NNN/`, which the CSV logger's run (and `seqlit report`) reads."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqlit.figures.artifacts import Artifact, ImageArtifact, TableArtifact

FIGURES_FOLDER = "figures"


def publish(loggers: Sequence[Any], artifacts: Sequence[Artifact], epoch: int, step: int) -> Path | None:
    """Writes `artifacts` to each logger (keys `figures/<name>` and `tables/<name>`, TensorBoard and W&B at
    `step`) and to `<version dir>/figures/epoch_<epoch>/`; returns that folder (None without a logger)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _to_tensorboard(logger.experiment, artifacts, step)
        elif isinstance(logger, WandbLogger):
            _to_wandb(logger, artifacts, step)
    folder = version_folder(loggers)
    if folder is None:
        return None
    target = folder / FIGURES_FOLDER / f"epoch_{epoch:03d}"
    write_files(artifacts, target)
    return target


def version_folder(loggers: Sequence[Any]) -> Path | None:
    """The run's version folder: the CSV logger's (metrics.csv lives there), else the first logger's."""
    from lightning.pytorch.loggers import CSVLogger

    ordered = sorted(loggers, key=lambda logger: not isinstance(logger, CSVLogger))
    for logger in ordered:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return Path(log_dir)
    return None


def write_files(artifacts: Sequence[Artifact], folder: Path) -> None:
    """One PNG per image and one CSV per table in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        if isinstance(artifact, ImageArtifact):
            (folder / f"{artifact.name}.png").write_bytes(artifact.png)
        else:
            with open(folder / f"{artifact.name}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(artifact.columns)
                writer.writerows(artifact.rows)


def _to_tensorboard(writer: Any, artifacts: Sequence[Artifact], step: int) -> None:
    for artifact in artifacts:
        if isinstance(artifact, ImageArtifact):
            writer.add_image(f"figures/{artifact.name}", artifact.pixels, global_step=step, dataformats="HWC")
        else:
            writer.add_text(f"tables/{artifact.name}", artifact.markdown(), global_step=step)
    writer.flush()


def _to_wandb(logger: Any, artifacts: Sequence[Artifact], step: int) -> None:
    import wandb

    logged: dict[str, Any] = {}
    for artifact in artifacts:
        if isinstance(artifact, ImageArtifact):
            logged[f"figures/{artifact.name}"] = wandb.Image(artifact.pixels)
        else:
            table: TableArtifact = artifact
            logged[f"tables/{table.name}"] = wandb.Table(columns=table.columns, data=[list(r) for r in table.rows])
    if logged:
        logger.log_metrics(logged, step=step)


__all__ = ["FIGURES_FOLDER", "publish", "version_folder", "write_files"]
