"""One `seqlit fit` run for a comparison benchmark: no progress bar, a CSV log per variant, test after fit."""

from __future__ import annotations

import json
import logging
import time
import warnings

from seqlit.cli import SeqlitCLI


class QuietCLI(SeqlitCLI):
    test_verbose = False  # the benchmark prints its own table


def quiet_logging() -> None:
    """Only warnings from Lightning, and no Python warnings, so the benchmark's table stays readable."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")


def fit_variant(
    config: str, epochs: int, run_name: str, model_overrides: dict[str, str], extra: list[str]
) -> tuple[SeqlitCLI, float]:
    """Trains `config` for `epochs` with `--model.init_args.<key> <value>` overrides (keys such as
    `network.init_args.weight_drop` for a part's setting); returns the CLI and seconds."""
    args = [
        "fit", "--config", config,
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger", json.dumps(
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": run_name}}
        ),
        "--test_after_fit", "true",
        *[item for key, value in model_overrides.items() for item in (f"--model.init_args.{key}", value)],
        *extra,
    ]
    started = time.perf_counter()
    cli = QuietCLI(args=args)
    return cli, time.perf_counter() - started
