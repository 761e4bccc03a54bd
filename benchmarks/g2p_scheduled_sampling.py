"""Teacher forcing only vs scheduled sampling (linear, exponential, inverse-sigmoid ramps) at equal budget.

Every variant trains the same G2P config for the same number of epochs (so the same optimizer
steps and the same data order); each ramp is set so that the teacher-forcing probability falls
from 1 to `--final-prob` at the last step, so the ramps differ in shape only. Prints test WER/PER
(beam and greedy, stress stripped and kept) of each run's best checkpoint and its training time.

    python benchmarks/g2p_scheduled_sampling.py --config configs/g2p_cmudict_small.yaml --epochs 3
"""

from __future__ import annotations

import argparse
import math

from quiet_fit import fit_variant, quiet_logging

KINDS = ("constant", "linear", "exponential", "inverse_sigmoid")


def ramp_arguments(kind: str, total_steps: int, final_prob: float) -> dict[str, float]:
    """k (and c) for `TeacherForcingSchedule` so that ε(0) ≈ 1 and ε(total_steps) = final_prob."""
    if kind == "constant":
        return {}
    if kind == "linear":
        return {"k": 1.0, "c": (1.0 - final_prob) / total_steps}
    if kind == "exponential":
        return {"k": final_prob ** (1.0 / total_steps)}
    if kind == "inverse_sigmoid":
        # k / (k + exp(T / k)) = p  <=>  T = k * ln(k (1 - p) / p); the right side grows with k, so bisect.
        def excess(k: float) -> float:
            return k * math.log(k * (1.0 - final_prob) / final_prob) - total_steps

        low, high = max(1.0, final_prob / (1.0 - final_prob)) + 1e-9, float(total_steps + 10)
        for _ in range(200):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if excess(middle) < 0 else (low, middle)
        return {"k": 0.5 * (low + high)}
    raise ValueError(f"unknown kind {kind!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/g2p_cmudict_small.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--final-prob", type=float, default=0.5, help="teacher-forcing probability at the last step")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    args, extra = parser.parse_known_args()
    quiet_logging()

    rows: list[tuple[str, dict[str, float], float, str]] = []
    total_steps: int | None = None
    for kind in args.kinds:
        ramp = ramp_arguments(kind, total_steps, args.final_prob) if total_steps else {}
        if kind != "constant" and total_steps is None:
            # The step count is only known once a data module exists; a 0-epoch fit would also set it
            # up, but the first real run gives it for free, so run teacher forcing (or this kind) first.
            raise SystemExit("put 'constant' first in --kinds: its run measures the number of steps")
        overrides = {"teacher_forcing.init_args.kind": kind,
                     **{f"teacher_forcing.init_args.{key}": str(value) for key, value in ramp.items()}}
        cli, seconds = fit_variant(args.config, args.epochs, f"scheduled_sampling_{kind}", overrides, extra)
        total_steps = total_steps or int(cli.trainer.global_step)
        results = dict((cli.test_results or [{}])[0])
        results.update({k: v for k, v in cli.fit_metrics.items() if k.startswith(("data/tokens_per_sec", "val/wer"))})
        described = ", ".join(f"{k.removeprefix('teacher_forcing_')}={v:.6g}" for k, v in ramp.items()) or "-"
        rows.append((kind, results, seconds, described))
        print(f"{kind}: test/wer {results.get('test/wer', float('nan')):.4f} ({seconds:.0f} s) "
              f"-> {cli.trainer.log_dir}", flush=True)

    print(f"\n== {args.config}, {args.epochs} epochs ({total_steps} steps), ε falls to {args.final_prob} ==")
    header = ("teacher forcing", "ramp", "beam WER", "beam PER", "greedy WER", "greedy PER", "beam WER+stress",
              "train tok/s", "minutes")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for kind, results, seconds, described in rows:
        values = [
            results.get("test/wer"), results.get("test/per"), results.get("test/greedy_wer"),
            results.get("test/greedy_per"), results.get("test/wer_stress"),
        ]
        cells = [f"{100 * v:.2f}%" if v is not None else "n/a" for v in values]
        speed = results.get("data/tokens_per_sec_epoch")
        cells += [f"{speed:.0f}" if speed else "n/a", f"{seconds / 60:.1f}"]
        print(f"| {kind} | {described} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
