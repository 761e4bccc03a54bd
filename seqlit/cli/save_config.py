"""Saves the resolved config as config.yaml in the run's folder (LightningCLI's behaviour) and makes it the
W&B run's config, so a run on the W&B page shows exactly the settings `--print_config` would."""

from __future__ import annotations

from typing import Any

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


class SaveConfigToLoggers(SaveConfigCallback):
    """LightningCLI's SaveConfigCallback that also writes the resolved YAML (every default filled in, the same
    document as config.yaml) into each W&B logger's run config; rank 0 only, once per run."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            return
        resolved: dict[str, Any] = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in loggers:
            logger.experiment.config.update(resolved, allow_val_change=True)


__all__ = ["SaveConfigToLoggers"]
