"""The classification default for a user's own file (`configs/classify_csv.yaml`) learns a long-sequence task.

Not timed: it checks that the config, its front-end (stride from the longest training series) and its step
budget work end to end on a file it was never tuned on, and that the model gets far above chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqlit.cli import SeqlitCLI

REPO = Path(__file__).resolve().parents[1]


def _long_series_file(path: Path, n_per_class: int, seed: int) -> Path:
    """Three classes of noisy univariate series, 300-900 steps: where in the series a short burst of a
    class-specific shape sits is random, so the model must find it; level and scale vary per series."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in range(3):
        for item in range(n_per_class):
            length = int(rng.integers(300, 900))
            values = rng.normal(0.0, 0.3, length)
            start = int(rng.integers(0, length - 40))
            burst = np.linspace(0, 1, 40) if label == 0 else np.sin(np.linspace(0, 2 * np.pi * label, 40))
            values[start : start + 40] += 2.0 * burst
            values = values * rng.uniform(0.5, 2.0) + rng.normal(0.0, 3.0)
            entity = f"{path.stem}-{label}-{item}"
            rows += [(entity, step, value, f"c{label}") for step, value in enumerate(values)]
    pd.DataFrame(rows, columns=["entity", "time", "x", "label"]).to_csv(path, index=False)
    return path


def test_the_default_learns_a_long_sequence_task_from_csv_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    train = _long_series_file(tmp_path / "train.csv", n_per_class=40, seed=0)
    test = _long_series_file(tmp_path / "test.csv", n_per_class=20, seed=1)
    cli = SeqlitCLI(args=[
        "fit", "--config", str(REPO / "configs/classify_csv.yaml"), "--data.train_path", str(train),
        "--data.test_path", str(test), "--trainer.max_steps", "150", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ])
    frontend = cli.model.frontend
    assert frontend is not None and frontend.stride >= 3  # the longest series (~900 steps) reaches the GRU as <= 400
    assert cli.trainer.global_step == 150
    assert cli.test_results is not None
    accuracy = cli.test_results[0]["test/acc"]
    print(f"classify_csv on a synthetic 300-900-step task: test accuracy {accuracy:.3f} (chance 0.333)")
    assert accuracy >= 0.8
