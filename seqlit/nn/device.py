"""Host-to-device copies that do not make the host wait for the GPU."""

from __future__ import annotations

import torch
from torch import Tensor


def to_device_async(tensor: Tensor, device: torch.device) -> Tensor:
    """`tensor` (on the host) on `device`. A plain copy from pageable memory to a GPU blocks the host until the
    copy ran, i.e. until every kernel queued before it finished; staged through pinned memory it is queued like
    a kernel instead. On other devices a plain copy."""
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    source = tensor if tensor.is_pinned() else tensor.pin_memory()
    return source.to(device, non_blocking=True)
