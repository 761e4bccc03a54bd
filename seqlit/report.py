"""`seqlit report RUN_DIR`: one self-contained HTML page for a finished run, built from the run's own files
(config.yaml, metrics.csv, figures/epoch_NNN/): curves, gradient norms by layer, padding and throughput,
the task figures of the last validation and the test metrics. Images are inlined as base64 PNGs and the
page loads nothing from the network, so it can be mailed, archived or opened on an offline cluster."""

from __future__ import annotations

import argparse
import base64
import csv
import html
import math
import sys
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from seqlit.errors import SeqlitError
from seqlit.figures.artifacts import new_figure, render
from seqlit.figures.grad_norms import grad_norm_heatmap
from seqlit.figures.publish import FIGURES_FOLDER

CURVE_PREFIXES = ("train/", "val/")
MAX_TABLE_ROWS = 50


def main(argv: list[str] | None = None) -> None:
    """Writes the report of RUN_DIR (a `runs/<name>/version_N` folder) and prints where it is."""
    parser = argparse.ArgumentParser(prog="seqlit report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run's version folder, e.g. runs/japanese_vowels_gru/version_0")
    parser.add_argument("--output", default=None, help="HTML path (default: RUN_DIR/report.html)")
    args = parser.parse_args(argv)
    try:
        path = write_report(Path(args.run_dir), Path(args.output) if args.output else None)
    except SeqlitError as error:
        print(f"seqlit: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"seqlit: wrote {path}")


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    """Renders RUN_DIR's report to `output` (default RUN_DIR/report.html) and returns the path."""
    if not (run_dir / "metrics.csv").is_file() and not (run_dir / "config.yaml").is_file():
        raise SeqlitError(
            f"{run_dir} has neither metrics.csv nor config.yaml; pass a run's version folder "
            "(runs/<name>/version_N, the CSV logger's folder)."
        )
    output = output or run_dir / "report.html"
    output.write_text(render_report(run_dir), encoding="utf-8")
    return output


def render_report(run_dir: Path) -> str:
    """The report of `run_dir` as one HTML string."""
    metrics = _read_metrics(run_dir / "metrics.csv")
    epochs = _per_epoch(metrics) if metrics is not None else None
    sections = [
        _section("Test metrics", _test_metrics(metrics)),
        _section("Curves", _curves(epochs)),
        _section("Gradient norms by layer", _gradients(epochs)),
        _section("Padding and throughput", _padding(epochs)),
        _section("Task figures of the last validation", _task_figures(run_dir)),
        _section("Resolved config", _config(run_dir)),
    ]
    title = f"seqlit report: {run_dir.parent.name}/{run_dir.name}"
    return _PAGE.format(title=html.escape(title), body="\n".join(sections))


# ---- sections --------------------------------------------------------------------------------------
def _test_metrics(metrics: pd.DataFrame | None) -> str:
    columns = [c for c in (metrics.columns if metrics is not None else []) if c.startswith("test/")]
    if not columns:
        return _missing("no test metrics in metrics.csv (run with test_after_fit: true, or `seqlit test`).")
    assert metrics is not None
    rows = [[name, _number(metrics[name].dropna().iloc[-1])] for name in sorted(columns) if metrics[name].notna().any()]
    return _table(["metric", "value"], rows)


def _curves(epochs: pd.DataFrame | None) -> str:
    if epochs is None:
        return _missing("no metrics.csv.")
    names = sorted({_base_name(c) for c in epochs.columns if c.startswith(CURVE_PREFIXES) and not c.endswith("_step")})
    if not names:
        return _missing("no per-epoch training or validation metrics.")
    columns = 3 if len(names) > 2 else len(names)
    rows = math.ceil(len(names) / columns)
    figure, axes = new_figure(4.0 * columns, 2.8 * rows, rows, columns)
    flat = axes.ravel() if hasattr(axes, "ravel") else [axes]
    for ax, name in zip(flat, names):
        for stage_column in _stage_columns(epochs, name):
            series = epochs[stage_column].dropna()
            ax.plot(series.index, series.values, marker=".", label=stage_column)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(flat)[len(names):]:
        ax.axis("off")
    return _image(render("curves", figure).png, "training and validation curves")


def _gradients(epochs: pd.DataFrame | None) -> str:
    if epochs is None:
        return _missing("no metrics.csv.")
    history: dict[str, dict[int, float]] = {}
    for column in epochs.columns:
        for prefix in ("grad/norm/", "grad/norm_gate/"):
            if column.startswith(prefix) and column.endswith("_epoch"):
                values = epochs[column].dropna()
                history[column[len(prefix):].removesuffix("_epoch")] = {int(e): float(v) for e, v in values.items()}
    if not history:
        return _missing("no per-layer gradient norms (GradNormMonitor logs them on logging steps).")
    parts = [_image(grad_norm_heatmap(history).png, "gradient norm by layer and gate")]
    totals = [c for c in ("grad/norm_total_epoch", "grad/norm_clipped_epoch") if c in epochs.columns]
    if totals:
        figure, ax = new_figure(6.0, 2.8)
        for column in totals:
            series = epochs[column].dropna()
            ax.plot(series.index, series.values, marker=".", label=column)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        parts.append(_image(render("grad_total", figure).png, "total gradient norm"))
    return "\n".join(parts)


def _padding(epochs: pd.DataFrame | None) -> str:
    wanted = ("data/padding_ratio_epoch", "data/padding_ratio_random", "data/tokens_per_sec_epoch")
    present = [c for c in wanted if epochs is not None and c in epochs.columns and epochs[c].notna().any()]
    if not present:
        return _missing("no padding or throughput metrics (PaddingRatioMonitor logs them).")
    assert epochs is not None
    summary = [[c, _number(epochs[c].dropna().mean())] for c in present]
    figure, axes = new_figure(9.0, 2.8, 1, 2)
    axes = axes.ravel()
    for column in present[:2] if "data/tokens_per_sec_epoch" in present else present:
        if column.startswith("data/padding"):
            series = epochs[column].dropna()
            axes[0].plot(series.index, series.values, marker=".", label=column)
    axes[0].set_ylim(0, None)
    axes[0].set_title("padding share of the batches", fontsize=9)
    axes[0].legend(fontsize=7)
    if "data/tokens_per_sec_epoch" in present:
        series = epochs["data/tokens_per_sec_epoch"].dropna()
        axes[1].plot(series.index, series.values, marker=".", color="tab:green")
    axes[1].set_title("real tokens per second", fontsize=9)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    return _table(["metric (mean over epochs)", "value"], summary) + _image(render("padding", figure).png,
                                                                            "padding and throughput")


def _task_figures(run_dir: Path) -> str:
    folders = sorted((run_dir / FIGURES_FOLDER).glob("epoch_*"))
    if not folders:
        return _missing(f"no {FIGURES_FOLDER}/epoch_NNN folder (the TaskFigures callback writes them).")
    latest = folders[-1]
    parts = [f"<p class='note'>{html.escape(latest.name.replace('_', ' '))}</p>"]
    for png in sorted(latest.glob("*.png")):
        if png.stem == "grad_norms":
            continue  # the gradient section draws it from metrics.csv
        parts.append(f"<h3>{html.escape(png.stem)}</h3>" + _image(png.read_bytes(), png.stem))
    for table in sorted(latest.glob("*.csv")):
        with open(table, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if rows:
            parts.append(f"<h3>{html.escape(table.stem)}</h3>" + _table(rows[0], rows[1 : MAX_TABLE_ROWS + 1]))
    return "\n".join(parts)


def _config(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return _missing("no config.yaml (LightningCLI writes it at the start of `seqlit fit`).")
    return f"<pre>{html.escape(path.read_text(encoding='utf-8'))}</pre>"


# ---- metrics.csv -----------------------------------------------------------------------------------
def _read_metrics(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    return pd.read_csv(path)


def _per_epoch(metrics: pd.DataFrame) -> pd.DataFrame | None:
    """One row per epoch: the last value each column logged in it (epoch metrics are logged once)."""
    if "epoch" not in metrics.columns:
        return None
    rows = metrics.copy()
    # Callbacks that write straight to the loggers (GradNormMonitor's epoch means, at the epoch's end) leave
    # `epoch` empty; the CSV logger keeps write order, so the row written before theirs has their epoch.
    rows["epoch"] = rows["epoch"].ffill()
    rows = rows.dropna(subset=["epoch"])
    rows["epoch"] = rows["epoch"].astype(int)
    keep = [c for c in rows.columns if c not in ("epoch", "step")]
    return rows.groupby("epoch")[keep].last()


def _base_name(column: str) -> str:
    """`train/loss_epoch` and `val/loss` -> `loss`: a train and a val curve of one quantity share a plot."""
    name = column.split("/", 1)[1]
    return name.removesuffix("_epoch")


def _stage_columns(epochs: pd.DataFrame, name: str) -> list[str]:
    candidates = [f"train/{name}_epoch", f"train/{name}", f"val/{name}"]
    chosen = [c for c in candidates if c in epochs.columns and epochs[c].notna().any()]
    if f"train/{name}_epoch" in chosen and f"train/{name}" in chosen:
        chosen.remove(f"train/{name}")  # the step values; the epoch mean is the curve
    return chosen


# ---- HTML ------------------------------------------------------------------------------------------
def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _image(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f"<img src=\"data:image/png;base64,{encoded}\" alt=\"{html.escape(alt)}\">"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _missing(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def _number(value: float) -> str:
    return f"{float(value):.4g}"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.5rem; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }}
h3 {{ font-size: 1rem; margin-bottom: .3rem; }}
img {{ max-width: 100%; display: block; margin: .5rem 0; }}
table {{ border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }}
th, td {{ border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; vertical-align: top; white-space: pre-wrap; }}
th {{ background: #f3f3f3; }}
pre {{ background: #f7f7f7; padding: .8rem; font-size: .75rem; overflow-x: auto; }}
.note {{ color: #666; font-style: italic; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""

__all__ = ["main", "render_report", "write_report"]
