"""What seqlit does to a Trainer the CLI built, and to the folders of a run it refused: one version folder
for the CSV and TensorBoard loggers, `weights_only` said on every save, no unset W&B `anonymous`."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def share_version_folder(trainer: Trainer) -> None:
    """TensorBoard writes into the CSV logger's `<name>/version_N` folder when both have the same root and
    name, so one run has one folder (Lightning would number the two independently)."""
    csv = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
    if csv is None:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and logger._version is None:
            if Path(logger.save_dir) == Path(csv.save_dir) and logger.name == csv.name:
                logger._version = csv.version


def remove_set_up_only_folders(folders: list[Path]) -> None:
    """Removes log folders this run created that hold only what is written at set-up (config.yaml, hparams.yaml,
    an empty TensorBoard event file, an empty checkpoints/ folder): a refused run is not a run."""
    for folder in folders:
        if folder.is_dir() and all(_set_up_file(path) for path in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)


def _set_up_file(path: Path) -> bool:
    if path.is_dir():
        return True
    return path.name in ("config.yaml", "hparams.yaml") or (
        path.name.startswith("events.out.tfevents.") and path.stat().st_size < 1024
    )


def drop_unset_wandb_anonymous(trainer: Trainer) -> None:
    """Lightning's WandbLogger passes `anonymous=None` to `wandb.init` even when unset, and wandb >= 0.19 warns
    ("The anonymous setting has no effect") for any value; an unset one is left out before the run starts."""
    for logger in trainer.loggers:
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)


def say_weights_only_on_every_save(trainer: Any) -> None:
    """Lightning's SLURM requeue handler (`auto_requeue`, configs/cluster) saves with `trainer.save_checkpoint(path)`,
    leaving weights_only unset, and Lightning then logs "`weights_only` was not set, defaulting to `False`". seqlit's
    trainer says it on every save: the full, resumable state unless a caller asks for weights only. (A partial of a
    module-level function, not a closure: a ddp_spawn launch pickles the trainer.)"""
    trainer.save_checkpoint = functools.partial(_save_saying_weights_only, trainer, type(trainer).save_checkpoint)


def _save_saying_weights_only(trainer: Any, save: Any, filepath: Any, weights_only: bool | None = False,
                              storage_options: Any = None) -> None:
    save(trainer, filepath, weights_only=bool(weights_only), storage_options=storage_options)
