"""Saves the random number generators' states in checkpoints so a resumed run draws the same
dropout masks (and any other randomness) as an uninterrupted one, on every DDP rank."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from seqlit.distributed import gather_from_every_rank


class RNGStateCheckpoint(Callback):
    """Stores Python, NumPy, torch CPU and CUDA generator states of every rank with each checkpoint.

    Lightning restores model, optimizer, schedulers and loop progress but not the generators; without
    them a run resumed mid-epoch trains on different dropout masks and ends on different weights.
    Under DDP each rank's generators have drawn differently (its batches have other shapes), and only
    rank 0 writes the checkpoint, so the states of all ranks are gathered into it (`per_rank`, by
    global rank) and each rank restores its own. Lightning builds checkpoint contents on every rank
    (`Trainer.save_checkpoint` must be called on all of them), which is what makes the gather safe.
    A checkpoint from another number of ranks restores rank r from entry r when there is one.
    States are stored as plain lists and byte tensors so checkpoints load with `weights_only=True`.
    """

    def state_dict(self) -> dict[str, Any]:
        return {"per_rank": gather_from_every_rank(_this_process_state())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        # Checkpoints from before per-rank states hold one process's state at the top level.
        per_rank = state_dict.get("per_rank", [state_dict])
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if rank >= len(per_rank):
            rank_zero_warn(
                f"the checkpoint holds random generator states of {len(per_rank)} process(es) but this run has more; "
                "processes without a saved state keep their own, so the resumed run is not bit-exact."
            )
            return
        _restore_process_state(per_rank[rank])


def _this_process_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_process_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda")
    if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def _to_plain(value: Any) -> Any:
    """Tuples to lists, recursively (Python's random state is nested tuples of ints)."""
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    return value
