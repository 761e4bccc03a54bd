"""`seqlit doctor --config X.yaml`: what a run would do, before it spends hours doing it.

Given the config's instantiated model, data and trainer (no training), reports which kernel each recurrent
layer takes and why (fused cuDNN / oneDNN, packed or per length segment, or a custom cell loop), the
training loader's padding ratio next to what random batching would give, the precision and device, and the
effective batch size; then warns about settings that silently fall off the fast path. Overrides
(`--model.init_args.encoder.init_args.layer_norm true`) work as they do for `seqlit fit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.loaders import resolve_num_workers, resolve_pin_memory
from seqlit.nn.decoders import AttentionDecoder
from seqlit.nn.dropout import WeightDrop
from seqlit.nn.encoders import RNNEncoder
from seqlit.padding import compare_with_random_batching

HIGH_PADDING = 0.3


@dataclass
class Diagnosis:
    """The doctor's findings: facts to print and warnings about the fast path."""

    kernels: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = ["seqlit doctor", "", "Recurrent layers:"]
        lines += [f"  - {kernel}" for kernel in self.kernels] or ["  - none found"]
        lines += ["", "Run:"]
        width = max((len(name) for name, _ in self.facts), default=0)
        lines += [f"  {name.ljust(width)}  {value}" for name, value in self.facts]
        lines += ["", "Warnings:" if self.warnings else "Warnings: none; the run stays on the fast path."]
        lines += [f"  ! {warning}" for warning in self.warnings]
        return "\n".join(lines)


def kernel_paths(model: nn.Module, device_type: str, diagnosis: Diagnosis) -> None:
    """One line per recurrent layer: the kernel it runs on and why; warnings for custom loops."""
    owners = _stepping_owners(model)
    for name, module in model.named_modules():
        if isinstance(module, RNNEncoder):
            how = owners.get(name) or (
                "packed sequences: padded steps are skipped" if device_type == "cuda" else
                "one call per length segment of the batch (oneDNN has no packed kernel): padded steps are skipped"
            )
            directions = ", bidirectional" if module.bidirectional else ""
            shape = f"({module.input_size}→{module.hidden_size}, layers={module.num_layers}{directions})"
            if module.kind == "fused":
                dropped = (f"; DropConnect p={module.weight_drop} on weight_hh passed into the kernel (fused path kept)"
                           if module.weight_drop else "")
                diagnosis.kernels.append(
                    f"{name}: {_fused_kernel(module.rnn, device_type)} {type(module.rnn).__name__}{shape}, {how}{dropped}"
                )
                continue
            reason = "layer norm inside the cell" if module.kind == "layer_norm" else f"the custom cell {module.cell_name}"
            diagnosis.kernels.append(f"{name}: Python time-step loop over {reason} {shape}, per length segment")
            diagnosis.warnings.append(
                f"{name} runs a Python loop over time steps because of {reason}: expect a fraction of the fused "
                "kernel's throughput" + ("; set layer_norm: false to get the fused kernel back." if module.kind ==
                                        "layer_norm" else ".")
            )
        elif isinstance(module, (nn.LSTM, nn.GRU)) and not name.endswith(".rnn"):
            diagnosis.kernels.append(f"{name}: {_fused_kernel(module, device_type)} {type(module).__name__} "
                                     f"(a plain torch module, padded steps included)")
        elif isinstance(module, WeightDrop):
            diagnosis.kernels.append(f"{name}: WeightDrop p={module.p} around {type(module.module).__name__}")


def _fused_kernel(rnn: nn.LSTM | nn.GRU, device_type: str) -> str:
    """The library torch dispatches a whole-sequence nn.LSTM / nn.GRU call to on this device."""
    if device_type == "cuda":
        return "fused cuDNN"
    if isinstance(rnn, nn.LSTM):
        return "fused oneDNN/MKL"
    # torch 2.x runs oneDNN's RNN primitive for LSTM only; a CPU GRU is aten's loop of fused cells.
    return "aten CPU kernel (input projection for all steps at once, one fused cell per step)"


def _stepping_owners(model: nn.Module) -> dict[str, str]:
    """How the recurrent layers inside decoders and language models are fed (no lengths: nothing to pack)."""
    owners: dict[str, str] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, AttentionDecoder):
            owners[f"{prefix}rnn"] = ("one step per call (input feeding)" if module.input_feeding else
                                      "one call over the whole target when teacher-forced, one step per call when "
                                      "sampling/decoding")
        elif hasattr(module, "decoder") and isinstance(getattr(module, "decoder"), RNNEncoder):
            owners[f"{prefix}decoder"] = "one call over the horizon when fully teacher-forced, else one step per call"
        elif isinstance(getattr(module, "layers", None), nn.ModuleList):
            for index, layer in enumerate(module.layers):
                if isinstance(layer, RNNEncoder):
                    owners[f"{prefix}layers.{index}"] = "unpadded token streams, one call per chunk (nothing to pack)"
    return owners


