"""The bundled recipes reach their published-grade numbers (slow: full training runs)."""

from pathlib import Path
from statistics import mean

import pytest

from seqlit.cli import SeqlitCLI

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["japanese_vowels_gru.yaml", "japanese_vowels_lstm.yaml"])
def test_japanese_vowels_reaches_098_mean_over_three_seeds(
    config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    accuracies = []
    for seed in (0, 1, 2):
        cli = SeqlitCLI(
            args=["fit", "--config", str(REPO / "configs" / config), "--seed_everything", str(seed),
                  "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        )
        assert cli.test_results is not None
        accuracies.append(cli.test_results[0]["test/acc"])
    print(f"{config}: test accuracy per seed {accuracies}, mean {mean(accuracies):.4f}")
    assert mean(accuracies) >= 0.98
