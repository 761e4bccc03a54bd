"""Attention heatmaps (matplotlib PNG) for inspecting what a seq2seq model aligns.

    python -m seqlit.plots --checkpoint runs/g2p_cmudict/version_0/checkpoints/last.ckpt \\
        --word phoneme --output phoneme_attention.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(0.45 * len(source_labels) + 2.0, 0.4 * len(target_labels) + 1.5))
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source_labels)), labels=list(source_labels))
    axes.set_yticks(range(len(target_labels)), labels=list(target_labels))
    axes.set_xlabel("input")
    axes.set_ylabel("output")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    """Loads a seq2seq checkpoint, transcribes one word greedily and saves its attention heatmap."""
    from seqlit.tasks.seq2seq import Seq2SeqModel

    parser = argparse.ArgumentParser(prog="python -m seqlit.plots", description=main.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a Seq2SeqModel checkpoint (.ckpt)")
    parser.add_argument("--word", required=True, help="the input word")
    parser.add_argument("--output", default=None, help="PNG path (default: <word>_attention.png)")
    parser.add_argument("--keep-case", action="store_true", help="do not lowercase the word (data.lowercase=false)")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"seqlit: error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        raise SystemExit(2)
    word = args.word if args.keep_case else args.word.lower()
    model = Seq2SeqModel.load_from_checkpoint(args.checkpoint, map_location="cpu")
    symbols, weights = model.attention_map(word)
    output = Path(args.output or f"{word}_attention.png")
    save_attention_heatmap(weights, list(word), symbols, output, title=f"{word} -> {' '.join(symbols)}")
    print(f"{word}\t{' '.join(symbols)}\nseqlit: wrote {output}")


if __name__ == "__main__":
    main()
