"""The report side of `seqlit compare`: per-variant statistics over seeds, the paired verdict against the
first variant, and `<out>/report.md`, `results.csv`, `summary.csv` and `val_curves.png`.

`seqlit.compare` plans the variants and runs every (variant, seed); this module only reads their results.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from seqlit.plots import save_validation_curves

# Test metric -> whether higher is better; the first one a run reports is the comparison's metric.
METRICS: dict[str, bool] = {"test/acc": True, "test/wer": False, "test/bpc": False, "test/mase": False}


@dataclass(frozen=True)
class Variant:
    """One architecture of the comparison: cell, direction, and the widths that match the parameter budget."""

    name: str
    cell: str
    bidirectional: bool
    sizes: dict[str, int]  # dotted path into the model's hyperparameters -> width
    n_params: int


@dataclass
class Summary:
    """Per-variant statistics of the task metric over seeds."""

    variant: str
    sizes: str
    n_params: int
    params_vs_first: float
    runs: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    best_epoch: float
    seconds_per_epoch: float
    tokens_per_sec: float | None


def summarise(variants: list[Variant], results: list[dict[str, Any]]) -> tuple[str, list[Summary]]:
    metric = results[0]["metric"]
    rows = []
    for variant in variants:
        mine = [r for r in results if r["variant"] == variant.name]
        values = [r["test"][metric] for r in mine]
        low, high = _confidence_interval(values)
        tokens = [r["tokens_per_sec"] for r in mine if r["tokens_per_sec"] is not None]
        epochs = [r["best_epoch"] for r in mine if r["best_epoch"] is not None]
        rows.append(Summary(
            variant=variant.name,
            sizes=", ".join(f"{k}={v}" for k, v in variant.sizes.items()),
            n_params=variant.n_params,
            params_vs_first=variant.n_params / variants[0].n_params - 1.0,
            runs=len(values),
            mean=statistics.mean(values),
            std=statistics.stdev(values) if len(values) > 1 else 0.0,
            ci_low=low,
            ci_high=high,
            best_epoch=statistics.mean(epochs) if epochs else float("nan"),
            seconds_per_epoch=statistics.mean(r["seconds_per_epoch"] for r in mine),
            tokens_per_sec=statistics.mean(tokens) if tokens else None,
        ))
    return metric, rows


def verdict(metric: str, first: str, other: str, results: list[dict[str, Any]], alpha: float = 0.05) -> str:
    """One line: the paired difference over the seeds both variants finished, and whether it is significant."""
    from scipy import stats

    by_seed = {(r["variant"], r["seed"]): r["test"][metric] for r in results}
    seeds = sorted(seed for (name, seed) in by_seed if name == first and (other, seed) in by_seed)
    a = [by_seed[(other, seed)] for seed in seeds]
    b = [by_seed[(first, seed)] for seed in seeds]
    if len(seeds) < 2:
        return f"{other} vs {first}: only {len(seeds)} paired seed(s); a paired test needs at least 2."
    differences = [x - y for x, y in zip(a, b)]
    mean_difference = statistics.mean(differences)
    low, high = _confidence_interval(differences)
    head = (f"{other} vs {first} on {metric}: {statistics.mean(a):.4f} vs {statistics.mean(b):.4f}, difference "
            f"{mean_difference:+.4f} (95% CI {low:+.4f} to {high:+.4f})")
    if all(d == differences[0] for d in differences):
        return f"{head}; the same difference on every seed, so no test is needed."
    p_value = float(stats.ttest_rel(a, b).pvalue)
    if p_value >= alpha:
        return (f"{head}, paired t-test p = {p_value:.3f} over {len(seeds)} seeds: no significant difference at "
                f"α = {alpha}.")
    better = other if (mean_difference > 0) == METRICS[metric] else first
    return (f"{head}, paired t-test p = {p_value:.3g} over {len(seeds)} seeds: {better} is significantly better at "
            f"α = {alpha}.")


def _confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean (NaN with fewer than two values)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    from scipy import stats

    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return statistics.mean(values) - half, statistics.mean(values) + half


def write_report(out: Path, config: str, variants: list[Variant], results: list[dict[str, Any]]) -> Path:
    metric, rows = summarise(variants, results)
    hidden = ("test", "val_curve", "reused", "config_digest", "settings")
    per_run = [{k: v for k, v in r.items() if k not in hidden} | r["test"] for r in results]
    for row in per_run:
        row["sizes"] = " ".join(f"{k}={v}" for k, v in row["sizes"].items())
    pd.DataFrame(per_run).to_csv(out / "results.csv", index=False)
    pd.DataFrame([asdict(row) for row in rows]).to_csv(out / "summary.csv", index=False)
    curves = {v.name: [r["val_curve"] for r in results if r["variant"] == v.name] for v in variants}
    val_metric = metric.replace("test/", "val/")
    plotted = any(curve for runs in curves.values() for curve in runs)
    if plotted:
        save_validation_curves(curves, out / "val_curves.png", val_metric, title=f"{Path(config).name}: {val_metric}")
    direction = "higher" if METRICS[metric] else "lower"
    lines = [
        f"# seqlit compare: {Path(config).name}",
        "",
        f"Test metric `{metric}` ({direction} is better), best checkpoint by the config's monitor; "
        f"{rows[0].runs} seed(s) per variant. Parameter counts are matched to `{variants[0].name}`.",
        "",
        f"| variant | widths | params | vs {variants[0].name} | runs | {metric} mean ± std | 95% CI | "
        f"best {val_metric} epoch | s / epoch | tokens / s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        tokens = f"{row.tokens_per_sec:,.0f}" if row.tokens_per_sec is not None else "n/a"
        interval = "n/a (1 run)" if math.isnan(row.ci_low) else f"{row.ci_low:.4f} – {row.ci_high:.4f}"
        lines.append(
            f"| {row.variant} | {row.sizes} | {row.n_params:,} | {row.params_vs_first:+.2%} | {row.runs} | "
            f"{row.mean:.4f} ± {row.std:.4f} | {interval} | {row.best_epoch:.1f} | "
            f"{row.seconds_per_epoch:.2f} | {tokens} |"
        )
    lines += ["", "## Verdict", ""]
    lines += [f"- {verdict(metric, variants[0].name, v.name, results)}" for v in variants[1:]]
    if len(variants) > 2:
        lines.append(f"- {len(variants) - 1} tests against {variants[0].name}: with a Bonferroni correction a "
                     f"difference is significant at p < {0.05 / (len(variants) - 1):.4f}.")
    if plotted:
        lines += ["", "![validation curves](val_curves.png)", "",
                  f"`val_curves.png`: mean {val_metric} per epoch over seeds, band from the lowest to the highest run."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
