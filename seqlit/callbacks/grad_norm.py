"""Logs gradient norms (total, per module, per RNN layer and gate) and warns when they explode or vanish."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer

WarningKind = Literal["explode", "vanish"]

GATE_NAMES: dict[str, tuple[str, ...]] = {
    "LSTM": ("input", "forget", "cell", "output"),
    "GRU": ("reset", "update", "new"),
}
"""Gates in the row order of `nn.LSTM` / `nn.GRU` weight_ih, weight_hh and biases (PyTorch's layout)."""

_RNN_PARAMETER = re.compile(r"(?P<kind>weight|bias)_(?P<part>ih|hh|hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?")


class GradNormMonitor(Callback):
    """Logs `grad/norm_total`, `grad/norm/<module>`, `grad/norm_gate/<module>/<gate>` and `grad/norm_clipped`.

    Norms are taken in `on_before_optimizer_step`, which Lightning calls after AMP unscaling and
    before gradient clipping, so they are the true gradients. RNN parameters are grouped per layer
    and direction (`encoder.rnn.l0_reverse`) and split into gates, because an exploding or dying
    LSTM usually shows in one layer or one gate (the forget gate) long before it shows in the total.
    Every other parameter counts towards the module that owns it (`head`, `pooling.attention.project`).

    `grad/norm_clipped` is measured, not derived: Lightning clips right after this hook and zeroes
    gradients only at the start of the next step's closure, so in `on_train_batch_end` the `.grad`
    tensors still hold the clipped gradients the optimizer used (an optimizer that rewrote `.grad`
    in place would change that; SGD and AdamW, checked in the tests, do not).

    A total or module norm above `explode_threshold` (or inf/NaN) or below `vanish_threshold`
    raises one warning per kind per run (remembered in `state_dict`), naming the step, the worst
    module and its norm. Modules whose parameters are all exactly zero are left out of the vanish
    check, and parameters without a gradient out of everything. Checks run on logging steps only,
    also when `per_module=False`.

    Norms are computed on the steps Lightning writes to the logger: by default those of
    `Trainer(log_every_n_steps)`, i.e. `(global_step + 1) % n == 0`; an explicit `log_every_n_steps`
    should be a multiple of the Trainer's, because Lightning writes the latest value logged and an
    off-interval value would reach the logger under a later step. Epoch values (`*_epoch`) are the
    plain mean over the computed steps.
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        per_module: bool = True,
        per_gate: bool = True,
        explode_threshold: float = 100.0,
        vanish_threshold: float = 1e-7,
        norm_type: float = 2.0,
    ) -> None:
        if log_every_n_steps is not None and (
            isinstance(log_every_n_steps, bool) or not isinstance(log_every_n_steps, int) or log_every_n_steps < 1
        ):
            raise ValueError(
                f"log_every_n_steps must be a positive int (1 logs every optimizer step), got {log_every_n_steps!r}."
            )
        for name, value in (
            ("explode_threshold", explode_threshold),
            ("vanish_threshold", vanish_threshold),
            ("norm_type", norm_type),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        if vanish_threshold >= explode_threshold:
            raise ValueError(
                f"vanish_threshold ({vanish_threshold:g}) must be below explode_threshold ({explode_threshold:g}); "
                "otherwise every norm triggers a warning."
            )
        self.log_every_n_steps = log_every_n_steps
        self.per_module = per_module
        self.per_gate = per_gate
        self.explode_threshold = float(explode_threshold)
        self.vanish_threshold = float(vanish_threshold)
        self.norm_type = float(norm_type)
        self._warned: set[WarningKind] = set()
        self._layout: _GradLayout | None = None
        self._log_clipped_norm = False
        self._epoch_sums: dict[str, float] = {}
        self._epoch_counts: dict[str, int] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The model is in its final form (moved, wrapped, heads added in setup) only once fit starts.
        self._layout = _GradLayout.from_module(pl_module)
        self._log_clipped_norm = False

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        step = trainer.global_step
        interval = self.log_every_n_steps or trainer.log_every_n_steps
        if interval < 1 or (step + 1) % interval != 0:
            return
        if self._layout is None:
            self._layout = _GradLayout.from_module(pl_module)
        norms = self._layout.measure(self.norm_type)
        if norms is None:
            return
        # Manual optimisation clips (if at all) before optimizer.step, so there is no Trainer clipping to report.
        self._log_clipped_norm = pl_module.automatic_optimization
        # The single host sync of a logging step: every value (and what the warnings need) in one transfer.
        n_groups, n_gates = len(norms.group_names), len(norms.gate_names)
        stacked = [norms.total.reshape(1), norms.groups, norms.gates, norms.vanish_total.reshape(1), norms.vanish_groups]
        values: list[float] = torch.cat([t.float() for t in stacked]).tolist()
        total, groups = values[0], values[1 : n_groups + 1]
        gates = values[n_groups + 1 : n_groups + 1 + n_gates]
        vanish_total, vanish_groups = values[n_groups + 1 + n_gates], values[n_groups + 2 + n_gates :]
        metrics = {"grad/norm_total": total}
        if self.per_module:
            metrics.update({f"grad/norm/{name}": value for name, value in zip(norms.group_names, groups)})
        if self.per_gate:
            metrics.update({f"grad/norm_gate/{name}": value for name, value in zip(norms.gate_names, gates)})
        self._emit(trainer, metrics)
        self._check(norms.group_names, total, groups, vanish_total, vanish_groups, step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # The flag is set only inside an optimizer step, so accumulating batches never log a clipped norm.
        if not self._log_clipped_norm or self._layout is None:
            return
        self._log_clipped_norm = False
        clipped = self._layout.total_norm(self.norm_type)
        if clipped is not None:
            # Written under the step that produced it (global_step has already moved on here).
            self._emit(trainer, {"grad/norm_clipped": float(clipped)}, step=trainer.global_step - 1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_sums.clear()
        self._epoch_counts.clear()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch means of every logged norm (`<key>_epoch`): the default per-epoch dashboard view."""
        means = self.epoch_means()
        if means:
            _write(trainer, means)

    def epoch_means(self) -> dict[str, float]:
        """This epoch's mean of every norm logged so far (`<key>_epoch`), what `on_train_epoch_end` writes."""
        return {f"{key}_epoch": total / self._epoch_counts[key] for key, total in self._epoch_sums.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"warned": sorted(self._warned)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._warned = {kind for kind in state_dict.get("warned", []) if kind in ("explode", "vanish")}

    def _emit(self, trainer: pl.Trainer, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + value
            self._epoch_counts[key] = self._epoch_counts.get(key, 0) + 1
        _write(trainer, metrics, step)

    def _check(
        self,
        group_names: Sequence[str],
        total: float,
        groups: Sequence[float],
        vanish_total: float,
        vanish_groups: Sequence[float],
        step: int,
    ) -> None:
        """Warns once per kind, naming the worst module, so a long run is not flooded with repeats."""
        if len(self._warned) == 2:
            return

        def exploding(value: float) -> bool:
            return not math.isfinite(value) or value > self.explode_threshold

        if "explode" not in self._warned:
            offenders = [(name, value) for name, value in zip(group_names, groups) if exploding(value)]
            if offenders or exploding(total):
                # Non-finite ranks above every finite norm; the total is named only when no module is over.
                worst = max(offenders, key=_severity, default=None)
                where = f"module {worst[0]!r} has norm {worst[1]:.4g}" if worst else f"the total norm is {total:.4g}"
                self._warned.add("explode")
                rank_zero_warn(
                    f"GradNormMonitor: exploding gradients at global step {step}: {where} (total {total:.4g}, "
                    f"explode_threshold={self.explode_threshold:g}, {len(offenders)} module group(s) over). "
                    "Lower the learning rate, clip gradients (Trainer(gradient_clip_val=1.0)) or add LR warmup. "
                    "Shown once."
                )
        if "vanish" not in self._warned:
            offenders = [(name, v) for name, v in zip(group_names, vanish_groups) if v < self.vanish_threshold]
            if offenders or vanish_total < self.vanish_threshold:
                worst = min(offenders, key=lambda pair: pair[1], default=None)
                where = f"module {worst[0]!r} has norm {worst[1]:.4g}" if worst else f"the total norm is {total:.4g}"
                self._warned.add("vanish")
                rank_zero_warn(
                    f"GradNormMonitor: vanishing gradients at global step {step}: {where} (total {total:.4g}, "
                    f"vanish_threshold={self.vanish_threshold:g}, {len(offenders)} module group(s) under). "
                    "Check the initialisation (orthogonal recurrent weights, forget-gate bias 1), add layer norm "
                    "or residual connections, or raise the learning rate. Shown once."
                )


@dataclass(frozen=True)
class _Norms:
    """One logging step's norms, on the gradients' device; only groups and gates that have a gradient."""

    total: Tensor  # ()
    group_names: list[str]
    groups: Tensor  # (G,)
    gate_names: list[str]
    gates: Tensor  # (S,) one per layer, direction and gate
    vanish_total: Tensor  # () `total`, or inf when every parameter is exactly zero
    vanish_groups: Tensor  # (G,) `groups`, inf for groups whose parameters are all exactly zero


@dataclass(frozen=True)
class _GradLayout:
    """Which module group, and for RNN weights which gates, each parameter's gradient counts towards."""

    parameters: tuple[nn.Parameter, ...]
    group_of: tuple[int, ...]  # group index of each parameter
    group_names: tuple[str, ...]
    gate_slots: tuple[tuple[int, ...] | None, ...]  # per parameter: gate slot of each row chunk, None if not gated
    gate_names: tuple[str, ...]  # "<layer group>/<gate>"
    # Index tensors per (device, parameters with a grad): built once, so a logging step does no
    # host-to-device copy, which on CUDA would wait for the GPU.
    _indices: dict[tuple[torch.device, tuple[int, ...]], _Indices] = field(default_factory=dict, compare=False)

    @classmethod
    def from_module(cls, module: nn.Module) -> _GradLayout:
        """Groups by owning module, found through `named_modules`, so names come from the model, not guessing."""
        parameters: list[nn.Parameter] = []
        group_of: list[int] = []
        group_index: dict[str, int] = {}
        gate_slots: list[tuple[int, ...] | None] = []
        gate_index: dict[str, int] = {}
        seen: set[int] = set()
        for path, owner in module.named_modules():
            recurrent = _is_gated_rnn(owner)
            gates = GATE_NAMES.get(owner.mode, ()) if recurrent else ()
            for name, parameter in owner.named_parameters(recurse=False):
                # Tied parameters count once, as in clip_grad_norm_ over model.parameters().
                if id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                match = _RNN_PARAMETER.fullmatch(name) if recurrent else None
                if match is not None:
                    group = _join(path, f"l{match['layer']}{match['reverse'] or ''}")
                else:
                    # A parameter owned by the LightningModule itself has no module path; its name stands in.
                    group = path or name
                parameters.append(parameter)
                group_of.append(group_index.setdefault(group, len(group_index)))
                # weight_hr (LSTM projection) maps hidden to output and has no gate rows.
                if match is not None and gates and match["part"] != "hr":
                    gate_slots.append(tuple(gate_index.setdefault(f"{group}/{g}", len(gate_index)) for g in gates))
                else:
                    gate_slots.append(None)
        return cls(
            parameters=tuple(parameters),
            group_of=tuple(group_of),
            group_names=tuple(group_index),
            gate_slots=tuple(gate_slots),
            gate_names=tuple(gate_index),
        )

    def total_norm(self, norm_type: float) -> Tensor | None:
        """The norm over all gradients, defined as in `torch.nn.utils.clip_grad_norm_`; None without gradients."""
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if not grads:
            return None
        return torch.linalg.vector_norm(_tensor_norms(grads, norm_type, grads[0].device), norm_type)

    def measure(self, norm_type: float) -> _Norms | None:
        """Total, per-group and per-gate norms from one batched norm per tensor; no host sync."""
        present = [i for i, p in enumerate(self.parameters) if p.grad is not None]
        if not present:
            return None
        grads: list[Tensor] = [self.parameters[i].grad for i in present]  # type: ignore[misc]
        device = grads[0].device
        grad_norms = _tensor_norms(grads, norm_type, device)  # (N,)
        total = torch.linalg.vector_norm(grad_norms, norm_type)  # ()
        # A group whose parameters are all exactly zero (pruned, masked off) is expected to get
        # no gradient, so the vanish check skips it (its norm is replaced by inf).
        nonzero = _tensor_norms([self.parameters[i].detach() for i in present], math.inf, device) > 0  # (N,)

        indices = self._indices_for(device, tuple(present))

        n_groups = len(self.group_names)
        groups = _combine(grad_norms, indices.group, n_groups, norm_type)  # (all groups,)
        has_nonzero = _combine(nonzero.to(grad_norms.dtype), indices.group, n_groups, math.inf) > 0  # (all groups,)
        vanish_groups = torch.where(has_nonzero, groups, math.inf)  # (all groups,)

        gate_parts: list[Tensor] = []
        for i in present:
            slots = self.gate_slots[i]
            if slots is not None:
                # Gate rows are contiguous chunks of the first dim, so reshape puts one gate per row.
                chunks = self.parameters[i].grad.reshape(len(slots), -1)  # type: ignore[union-attr]
                gate_parts.append(torch.linalg.vector_norm(chunks, norm_type, dim=1).to(grad_norms.dtype))  # (n_gates,)
        if gate_parts:
            gates = _combine(torch.cat(gate_parts), indices.gate_slot, len(self.gate_names), norm_type)
            gates = gates[indices.present_slots]  # (S,)
        else:
            gates = grad_norms.new_zeros(0)

        return _Norms(
            total=total,
            group_names=indices.group_names,
            groups=groups[indices.present_groups],
            gate_names=indices.gate_names,
            gates=gates,
            vanish_total=torch.where(nonzero.any(), total, math.inf),
            vanish_groups=vanish_groups[indices.present_groups],
        )

    def _indices_for(self, device: torch.device, present: tuple[int, ...]) -> _Indices:
        key = (device, present)
        if key not in self._indices:
            present_groups = sorted({self.group_of[i] for i in present})
            gate_slot = [slot for i in present for slot in self.gate_slots[i] or ()]
            present_slots = sorted(set(gate_slot))
            self._indices[key] = _Indices(
                group=torch.tensor([self.group_of[i] for i in present], device=device),
                present_groups=torch.tensor(present_groups, dtype=torch.long, device=device),
                group_names=[self.group_names[g] for g in present_groups],
                gate_slot=torch.tensor(gate_slot, dtype=torch.long, device=device),
                present_slots=torch.tensor(present_slots, dtype=torch.long, device=device),
                gate_names=[self.gate_names[s] for s in present_slots],
            )
        return self._indices[key]


@dataclass(frozen=True)
class _Indices:
    """Scatter and gather indices for one set of parameters with a gradient."""

    group: Tensor  # (N,) group of each parameter
    present_groups: Tensor  # (G,) groups that have a gradient
    group_names: list[str]
    gate_slot: Tensor  # (sum of gates over gated parameters,) gate slot of each row chunk
    present_slots: Tensor  # (S,) gate slots that have a gradient
    gate_names: list[str]


def _tensor_norms(tensors: Sequence[Tensor], norm_type: float, device: torch.device) -> Tensor:
    """Per-tensor norms as one (N,) vector, batched per (device, dtype) with `torch._foreach_norm`.

    fp16/bf16 tensors are reduced in fp32: their own precision would put ~0.4% error on the norm.
    """
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for position, tensor in enumerate(tensors):
        buckets.setdefault((tensor.device, tensor.dtype), []).append(position)
    out_dtype = torch.float64 if any(dtype == torch.float64 for _, dtype in buckets) else torch.float32
    ordered: list[Tensor] = [torch.empty(0)] * len(tensors)
    for (_, dtype), positions in buckets.items():
        accumulate = torch.float32 if dtype in (torch.float16, torch.bfloat16) else None
        values = torch._foreach_norm([tensors[p] for p in positions], norm_type, dtype=accumulate)
        if len(buckets) == 1:
            return torch.stack(values).to(device, out_dtype)  # (N,)
        for position, value in zip(positions, values):
            ordered[position] = value.to(device, out_dtype)
    return torch.stack(ordered)  # (N,)


def _combine(norms: Tensor, index: Tensor, size: int, norm_type: float) -> Tensor:
    """Merges per-tensor p-norms (N,) into per-group p-norms (size,): (sum of norm^p)^(1/p), max for p=inf."""
    out = norms.new_zeros(size)
    if math.isinf(norm_type):
        return out.scatter_reduce(0, index, norms, reduce="amax")
    return out.index_add(0, index, norms.pow(norm_type)).pow(1.0 / norm_type)


def _severity(pair: tuple[str, float]) -> tuple[bool, float]:
    """Orders (name, norm) pairs by how badly they explode: any inf/NaN beats every finite norm."""
    return (not math.isfinite(pair[1]), pair[1] if math.isfinite(pair[1]) else 0.0)


def _write(trainer: pl.Trainer, metrics: dict[str, float], step: int | None = None) -> None:
    """Straight to the loggers (as LearningRateMonitor does), at the step Lightning writes under.

    `LightningModule.log` would put a few dozen scalars per step through Lightning's result
    collection (a device tensor and an epoch accumulator each), which cost more than the norms.
    Loggers write on rank zero only.
    """
    for logger in getattr(trainer, "loggers", []):
        logger.log_metrics(metrics, step=trainer.global_step if step is None else step)


def _is_gated_rnn(module: nn.Module) -> bool:
    """torch's RNNs, and any module that lays out its weights as they do (`mode` "LSTM"/"GRU", `weight_hh_l0`),
    such as seqlit's layer-normalised cells: their matrices split into gate blocks."""
    if isinstance(module, nn.RNNBase):
        return True
    return getattr(module, "mode", None) in GATE_NAMES and isinstance(getattr(module, "weight_hh_l0", None), Tensor)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


__all__ = ["GATE_NAMES", "GradNormMonitor"]
