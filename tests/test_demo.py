"""`python -m seqlit.demo` (what `make demo` runs): the per-seed lines and the summary the README describes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import seqlit.demo as demo


class _FakeRun:
    """Stands in for one seed's `seqlit fit` (the demo's numbers are what matters here, not training)."""

    def __init__(self, args: list[str]) -> None:
        seed = int(args[args.index("--seed_everything") + 1])
        self.test_results = [{"test/acc": 0.9 + seed / 100, "test/f1": 0.8 + seed / 100}]
        self.fit_metrics: dict[str, Any] = {}
        self.trainer = SimpleNamespace(log_dir=f"runs/japanese_vowels_gru/version_{seed}", current_epoch=12)


def test_demo_prints_accuracy_f1_seconds_and_log_folder_per_seed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "_QuietCLI", _FakeRun)
    assert demo.main(["--seeds", "0", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    per_seed = [line for line in lines if line.startswith(("seed 0:", "seed 1:"))]
    assert len(per_seed) == 2
    assert per_seed[1].startswith("seed 1: test/acc 0.9100, test/f1 0.8100 (")
    assert per_seed[1].endswith("s, epochs 12) -> runs/japanese_vowels_gru/version_1")
    assert any(line.startswith("mean test/acc = 0.9050 ± ") for line in lines)
    assert "tensorboard --logdir runs)" in lines[-1] and "runs/tensorboard" not in lines[-1]
