"""`seqlit doctor`: names each layer's kernel path and why, the padding to expect, and what falls off the fast path."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqlit.cli import SeqlitCLI, main
from seqlit.doctor import Diagnosis
from seqlit.doctor import diagnose as diagnose_objects

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def diagnose(arguments: list[str]) -> Diagnosis:
    """What `seqlit doctor <arguments>` finds, as data."""
    cli = SeqlitCLI(args=arguments, run=False)
    return diagnose_objects(cli.model, cli.datamodule, cli.trainer)


def test_bucketed_packed_classifier_is_on_the_fast_path(capsys: pytest.CaptureFixture[str]) -> None:
    main(["doctor", "--config", str(REPO / "configs/japanese_vowels_gru.yaml")])
    report = capsys.readouterr().out
    assert ("encoder: aten CPU kernel (input projection for all steps at once, one fused cell per step) GRU(12→64, "
            "layers=1, bidirectional), one call per length segment") in report
    assert "16 sequences = 16 per batch × 1 accumulated × 1 process(es)" in report
    assert "precision          32-true" in report and "norm at 1.0" in report
    assert "(length-bucketed," in report and "random batching would give" in report
    assert "Warnings: none" in report


def test_settings_that_leave_the_fast_path_are_flagged() -> None:
    diagnosis = diagnose(["--config", str(REPO / "configs/japanese_vowels_lstm.yaml"),
                          "--data.init_args.loader.bucketing", "false", "--data.init_args.loader.batch_size", "64",
                          "--trainer.gradient_clip_val", "null", "--trainer.accumulate_grad_batches", "4"])
    facts = dict(diagnosis.facts)
    assert facts["effective batch"].startswith("256 sequences = 64 per batch × 4 accumulated")
    padding = float(facts["padding"].split("%")[0]) / 100
    assert padding > 0.3 and "not bucketed" in facts["padding"]
    assert any("is padding; turn on data.loader.bucketing" in warning for warning in diagnosis.warnings)
    assert any("gradient clipping is off" in warning for warning in diagnosis.warnings)


def test_layer_norm_cells_custom_cells_and_weight_drop_are_told_apart() -> None:
    layer_norm = diagnose(["--config", str(REPO / "configs/lm_pydoc_char.yaml"),
                           "--model.init_args.network.init_args.layer_norm", "true"])
    assert any("Python time-step loop over layer norm inside the cell" in k for k in layer_norm.kernels)
    assert any("runs a Python loop over time steps" in warning for warning in layer_norm.warnings)
    custom = diagnose(["--config", str(REPO / "configs/japanese_vowels_gru.yaml"),
                       "--model.init_args.encoder.init_args.cell", "tests.custom_cells.IndRNNCell"])
    assert custom.kernels == ["encoder: Python time-step loop over the custom cell tests.custom_cells.IndRNNCell "
                              "(12→64, layers=1, bidirectional), per length segment"]
    weight_drop = diagnose(["--config", str(REPO / "configs/lm_pydoc_char.yaml")])
    assert all("fused oneDNN/MKL LSTM" in k and "DropConnect p=0.2" in k and "unpadded token streams" in k
               for k in weight_drop.kernels) and len(weight_drop.kernels) == 2, weight_drop.kernels
    assert dict(weight_drop.facts)["padding"].startswith("none")
    assert not weight_drop.warnings
