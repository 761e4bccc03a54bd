"""Plots as matplotlib PNGs: attention heatmaps for inspecting what a seq2seq model aligns, and the
validation curves of several training variants (what `seqlit compare` draws).

    python -m seqlit.plots --checkpoint runs/g2p_cmudict/version_0/checkpoints/last.ckpt --word phoneme
    # -> runs/g2p_cmudict/version_0/phoneme_attention.png
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_attention_heatmap(
    weights: np.ndarray | torch.Tensor,
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Writes a (T_out, S) attention matrix as a PNG: one row per output symbol, one column per input symbol."""
    matrix = weights.detach().cpu().float().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if matrix.ndim != 2:
        raise ValueError(f"weights must be 2-D (outputs, inputs), got shape {matrix.shape}")
    if matrix.shape != (len(target_labels), len(source_labels)):
        raise ValueError(
            f"weights have shape {matrix.shape} but there are {len(target_labels)} output and "
            f"{len(source_labels)} input labels; pass one label per row and per column."
        )
    figure, axes = _new_figure(0.45 * len(source_labels) + 2.0, 0.4 * len(target_labels) + 1.5)
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source_labels)), labels=list(source_labels))
    axes.set_yticks(range(len(target_labels)), labels=list(target_labels))
    axes.set_xlabel("input")
    axes.set_ylabel("output")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return _save(figure, path)


def save_validation_curves(
    curves: dict[str, list[list[float]]],
    path: str | Path,
    metric: str,
    title: str | None = None,
) -> Path:
    """One line per variant: the mean over its runs of `metric` at each epoch, with a band from the lowest
    to the highest run (runs that stopped early count at the epochs they reached)."""
    if not curves or not any(any(len(run) for run in runs) for runs in curves.values()):
        raise ValueError("no validation values to plot; the runs logged no per-epoch validation metric.")
    figure, axes = _new_figure(7.0, 4.5)
    for name, runs in curves.items():
        longest = max((len(run) for run in runs), default=0)
        if longest == 0:
            continue
        grid = np.full((len(runs), longest), np.nan)  # (runs, epochs)
        for row, run in enumerate(runs):
            grid[row, : len(run)] = run
        epochs = np.arange(1, longest + 1)
        mean = np.nanmean(grid, axis=0)
        line = axes.plot(epochs, mean, label=f"{name} (n={len(runs)})")[0]
        axes.fill_between(epochs, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0), color=line.get_color(),
                          alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    return _save(figure, path)


def _new_figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure and its axes drawn off-screen by the Agg canvas, without pyplot: no display needed, and a
    notebook's or script's own matplotlib backend is left as it was."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure: Any, path: str | Path) -> Path:
    """Writes a finished figure as a 120-dpi PNG, creating its folder (pyplot never held it: nothing to free)."""
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> None:
    """Loads a seq2seq checkpoint, transcribes one word greedily and saves its attention heatmap."""
    from seqlit.tasks.seq2seq import Seq2SeqModel

    parser = argparse.ArgumentParser(prog="python -m seqlit.plots", description=main.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a Seq2SeqModel checkpoint (.ckpt)")
    parser.add_argument("--word", required=True, help="the input word")
    parser.add_argument("--output", default=None,
                        help="PNG path (default: <word>_attention.png in the checkpoint's run folder)")
    parser.add_argument("--keep-case", action="store_true", help="do not lowercase the word (data.lowercase=false)")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"seqlit: error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        raise SystemExit(2)
    word = args.word if args.keep_case else args.word.lower()
    # Said explicitly where Lightning takes it (>= 2.5); seqlit's checkpoints are plain data.
    takes_it = "weights_only" in inspect.signature(Seq2SeqModel.load_from_checkpoint).parameters
    explicit = {"weights_only": True} if takes_it else {}
    model = Seq2SeqModel.load_from_checkpoint(args.checkpoint, map_location="cpu", **explicit)
    symbols, weights = model.attention_map(word)
    output = Path(args.output) if args.output else run_folder(Path(args.checkpoint)) / f"{word}_attention.png"
    save_attention_heatmap(weights, list(word), symbols, output, title=f"{word} -> {' '.join(symbols)}")
    print(f"{word}\t{' '.join(symbols)}\nseqlit: wrote {output}")


def run_folder(checkpoint: Path) -> Path:
    """`runs/<name>/version_N` for a checkpoint in its `checkpoints/` folder, else the checkpoint's own folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


if __name__ == "__main__":
    main()
