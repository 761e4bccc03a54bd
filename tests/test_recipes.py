"""The bundled recipes reach their measured numbers (full training runs; the long ones are marked slow)."""

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


@pytest.mark.slow
def test_char_language_model_recipe_reaches_its_bits_per_character(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Measured: best val/bpc 1.676, test/bpc 1.437 (18 min on 2 CPU cores); margins cover seed-level noise.
    monkeypatch.chdir(tmp_path)
    cli = SeqlitCLI(
        args=["fit", "--config", str(REPO / "configs/lm_pydoc_char.yaml"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    )
    assert cli.test_results is not None
    best_val = float(cli.trainer.checkpoint_callback.best_model_score)
    print(f"lm_pydoc_char: best val/bpc {best_val:.4f}, test/bpc {cli.test_results[0]['test/bpc']:.4f}")
    assert best_val <= 1.72
    assert cli.test_results[0]["test/bpc"] <= 1.50


def test_m1_yearly_gru_recipe_beats_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's bar is mean MASE <= 3.40 over 3 seeds (measured 3.163 / 3.170 / 3.185); one seed runs in
    ~20 s, so it is part of the default suite. Drift (3.489) and naive (4.894) come from the same code."""
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/m1_yearly_gru.yaml")
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    cli = SeqlitCLI(args=["fit", "--config", config, "--seed_everything", "0", *quiet])
    assert cli.test_results is not None
    gru = cli.test_results[0]["test/mase"]
    drift = SeqlitCLI(args=["test", "--config", config, "--model.init_args.network", "drift", *quiet])
    drift_mase = float(drift.trainer.callback_metrics["test/mase"])
    print(f"M1 yearly test MASE: GRU {gru:.3f}, drift {drift_mase:.3f}")
    assert drift_mase == pytest.approx(3.489, abs=1e-3)
    assert gru <= 3.40
