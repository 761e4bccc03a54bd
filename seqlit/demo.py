"""`python -m seqlit.demo`: trains a config over several seeds, tests each best checkpoint, and
prints per-seed and mean ± std test metrics with the log directories (what `make demo` runs)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from seqlit.cli import SeqlitCLI, quiet_lightning


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/japanese_vowels_gru.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--metric", default="test/acc", help="test metric to summarise")
    args, extra = parser.parse_known_args(argv)
    rows: list[tuple[int, dict[str, float], str, float]] = []
    for index, seed in enumerate(args.seeds):
        started = time.perf_counter()
        with quiet_lightning():  # the summary below is the demo's output; Lightning's chatter would bury it
            cli = _QuietCLI(
                args=[
                    "fit",
                    "--config", args.config,
                    "--seed_everything", str(seed),
                    "--test_after_fit", "true",
                    "--trainer.enable_progress_bar", "false",
                    "--trainer.enable_model_summary", str(index == 0).lower(),
                    *extra,
                ]
            )
        results = dict((cli.test_results or [{}])[0])
        for key in ("data/padding_ratio_epoch", "data/padding_ratio_random"):
            if key in cli.fit_metrics:
                results[key] = cli.fit_metrics[key]
        rows.append((seed, results, str(cli.trainer.log_dir), time.perf_counter() - started))
        print(f"seed {seed}: {args.metric} {results.get(args.metric, float('nan')):.4f}, "
              f"test/f1 {results.get('test/f1', float('nan')):.4f} ({rows[-1][3]:.0f} s, epochs "
              f"{cli.trainer.current_epoch}) -> {rows[-1][2]}", flush=True)

    values = [results.get(args.metric, float("nan")) for _, results, _, _ in rows]
    print(f"\n== {args.config}: {args.metric} on the held-out test split ==")
    print(f"{'seed':>4}  {args.metric:>10}  {'test/f1':>8}  {'seconds':>7}  logs")
    for seed, results, log_dir, seconds in rows:
        print(
            f"{seed:>4}  {results.get(args.metric, float('nan')):>10.4f}  "
            f"{results.get('test/f1', float('nan')):>8.4f}  {seconds:>7.1f}  {log_dir}"
        )
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"mean {args.metric} = {statistics.mean(values):.4f} ± {spread:.4f} (std over {len(values)} seeds)")
    first = rows[0][1]
    if "data/padding_ratio_epoch" in first and "data/padding_ratio_random" in first:
        print(f"padding ratio (last epoch): bucketed {first['data/padding_ratio_epoch']:.3f}, "
              f"random batching would give {first['data/padding_ratio_random']:.3f}")
    print("logs: <log dir>/metrics.csv (CSV) and TensorBoard files (tensorboard --logdir runs), checkpoints in "
          "<log dir>/checkpoints")
    return 0


class _QuietCLI(SeqlitCLI):
    test_verbose = False  # the demo prints its own table
    announce = False  # ... and its own line per seed


if __name__ == "__main__":
    sys.exit(main())
