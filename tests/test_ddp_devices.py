"""Multi-GPU semantics checked on the CPU: with two ranks (gloo) and a mocked two-GPU machine, each rank asks
only about its own LOCAL_RANK device when seqlit resolves its device defaults, Lightning places its model on
that device, and rank 1 never touches device 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies import DDPStrategy

from tests.test_ddp import WORLD_SIZE, run_on_two_ranks

pytestmark = pytest.mark.ddp


def _resolve_devices(rank: int, workdir: Path) -> None:
    """On one rank: mock a 2-GPU machine, record every device index torch.cuda is asked about."""
    from seqlit.cli import default_precision
    from seqlit.data.datamodules.loaders import resolve_num_workers, resolve_pin_memory

    asked: list[Any] = []

    def recording(name: str, result: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            asked.append([name, *[str(a) for a in args]])
            return result
        return call

    torch.cuda.is_available = recording("is_available", True)
    torch.cuda.device_count = recording("device_count", WORLD_SIZE)
    torch.cuda.get_device_capability = recording("get_device_capability", (9, 0))
    for name in ("current_device", "set_device", "get_device_properties", "is_bf16_supported", "init"):
        setattr(torch.cuda, name, recording(name, None))
    precision = default_precision("auto")
    workers, pin = resolve_num_workers(None), resolve_pin_memory(None)
    strategy = DDPStrategy(parallel_devices=[torch.device("cuda", i) for i in range(WORLD_SIZE)],
                           cluster_environment=LightningEnvironment(), process_group_backend="gloo")
    record = {"precision": precision, "workers": workers, "pin_memory": pin, "asked": asked,
              "root_device": str(strategy.root_device)}
    (workdir / f"devices{rank}.json").write_text(json.dumps(record))


def test_each_rank_resolves_and_uses_its_own_device(tmp_path: Path) -> None:
    run_on_two_ranks(_resolve_devices, tmp_path)
    for rank in range(WORLD_SIZE):
        record = json.loads((tmp_path / f"devices{rank}.json").read_text())
        assert record["precision"] == "bf16-mixed" and record["pin_memory"] is True and record["workers"] >= 1
        assert record["root_device"] == f"cuda:{rank}"
        indexed = [call for call in record["asked"] if len(call) > 1]
        assert indexed == [["get_device_capability", str(rank)]], record["asked"]  # its own GPU only
        assert not any(name in ("current_device", "set_device", "init", "is_bf16_supported")
                       for name, *_ in record["asked"])  # nothing that would create a context on device 0
