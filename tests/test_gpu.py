"""What only a GPU can show: cuDNN's packed kernels, training steps without host synchronisation, AMP's gradient
unscaling in the monitors, bf16 resume, and the fused optimizer's device-side skip. Marked `gpu`: skipped (and
deselected by default) without CUDA; `benchmarks/gpu_check.sh` runs them on a GPU machine."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from seqlit.cli import SeqlitCLI
from seqlit.nn.encoders import RNNEncoder
from tests.data.datamodules.test_classification import _series_csv
from tests.data.test_forecasting_windows import random_walk_frame

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "gpu", "--test_after_fit", "false"]
LOG_EVERY = 5


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cudnn_packed_batch_equals_each_sequence_alone_and_the_cpu_path(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    encoder = RNNEncoder(6, 32, num_layers=2, cell=cell, bidirectional=bidirectional).eval()
    lengths = torch.tensor([17, 3, 1, 17, 9, 12])
    inputs = torch.randn(len(lengths), 20, 6)
    on_cpu = encoder(inputs, lengths)  # the length-segment path
    gpu = encoder.cuda()
    packed = gpu(inputs.cuda(), lengths)  # cuDNN over the packed batch
    torch.testing.assert_close(packed.outputs.cpu(), on_cpu.outputs, rtol=1e-4, atol=1e-5)
    for part, reference in zip(packed.state, on_cpu.state, strict=True):
        torch.testing.assert_close(part.cpu(), reference, rtol=1e-4, atol=1e-5)
    for row, length in enumerate(lengths.tolist()):
        alone = gpu(inputs[row : row + 1, :length].cuda(), lengths[row : row + 1])
        torch.testing.assert_close(alone.outputs[0], packed.outputs[row, :length], rtol=1e-4, atol=1e-5)
    assert torch.all(packed.outputs[1, 3:] == 0)


# ---- training steps without host synchronisation ------------------------------------------------------------


def _pairs(tmp: Path) -> Path:
    path = tmp / "pairs.tsv"
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in (f"{a}{b}{c}" for a in "abcdef" for b in "ghij" for c in "kl")),
                    encoding="utf-8")
    return path


def _panel(tmp: Path) -> Path:
    path = tmp / "panel.csv"
    random_walk_frame({f"s{i}": 20 + i for i in range(24)}).to_csv(path, index=False)
    return path


TASKS = {
    "classifier": lambda tmp: ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--data.init_args.dataset",
                               "long_format", "--data.init_args.train_path", str(_series_csv(tmp / "series.csv", 12, 8)),
                               "--data.init_args.sequence_column", "seq", "--data.init_args.loader.batch_size", "4"],
    "seq2seq": lambda tmp: ["--config", str(REPO / "configs/g2p_cmudict_small.yaml"), "--data.init_args.dataset",
                            "parallel_file", "--data.init_args.train_path", str(_pairs(tmp)),
                            "--data.init_args.source_unit", "char", "--data.init_args.target_unit", "char",
                            "--data.init_args.val_fraction", "0.1", "--data.init_args.test_fraction", "0.1",
                            "--data.init_args.loader.batch_size", "4"],
    "language_model": lambda tmp: ["--config", str(REPO / "configs/lm_pydoc_char.yaml"),
                                   "--model.init_args.network.init_args.hidden_size", "64",
                                   "--data.init_args.bptt", "32"],
    "forecaster": lambda tmp: ["--config", str(REPO / "configs/m1_yearly_gru.yaml"), "--data.init_args.dataset",
                               "long_format", "--data.init_args.path", str(_panel(tmp)), "--data.init_args.horizon",
                               "3", "--data.init_args.covariate_columns", "[promo]",
                               "--data.init_args.loader.batch_size", "8"],
}


class _SyncWatch(pl.Callback):
    """Turns CUDA's synchronisation warnings on for every training step that is not a logging step (from the
    batch's start to the next batch's start, so Lightning's own bookkeeping after a batch counts too) and off
    at logging steps, epoch ends and validation, where synchronising is allowed."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        logging_step = (trainer.global_step + 1) % LOG_EVERY == 0
        torch.cuda.set_sync_debug_mode("default" if logging_step or trainer.global_step < 2 else "warn")

    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_validation_start(self, trainer: pl.Trainer, *args: Any) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_train_end(self, trainer: pl.Trainer, *args: Any) -> None:
        torch.cuda.set_sync_debug_mode("default")


