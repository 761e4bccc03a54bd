"""Logging conventions (W&B and the others): every metric key sits under one of seqlit's prefixes, the W&B run's
config is the resolved YAML, and the W&B overlay keeps the CSV and TensorBoard logs beside it."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from seqlit.cli import SeqlitCLI

REPO = Path(__file__).resolve().parents[1]
PREFIXES = ("train/", "val/", "test/", "grad/", "data/", "amp/", "figures/", "tables/")
LIGHTNING_KEYS = {"epoch", "step", "trainer/global_step"}  # Lightning's own bookkeeping columns


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the version folder, the offline W&B run folder) of a tiny JapaneseVowels run with the W&B overlay."""
    folder = tmp_path_factory.mktemp("wandb")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("WANDB_MODE", "offline")
        torch.set_num_threads(1)
        cli = SeqlitCLI(args=[
            "fit", "--config", str(REPO / "configs/japanese_vowels_gru.yaml"),
            "--config", str(REPO / "configs/loggers/wandb.yaml"),
            "--model.init_args.encoder.init_args.hidden_size", "8", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "3", "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        ])
        from lightning.pytorch.loggers import WandbLogger

        wandb_logger = next(logger for logger in cli.trainer.loggers if isinstance(logger, WandbLogger))
        wandb_logger.experiment.finish()
        import wandb

        wandb.teardown()  # stops wandb's service, which writes the offline run file: complete before it is read
    torch.set_num_threads(threads)
    (run,) = (folder / "runs" / "wandb").glob("offline-run-*")
    return folder / cli.trainer.log_dir, run


def test_every_metric_key_is_grouped_by_prefix(wandb_run: tuple[Path, Path]) -> None:
    version, run = wandb_run
    columns = set(pd.read_csv(version / "metrics.csv").columns) - LIGHTNING_KEYS
    assert columns and all(c.startswith(PREFIXES) for c in columns), sorted(c for c in columns if not c.startswith(PREFIXES))
    assert "train/lr/pg1" in columns  # LearningRateMonitor under train/, not `lr-AdamW`
    keys = _history_keys(next(run.glob("run-*.wandb")))
    assert {"train/loss_epoch", "val/acc", "grad/norm_total", "figures/confusion_matrix/path"} <= keys
    assert all(key.startswith(PREFIXES) for key in keys - LIGHTNING_KEYS), sorted(keys)


def test_wandb_run_config_is_the_resolved_yaml(wandb_run: tuple[Path, Path]) -> None:
    version, run = wandb_run
    resolved = yaml.safe_load((version / "config.yaml").read_text(encoding="utf-8"))
    logged = _config(next(run.glob("run-*.wandb")))
    for key in ("trainer", "model", "data", "seed_everything"):
        assert logged[key] == resolved[key], key
    assert logged["trainer"]["max_epochs"] == 1


def test_wandb_overlay_keeps_csv_and_tensorboard(wandb_run: tuple[Path, Path]) -> None:
    overlay = yaml.safe_load((REPO / "configs/loggers/wandb.yaml").read_text(encoding="utf-8"))
    classes = [logger["class_path"].rsplit(".", 1)[-1] for logger in overlay["trainer"]["logger"]]
    assert classes == ["CSVLogger", "TensorBoardLogger", "WandbLogger"]
    version, _ = wandb_run
    assert (version / "metrics.csv").is_file() and list(version.glob("events.out.tfevents.*"))


def _history_keys(path: Path) -> set[str]:
    """Every key logged to the history of an offline `.wandb` file."""
    keys: set[str] = set()
    for record in _records(path):
        if record.WhichOneof("record_type") == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return {key for key in keys if not key.startswith("_")}


def _config(path: Path) -> dict[str, Any]:
    """The run config of an offline `.wandb` file: its config records' updates, in order."""
    config: dict[str, Any] = {}
    for record in _records(path):
        if record.WhichOneof("record_type") == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
    return config


def _records(path: Path) -> list[Any]:
    """The protobuf records of a `.wandb` file: a 7-byte header, then LevelDB-log framing (32 KiB blocks of
    chunks with a 7-byte header: CRC32, length, kind 1 full / 2 first / 3 middle / 4 last). wandb >= 0.19
    writes it from its Go core and no longer ships a Python reader."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the rest of a block too short for a chunk header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records
