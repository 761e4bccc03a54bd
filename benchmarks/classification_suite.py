"""seqlit's classification default (`configs/classify_csv.yaml`) against aeon's MiniRocket, on the same splits.

Each data set is taken from `aeon` with its official train/test split and written as the long-format CSV files
a user would bring (`entity, time, f0.., label`). seqlit runs through `seqlit fit --config
configs/classify_csv.yaml --data.train_path ... --data.test_path ...` exactly as a user would (it carves its
own validation split from the training file); MiniRocket (aeon's default 10,000 kernels + ridge classifier)
fits the whole training split. MiniRocket needs equal lengths: unequal series are padded at the end with
their last value for it (seqlit reads them as they are). Accuracy is mean ± std over seeds, with wall time.

Development sets (the only ones the default was tuned on): JapaneseVowels, ACSF1, ItalyPowerDemand.
Held-out sets for judging it, also shipped by aeon: PickupGestureWiimoteZ, GunPoint, OSULeaf, ArrowHead,
BasicMotions.

    python benchmarks/classification_suite.py                      # the three development sets, 3 seeds
    python benchmarks/classification_suite.py --datasets GunPoint OSULeaf --seeds 0
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEVELOPMENT = ("JapaneseVowels", "ACSF1", "ItalyPowerDemand")
HELD_OUT = ("PickupGestureWiimoteZ", "GunPoint", "OSULeaf", "ArrowHead", "BasicMotions")


def load(name: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """aeon's split -> list of (F, T_i) arrays and (N,) string labels."""
    from aeon.datasets import load_classification

    series, labels = load_classification(name, split=split)
    return [np.asarray(item, dtype=np.float64) for item in series], np.asarray(labels).astype(str)


def write_long_format(series: list[np.ndarray], labels: np.ndarray, prefix: str, path: Path) -> None:
    """One row per (series, step): entity, time, f0..f{F-1}, label; NaN steps (aeon's end padding) dropped."""
    n_features = series[0].shape[0]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entity", "time", *[f"f{i}" for i in range(n_features)], "label"])
        for index, (item, label) in enumerate(zip(series, labels)):
            for step in range(item.shape[1]):
                values = item[:, step]
                if np.isnan(values).any():
                    continue
                writer.writerow([f"{prefix}-{index}", step, *[f"{value:.7g}" for value in values], label])


def padded(series: list[np.ndarray], longest: int) -> np.ndarray:
    """(N, F, longest) array, each series padded at the end with its last value (MiniRocket needs one length)."""
    return np.stack([np.pad(item, ((0, 0), (0, longest - item.shape[1])), mode="edge") for item in series])


def run_minirocket(name: str, seed: int) -> tuple[float, float]:
    from aeon.classification.convolution_based import MiniRocketClassifier

    train_x, train_y = load(name, "train")
    test_x, test_y = load(name, "test")
    longest = max(item.shape[1] for item in [*train_x, *test_x])
    started = time.perf_counter()
    classifier = MiniRocketClassifier(random_state=seed, n_jobs=1)
    classifier.fit(padded(train_x, longest), train_y)
    accuracy = float(np.mean(classifier.predict(padded(test_x, longest)) == test_y))
    return accuracy, time.perf_counter() - started


def run_seqlit(name: str, seed: int, folder: Path, config: str, extra: list[str]) -> tuple[float, float]:
    train_path, test_path = folder / f"{name}_train.csv", folder / f"{name}_test.csv"
    if not train_path.exists():
        write_long_format(*load(name, "train"), "train", train_path)
        write_long_format(*load(name, "test"), "test", test_path)
    run_name = f"{name}_seed{seed}"
    command = [sys.executable, "-m", "seqlit", "fit", "--config", str(REPO / config),
               "--data.train_path", str(train_path), "--data.test_path", str(test_path),
               "--seed_everything", str(seed), "--run_name", run_name, "--trainer.enable_progress_bar", "false",
               *extra]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"seqlit on {name} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    metrics_file = sorted((folder / "runs" / run_name).glob("version_*/metrics.csv"))[-1]
    rows = list(csv.DictReader(metrics_file.open()))
    return float(next(row["test/acc"] for row in rows if row.get("test/acc"))), seconds


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DEVELOPMENT))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--config", default="configs/classify_csv.yaml")
    parser.add_argument("--no-minirocket", action="store_true", help="run seqlit only")
    parser.add_argument("extra", nargs="*", help="further `seqlit fit` flags after --, e.g. -- --model.init_args.pooling last")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="classification_suite_") as name:
        folder = Path(name)
        for dataset in args.datasets:
            seqlit_runs = [run_seqlit(dataset, seed, folder, args.config, args.extra) for seed in args.seeds]
            print(f"{dataset}: seqlit " + ", ".join(f"{acc:.4f} ({sec:.0f} s)" for acc, sec in seqlit_runs), flush=True)
            rocket_runs = [] if args.no_minirocket else [run_minirocket(dataset, seed) for seed in args.seeds]
            if rocket_runs:
                print(f"{dataset}: MiniRocket " + ", ".join(f"{acc:.4f} ({sec:.0f} s)" for acc, sec in rocket_runs),
                      flush=True)
            rows.append((dataset, seqlit_runs, rocket_runs))
    print(f"\n| data set | seqlit default ({len(args.seeds)} seeds) | s / seed | MiniRocket | s / seed | difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for dataset, seqlit_runs, rocket_runs in rows:
        ours = [acc for acc, _ in seqlit_runs]
        line = f"| {dataset} | {summary(ours)} | {statistics.mean(sec for _, sec in seqlit_runs):.0f} |"
        if rocket_runs:
            theirs = [acc for acc, _ in rocket_runs]
            line += (f" {summary(theirs)} | {statistics.mean(sec for _, sec in rocket_runs):.0f} | "
                     f"{100 * (statistics.mean(ours) - statistics.mean(theirs)):+.1f} points |")
        else:
            line += " – | – | – |"
        print(line)


if __name__ == "__main__":
    main()
