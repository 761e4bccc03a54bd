"""The one table `gpu_check.sh` prints (from its logs in `--out`), and the data export it needs.

    python benchmarks/gpu_table.py --out runs/gpu_check
    python benchmarks/gpu_table.py --export-data .gpu    # JapaneseVowels and M1 yearly as long-format CSV
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--export-data", default=None, metavar="FOLDER")
    args = parser.parse_args()
    if args.export_data:
        export_data(Path(args.export_data))
        return
    print(table(Path(args.out)))


def table(out: Path) -> str:
    lines = ["| check | result |", "|---|---|"]
    lines += _tests(out / "gpu_tests.xml")
    bench = json.loads((out / "gpu_bench.json").read_text()) if (out / "gpu_bench.json").is_file() else {}
    kernels = bench.get("kernels", [])
    for row in kernels:
        lines.append(f"| step {row['cell'].upper()} H={row['hidden']} {row['precision']} {row['layout']} "
                     f"(B64, T200) | {row['ms_per_step']:.2f} ms, {row['real_tokens_per_s']:,.0f} real tok/s, "
                     f"peak {row['peak_mib']:,.0f} MiB |")
    by_key = {(r["cell"], r["hidden"], r["precision"], r["layout"]): r["ms_per_step"] for r in kernels}
    for cell in ("lstm", "gru"):
        fp32, bf16 = by_key.get((cell, 1024, "fp32", "packed")), by_key.get((cell, 1024, "bf16-mixed", "packed"))
        if fp32 and bf16:
            lines.append(f"| bf16-mixed / fp32 step rate, {cell.upper()} H=1024 packed (target >= 1.5 for LSTM) | "
                         f"{fp32 / bf16:.2f}x |")
        padded, packed = by_key.get((cell, 1024, "fp32", "padded")), by_key.get((cell, 1024, "fp32", "packed"))
        if padded and packed:
            lines.append(f"| packed / padded step rate, {cell.upper()} H=1024 fp32 (lengths 100-200) | "
                         f"{padded / packed:.2f}x |")
    for row in bench.get("recipes", []):
        if "error" in row:
            lines.append(f"| recipe {row['recipe']}, 200 steps | failed: {row['error'][:120]} |")
        else:
            lines.append(f"| recipe {row['recipe']}, 200 steps ({row['precision']}, fused optimizer "
                         f"{row['fused_optimizer']}) | {row['tokens_per_s']:,.0f} tokens/s, {row['ms_per_step']:.1f} "
                         f"ms/step, peak {row['peak_mib']:,.0f} MiB |")
    overhead = (out / "loop_overhead.log").read_text() if (out / "loop_overhead.log").is_file() else ""
    match = re.search(r"ratio Lightning/plain real tok/s: ([0-9.]+)(.*)", overhead)
    if match:
        lines.append(f"| callback overhead: Lightning + seqlit callbacks / plain loop (target >= 0.95) | "
                     f"{match.group(1)}{match.group(2).split(';')[0]} |")
    return "\n".join(lines)


def _tests(report: Path) -> list[str]:
    if not report.is_file():
        return ["| -m gpu tests | not run |"]
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    lines = [f"| -m gpu tests | {counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']} passed, "
             f"{counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped |"]
    for case in suite.iter("testcase"):
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failure is not None:
            message = " ".join((failure.get("message") or "").split())[:300]
            lines.append(f"| FAILED {case.get('name')} | {message} |")
    return lines


def export_data(folder: Path) -> None:
    """JapaneseVowels (train/test) and M1 yearly, from `aeon`, as the long-format CSVs `gpu_bench.py` reads."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from seqlit.data.sources import load_japanese_vowels, load_m1_yearly

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        records = load_japanese_vowels(split)
        frames = []
        for index, (sequence, label) in enumerate(zip(records.sequences, records.labels)):
            frame = pd.DataFrame(sequence, columns=records.feature_names)
            frame.insert(0, "time", np.arange(len(sequence)))
            frame.insert(0, "entity", f"{split}-{index}")
            frame["label"] = label
            frames.append(frame)
        pd.concat(frames).to_csv(folder / f"jv_{split}.csv", index=False)
    load_m1_yearly().to_csv(folder / "m1_yearly.csv", index=False)
    print(f"wrote {sorted(p.name for p in folder.glob('*.csv'))} to {folder}")


if __name__ == "__main__":
    main()