def padding(datamodule: Any, diagnosis: Diagnosis) -> None:
    """Padding of one epoch of the training loader's batches vs random batches of the same size; the data
    module must be set up for fit (callers do it once: setting up reruns its audits)."""
    try:
        loader = datamodule.train_dataloader()
    except Exception as error:  # noqa: BLE001 - the doctor reports, it does not crash
        diagnosis.facts.append(("padding", f"not measured: the data module could not build its loader ({error})"))
        return
    dataset = loader.dataset
    lengths = getattr(dataset, "lengths", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if lengths is None or batch_sampler is None:
        diagnosis.facts.append(("padding", "none: batches are fixed-length chunks (no padding)"))
        return
    batches = [list(batch) for batch in batch_sampler]
    # The sampler's own batches, through the functions the collates and the monitor use: reports agree to the digit.
    comparison = compare_with_random_batching(np.asarray(lengths, dtype=np.int64), batches)
    ratio, random_ratio = comparison.ratio, comparison.random_ratio
    # What the loader does, not what a config says: a BucketBatchSampler sorting by length buckets.
    bucketed = "length-bucketed" if getattr(batch_sampler, "sort_by_length", False) else "not bucketed"
    diagnosis.facts.append(("padding", f"{ratio:.1%} of the padded training grid ({bucketed}, {comparison.n_batches} "
                                       f"batches); random batching would give {random_ratio:.1%}"))
    if ratio > HIGH_PADDING:
        diagnosis.warnings.append(
            f"{ratio:.0%} of every training batch is padding; turn on data.loader.bucketing (random batching gives "
            f"{random_ratio:.0%} here) so the compute goes to real steps."
        )


def run_settings(trainer: Any, datamodule: Any, model: nn.Module, diagnosis: Diagnosis) -> str:
    """Device, precision, effective batch size, loader workers, clipping; returns the device type."""
    device_type = "cuda" if trainer.accelerator.__class__.__name__.startswith("CUDA") else "cpu"
    precision = str(trainer.precision)
    diagnosis.facts.append(("device", f"{device_type} × {trainer.world_size} process(es)"))
    diagnosis.facts.append(("precision", precision))
    # seqlit data modules carry their LoaderSettings; another LightningDataModule gets the automatic defaults.
    settings = getattr(datamodule, "loader", None)
    settings = settings if isinstance(settings, LoaderSettings) else None
    accumulate = trainer.accumulate_grad_batches
    if settings is not None:
        batch_size = settings.batch_size
        effective = batch_size * accumulate * trainer.world_size
        diagnosis.facts.append(("effective batch", f"{effective} sequences = {batch_size} per batch × {accumulate} "
                                                   f"accumulated × {trainer.world_size} process(es)"))
        if settings.max_tokens:
            diagnosis.facts.append(("token cap", f"{settings.max_tokens} padded steps per batch"))
    workers = resolve_num_workers(None if settings is None else settings.num_workers)
    pin_memory = resolve_pin_memory(None if settings is None else settings.pin_memory)
    diagnosis.facts.append(("loader", f"{workers} worker process(es), pin_memory={pin_memory}"))
    clip = trainer.gradient_clip_val
    algorithm = getattr(trainer.gradient_clip_algorithm, "value", trainer.gradient_clip_algorithm)
    diagnosis.facts.append(("gradient clipping", "off" if not clip else f"{algorithm} at {clip}"))
    if not clip:
        diagnosis.warnings.append("gradient clipping is off; RNNs hit exploding gradients, set trainer.gradient_clip_val "
                                  "(0.5-1.0 with gradient_clip_algorithm: norm).")
    if device_type == "cpu" and precision.startswith(("16", "bf16")):
        diagnosis.warnings.append(f"precision {precision} on CPU: RNN kernels gain little from 16-bit on most CPUs "
                                  "(Lightning turns 16-mixed into bf16-mixed there) and lose precision; 32-true is "
                                  "seqlit's CPU default.")
    if precision.startswith("64"):
        diagnosis.warnings.append("precision 64-true: no fused float64 RNN kernels on GPU and half speed on CPU.")
    if device_type == "cuda" and precision.startswith(("16", "bf16")):
        odd = sorted({m.hidden_size for m in model.modules() if isinstance(m, RNNEncoder) and m.hidden_size % 8})
        if odd:
            diagnosis.warnings.append(f"hidden sizes {odd} are not multiples of 8: cuDNN cannot use tensor cores for "
                                      "them in 16-bit precision.")
    if device_type == "cuda" and workers == 0:
        diagnosis.warnings.append("data.loader.num_workers is 0 on a GPU: batches are built between steps while the "
                                  "GPU waits; leave num_workers unset (automatic) or set 2-4.")
    schedule = getattr(model, "teacher_forcing", None)
    kind = getattr(schedule, "kind", "constant")
    if kind != "constant" and hasattr(model, "decoder"):
        diagnosis.facts.append(("decoder", f"scheduled sampling ({kind}): the decoder runs step by step in "
                                           "training, slower than one teacher-forced call"))
    return device_type


def diagnose(model: nn.Module, datamodule: Any, trainer: Any) -> Diagnosis:
    """The findings for an instantiated config (model, data module, trainer), without training."""
    diagnosis = Diagnosis()
    device_type = run_settings(trainer, datamodule, model, diagnosis)
    kernel_paths(model, device_type, diagnosis)
    try:
        datamodule.setup("fit")
    except Exception as error:  # noqa: BLE001 - the doctor reports, it does not crash
        diagnosis.facts.append(("padding", f"not measured: the data module could not be set up ({error})"))
    else:
        padding(datamodule, diagnosis)
    n_params = sum(p.numel() for p in model.parameters())
    diagnosis.facts.insert(0, ("model", f"{type(model).__name__}, {n_params:,} parameters, "
                                         f"{next(model.parameters(), torch.empty(0)).dtype}"))
    return diagnosis
