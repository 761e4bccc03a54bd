"""Small collectives shared by tasks and callbacks; each is a no-op without a process group."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def gather_from_every_rank(value: Any) -> list[Any]:
    """[value of rank 0, value of rank 1, ...]; [value] without a process group. Every rank must call it."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
