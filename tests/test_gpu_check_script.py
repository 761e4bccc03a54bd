"""`benchmarks/gpu_check.sh` is ready to run on a GPU machine: its dry run lists every step, and its table is
built from the logs the steps write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_prints_every_step_and_runs_nothing(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--dry-run"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert any("-m pytest" in line and "-m gpu tests/test_gpu.py" in line for line in steps)
    assert any("benchmarks/gpu_bench.py" in line for line in steps)
    assert any("benchmarks/loop_overhead.py --device cuda" in line for line in steps)
    assert any("benchmarks/gpu_table.py" in line for line in steps)
    assert list(tmp_path.iterdir()) == []  # nothing was run or written
    bad = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--fast"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option --fast" in bad.stderr


def test_the_table_reads_the_logs(tmp_path: Path) -> None:
    (tmp_path / "gpu_tests.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="0">'
        '<testcase name="test_a"/><testcase name="test_b"/>'
        '<testcase name="test_c"><failure message="syncs at x.py:3"/></testcase></testsuite></testsuites>')
    kernels = [{"cell": "lstm", "hidden": 1024, "precision": p, "layout": layout, "ms_per_step": ms,
                "real_tokens_per_s": 1.0, "peak_mib": 10.0}
               for p, layout, ms in (("fp32", "packed", 30.0), ("bf16-mixed", "packed", 12.0), ("fp32", "padded", 36.0))]
    (tmp_path / "gpu_bench.json").write_text(json.dumps({"kernels": kernels, "recipes": [
        {"recipe": "m1_yearly_gru", "precision": "bf16-mixed", "tokens_per_s": 5e5, "ms_per_step": 3.0,
         "peak_mib": 50.0, "fused_optimizer": True}]}))
    (tmp_path / "loop_overhead.log").write_text("ratio Lightning/plain real tok/s: 0.981 (ratio of medians; x)\n")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_table.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    table = result.stdout
    assert "| -m gpu tests | 2 passed, 1 failed, 0 skipped |" in table
    assert "| FAILED test_c | syncs at x.py:3 |" in table
    assert "bf16-mixed / fp32 step rate, LSTM H=1024 packed (target >= 1.5 for LSTM) | 2.50x |" in table
    assert "packed / padded step rate, LSTM H=1024 fp32 (lengths 100-200) | 1.20x |" in table
    assert "recipe m1_yearly_gru" in table and "500,000 tokens/s" in table
    assert "(target >= 0.95) | 0.981 (ratio of medians |" in table
