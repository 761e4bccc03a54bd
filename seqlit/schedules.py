"""Schedules: LR warmup then cosine decay, and teacher-forcing ramps for scheduled sampling."""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from seqlit.errors import SettingError


class WarmupCosine:
    """LR multiplier at optimizer step `step`: linear 0 -> 1 over `warmup_steps`, then cosine to `min_ratio`.

    A class rather than a lambda so `LambdaLR.state_dict()` saves it and resume continues exactly.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> None:
        if total_steps < 1:
            raise SettingError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise SettingError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
        if not 0.0 <= min_ratio <= 1.0:
            raise SettingError(f"min_ratio must be in [0, 1], got {min_ratio}")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR(LambdaLR):
    """Linear warmup over `warmup_fraction` of `total_steps`, then cosine decay to `min_lr_ratio` x the base
    LR, stepped once per optimizer step (seqlit's default schedule).

    Left at `total_steps: null` in a config, seqlit's tasks fill in the trainer's estimate of the run's
    optimizer steps (`trainer.estimated_stepping_batches`), as they do for any scheduler with a
    `total_steps` argument (e.g. `torch.optim.lr_scheduler.OneCycleLR`). torch's own `SequentialLR` of
    `LinearLR` and `CosineAnnealingLR` would do the same with two objects and an absolute floor; this one
    keeps the floor relative to each group's LR and its whole state in one plain-data `state_dict`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int | None = None,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            raise SettingError(
                "WarmupCosineLR needs total_steps: seqlit's tasks pass the trainer's estimate; set it yourself when "
                "you build the scheduler outside a task."
            )
        if not 0.0 <= warmup_fraction < 1.0:
            raise SettingError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        total_steps = max(1, int(total_steps))
        warmup_steps = int(round(warmup_fraction * total_steps))
        super().__init__(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr_ratio), last_epoch=last_epoch)


TeacherForcingKind = Literal["constant", "linear", "exponential", "inverse_sigmoid"]
TEACHER_FORCING_KINDS: tuple[str, ...] = ("constant", "linear", "exponential", "inverse_sigmoid")


class TeacherForcingSchedule:
    """Teacher-forcing probability ε_i at global step i for scheduled sampling (Bengio et al. 2015).

    The decoder feeds the ground truth with probability ε_i and its own prediction otherwise; ε
    decays so training moves towards the conditions of free-running inference.

    - `constant`: ε = 1 (always teacher forcing; k and c unused).
    - `linear`: ε = max(minimum, k - c·i); defaults k=1.0, c=1e-4 (reaches 0 at step 10,000).
    - `exponential`: ε = max(minimum, k**i), 0 < k < 1; default k=0.9999 (ε = 0.5 near step 6,900).
    - `inverse_sigmoid`: ε = max(minimum, k / (k + exp(i / k))), k >= 1; default k=1000
      (ε = 0.5 at step k·ln k ≈ 6,900).
    """

    def __init__(
        self,
        kind: TeacherForcingKind = "inverse_sigmoid",
        k: float | None = None,
        c: float | None = None,
        minimum: float = 0.0,
    ) -> None:
        if kind not in TEACHER_FORCING_KINDS:
            raise SettingError(
                f"unknown teacher-forcing kind {kind!r}; choose one of {', '.join(map(repr, TEACHER_FORCING_KINDS))}."
            )
        if not 0.0 <= minimum <= 1.0:
            raise SettingError(f"minimum must be in [0, 1], got {minimum}")
        if kind == "constant" and (k is not None or c is not None):
            raise SettingError("kind='constant' takes no k or c; leave them as None.")
        if c is not None and kind != "linear":
            raise SettingError(f"c is only used by kind='linear', got kind={kind!r}; leave c as None.")
        if kind == "linear":
            k = 1.0 if k is None else k
            c = 1e-4 if c is None else c
            if not 0.0 < k <= 1.0:
                raise SettingError(f"kind='linear' needs 0 < k <= 1 (the starting probability), got k={k}")
            if c < 0.0:
                raise SettingError(f"kind='linear' needs c >= 0 (the decrease per step), got c={c}")
        elif kind == "exponential":
            k = 0.9999 if k is None else k
            if not 0.0 < k < 1.0:
                raise SettingError(f"kind='exponential' needs 0 < k < 1 (the decay per step), got k={k}")
        elif kind == "inverse_sigmoid":
            k = 1000.0 if k is None else k
            if k < 1.0:
                raise SettingError(f"kind='inverse_sigmoid' needs k >= 1 (larger k decays later), got k={k}")
        self.kind = kind
        self.k = k
        self.c = c
        self.minimum = minimum

    def to_config(self) -> dict[str, object]:
        """This schedule as a plain-data `{class_path, init_args}` spec (for checkpoints' hyperparameters)."""
        init_args = {"kind": self.kind, "minimum": self.minimum}
        if self.kind != "constant":
            init_args["k"] = self.k
        if self.kind == "linear":
            init_args["c"] = self.c
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.kind == "constant":
            return 1.0
        assert self.k is not None
        if self.kind == "linear":
            assert self.c is not None
            probability = self.k - self.c * step
        elif self.kind == "exponential":
            probability = self.k**step
        else:
            # k / (k + e^(i/k)) rewritten with e^(-i/k), which underflows to 0 instead of overflowing.
            decay = math.exp(-step / self.k)
            probability = self.k * decay / (self.k * decay + 1.0)
        return max(self.minimum, probability)
