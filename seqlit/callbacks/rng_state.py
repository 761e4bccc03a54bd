"""Saves the random number generators' states in checkpoints so a resumed run draws the same
dropout masks (and any other randomness) as an uninterrupted one."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback


class RNGStateCheckpoint(Callback):
    """Stores Python, NumPy, torch CPU and CUDA generator states with each checkpoint.

    Lightning restores model, optimizer, schedulers and loop progress but not the generators; without
    them a run resumed mid-epoch trains on different dropout masks and ends on different weights.
    States are stored as plain lists and byte tensors so checkpoints load with `weights_only=True`.
    """

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state: dict[str, Any] = {
            "python": _to_plain(random.getstate()),
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(state_dict["torch"])
        cuda_states = state_dict.get("cuda")
        if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _to_plain(value: Any) -> Any:
    """Tuples to lists, recursively (Python's random state is nested tuples of ints)."""
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    return value
