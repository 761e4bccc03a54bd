"""GPU figures for `benchmarks/gpu_check.sh`, each measured in this one run on one GPU.

1. Kernels: one training step (forward, summed loss, backward, fused AdamW step) of a 1-layer LSTM / GRU at
   hidden 256 and 1024, batch 64, length 200 (input 256), in fp32, bf16 autocast and fp16 autocast, both as
   cuDNN over the packed batch (seqlit's `RNNEncoder` with lengths drawn from 100-200) and over the padded
   batch (the whole 200 steps). Milliseconds per step (CUDA events, median of `--iters` after warm-up), real
   tokens per second, peak memory.
2. The four recipes: tokens per second of `seqlit fit` for `--recipe-steps` steps with the CLI's GPU defaults
   (bf16-mixed where supported, fused AdamW, the base's callbacks and loggers), after 20 warm-up steps.

    python benchmarks/gpu_bench.py [--iters 20] [--recipe-steps 200] [--data .gpu] [--json out.json]

`--data` holds what the GPU machine cannot download or install: JapaneseVowels and M1 yearly as long-format
CSV files (written on a machine with `aeon` by `gpu_check.sh --export-data`).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--recipe-steps", type=int, default=200)
    parser.add_argument("--data", default=str(REPO / ".gpu"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=("kernels", "recipes"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}",
          flush=True)
    results: dict[str, Any] = {}
    if "kernels" not in args.skip:
        results["kernels"] = kernels(args.iters)
    if "recipes" not in args.skip:
        results["recipes"] = recipes(args.recipe_steps, Path(args.data))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


# ---- 1. kernels ---------------------------------------------------------------------------------------------
PRECISIONS = {"fp32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def kernels(iters: int) -> list[dict[str, Any]]:
    from seqlit.nn.encoders import RNNEncoder

    rows = []
    batch, steps, features = 64, 200, 256
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(steps // 2, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    inputs = torch.randn(batch, steps, features, generator=generator).cuda()
    for cell in ("lstm", "gru"):
        for hidden in (256, 1024):
            for precision, dtype in PRECISIONS.items():
                for layout in ("packed", "padded"):
                    torch.manual_seed(0)
                    encoder = RNNEncoder(features, hidden, cell=cell).cuda()
                    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4, fused=True)
                    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
                    step_lengths = lengths if layout == "packed" else None
                    real = int(lengths.sum()) if layout == "packed" else batch * steps
                    torch.cuda.reset_peak_memory_stats()
                    milliseconds = _time_steps(encoder, optimizer, scaler, inputs, step_lengths, dtype, iters)
                    row = {"cell": cell, "hidden": hidden, "precision": precision, "layout": layout,
                           "ms_per_step": milliseconds, "real_tokens_per_s": real / milliseconds * 1000,
                           "peak_mib": torch.cuda.max_memory_allocated() / 2**20}
                    rows.append(row)
                    print(f"kernel {cell} H={hidden} {precision:10s} {layout:6s}: {milliseconds:7.2f} ms/step, "
                          f"{row['real_tokens_per_s']:,.0f} real tok/s, peak {row['peak_mib']:,.0f} MiB", flush=True)
                    del encoder, optimizer
    return rows


def _time_steps(encoder: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, inputs: torch.Tensor,
                lengths: torch.Tensor | None, dtype: torch.dtype | None, iters: int) -> float:
    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs, _ = encoder(inputs, lengths)
            loss = outputs.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(3):
        step()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


# ---- 2. recipes -------------------------------------------------------------------------------------------------
def recipe_arguments(data: Path) -> dict[str, list[str]]:
    return {
        "japanese_vowels_gru": ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"),
                                "--data.init_args.dataset", "long_format",
                                "--data.init_args.train_path", str(data / "jv_train.csv"),
                                "--data.init_args.test_path", str(data / "jv_test.csv")],
        "g2p_cmudict": ["--config", str(REPO / "configs/g2p_cmudict.yaml")],
        "lm_pydoc_char": ["--config", str(REPO / "configs/lm_pydoc_char.yaml")],
        "m1_yearly_gru": ["--config", str(REPO / "configs/m1_yearly_gru.yaml"), "--data.init_args.dataset",
                          "long_format", "--data.init_args.path", str(data / "m1_yearly.csv"),
                          "--data.init_args.horizon", "6"],
    }


class _Throughput(pl.Callback):
    """Real tokens per second over the training steps after the first `warmup` (device synchronised at both ends)."""

    def __init__(self, warmup: int = 20) -> None:
        self.warmup = warmup
        self.tokens = 0
        self.started: float | None = None
        self.ended: float | None = None
        self.steps = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any) -> None:
        if trainer.global_step == self.warmup and self.started is None:
            torch.cuda.synchronize()
            self.started = time.perf_counter()
        if self.started is not None:
            self.tokens += int(getattr(batch, "n_tokens", 0))
            self.steps += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.cuda.synchronize()
        self.ended = time.perf_counter()


def recipes(steps: int, data: Path) -> list[dict[str, Any]]:
    from seqlit.cli import SeqlitCLI

    class TimedCLI(SeqlitCLI):
        def before_fit(self) -> None:
            super().before_fit()
            self.throughput = _Throughput()
            self.trainer.callbacks.append(self.throughput)

    rows = []
    for name, arguments in recipe_arguments(data).items():
        torch.cuda.reset_peak_memory_stats()
        try:
            cli = TimedCLI(args=["fit", *arguments, "--trainer.max_steps", str(steps + 20),
                                 "--trainer.limit_val_batches", "0", "--test_after_fit", "false",
                                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                                 "--run_name", f"gpu_{name}"])
        except Exception as error:  # noqa: BLE001 - report and go on with the next recipe
            print(f"recipe {name}: failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
            rows.append({"recipe": name, "error": f"{type(error).__name__}: {str(error)[:300]}"})
            continue
        clock = cli.throughput
        seconds = (clock.ended or 0) - (clock.started or 0)
        row = {"recipe": name, "precision": str(cli.trainer.precision), "steps": clock.steps,
               "tokens_per_s": clock.tokens / seconds if seconds > 0 else float("nan"),
               "ms_per_step": seconds / max(1, clock.steps) * 1000, "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
               "fused_optimizer": bool(cli.trainer.optimizers[0].defaults.get("fused"))}
        rows.append(row)
        print(f"recipe {name}: {row['precision']}, {row['tokens_per_s']:,.0f} tokens/s, {row['ms_per_step']:.1f} ms/step "
              f"over {clock.steps} steps, peak {row['peak_mib']:,.0f} MiB, fused optimizer {row['fused_optimizer']}",
              flush=True)
    return rows


if __name__ == "__main__":
    main()