class _WatchedCLI(SeqlitCLI):
    def before_fit(self) -> None:
        super().before_fit()
        self.trainer.callbacks.append(_SyncWatch())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_training_steps_between_logging_steps_do_not_synchronise(task: str, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _WatchedCLI(args=["fit", *TASKS[task](tmp_path), "--trainer.max_steps", "24",
                              "--trainer.log_every_n_steps", str(LOG_EVERY), "--trainer.limit_val_batches", "2",
                              *QUIET])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sorted({f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)})
    assert not syncs, f"{task}: synchronising CUDA operations between logging steps at {syncs}"


# ---- mixed precision ------------------------------------------------------------------------------------------


class _NormAtOptimizerStep(pl.Callback):
    """The total gradient norm as the optimizer step sees it (after AMP unscaling), computed here by hand."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads]))))


class _NormCLI(SeqlitCLI):
    def before_fit(self) -> None:
        super().before_fit()
        self.recorder = _NormAtOptimizerStep()
        self.trainer.callbacks.append(self.recorder)


def test_fp16_gradient_norms_are_logged_unscaled(tmp_path: Path) -> None:
    cli = _NormCLI(args=["fit", *TASKS["classifier"](tmp_path), "--trainer.precision", "16-mixed",
                         "--trainer.max_steps", "6", "--trainer.log_every_n_steps", "1", *QUIET])
    scaler = cli.trainer.precision_plugin.scaler
    assert scaler is not None and scaler.get_scale() > 1000  # the loss is scaled by thousands ...
    logged = float(cli.trainer.callback_metrics["grad/norm_total"])
    assert logged == pytest.approx(cli.recorder.norms[-1], rel=1e-3)  # ... the monitored norm is not
    assert logged < 100


class _StopAfterOneEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        trainer.should_stop = True  # as if the job were killed here: last.ckpt holds the end of epoch 0


class _StoppingCLI(SeqlitCLI):
    def before_fit(self) -> None:
        super().before_fit()
        self.trainer.callbacks.append(_StopAfterOneEpoch())


def test_bf16_resumed_run_ends_on_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    arguments = ["fit", *TASKS["classifier"](tmp_path), "--trainer.precision", "bf16-mixed", "--trainer.max_epochs",
                 "2", "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "1", *QUIET]
    straight = SeqlitCLI(args=[*arguments, "--run_name", "straight"])
    first = _StoppingCLI(args=[*arguments, "--run_name", "first"])
    last = Path(first.trainer.checkpoint_callback.last_model_path)
    resumed = SeqlitCLI(args=[*arguments, "--run_name", "resumed", "--ckpt_path", str(last)])
    assert resumed.trainer.global_step == straight.trainer.global_step > first.trainer.global_step
    for mine, theirs in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-3, atol=1e-4)


# ---- the fused optimizer skips a bad step on the device -------------------------------------------------------


def test_fused_optimizer_is_chosen_and_skips_a_nan_step_on_the_device(tmp_path: Path) -> None:
    from seqlit.callbacks.nonfinite_guard import NonFiniteGuard

    class Poisoned(pl.Callback):
        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
            if trainer.global_step == 3:
                next(p for p in pl_module.parameters() if p.grad is not None).grad.fill_(float("nan"))

    class CLI(SeqlitCLI):
        def before_fit(self) -> None:
            super().before_fit()
            guard = next(c for c in self.trainer.callbacks if isinstance(c, NonFiniteGuard))
            self.trainer.callbacks.insert(self.trainer.callbacks.index(guard), Poisoned())

    cli = CLI(args=["fit", *TASKS["classifier"](tmp_path), "--trainer.max_steps", "8",
                    "--trainer.log_every_n_steps", "4", *QUIET])
    [optimizer] = cli.trainer.optimizers
    assert optimizer.defaults["fused"] is True
    guard = next(c for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard))
    assert guard.total_skipped == 1
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
