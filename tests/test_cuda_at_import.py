"""Nothing in seqlit touches CUDA when imported: every DDP rank under srun/torchrun imports seqlit, and a CUDA
call at import would create a context on GPU 0 in each of them (and break fork-based launches)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Imports every module of the package with torch.cuda's entry points replaced by functions that raise.
SCRIPT = r"""
import importlib, pkgutil, sys
import torch

def refuse(name):
    def raising(*args, **kwargs):
        raise RuntimeError(f"torch.cuda.{name} called at import time")
    return raising

for name in ("is_available", "device_count", "current_device", "set_device", "get_device_capability",
             "get_device_properties", "get_device_name", "is_bf16_supported", "init", "synchronize",
             "mem_get_info", "memory_allocated"):
    setattr(torch.cuda, name, refuse(name))
torch.cuda._lazy_init = refuse("_lazy_init")

import seqlit
names = [info.name for info in pkgutil.walk_packages(seqlit.__path__, "seqlit.")
         if not info.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names), "modules imported")
"""


def test_every_module_imports_without_touching_cuda() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[0]) > 40
