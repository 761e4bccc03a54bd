"""Seq2seq figures for the fixed validation items: attention heatmaps of the greedy decode, and a table of
source, references, greedy and beam hypotheses with their edit distance, worst first."""

from __future__ import annotations

from typing import Any

from seqlit.figures.artifacts import Artifact, TableArtifact, new_figure, render
from seqlit.figures.maker import FigureMaker
from seqlit.metrics.error_rates import edit_distance
from seqlit.types import PAD_ID


class Seq2SeqFigures(FigureMaker):
    """Figures of `seqlit.tasks.Seq2SeqModel` (or a module with its `decode`, `target_symbols` and
    `source_tokens`/`source_unit`/`target_unit` hparams). `beam` adds beam-search hypotheses (a handful of
    items: cheap); `max_heatmaps` caps the attention panels."""

    def __init__(self, beam: bool = True, max_heatmaps: int = 4) -> None:
        self.beam = beam
        self.max_heatmaps = max_heatmaps

    def make(self, module: Any, items: Any | None, epoch: int) -> list[Artifact]:
        if items is None:
            return []
        greedy = module.decode(items, "greedy")
        greedy_ids = greedy.as_lists()
        beam_ids = module.decode(items, "beam").as_lists() if self.beam else None
        sources = _source_symbols(module, items)
        hparams = module.hparams
        target_join = "" if hparams.get("target_unit") == "char" else " "
        source_join = "" if hparams.get("source_unit", "char") == "char" else " "

        rows: list[list[Any]] = []
        for row, (index, source, hypothesis) in enumerate(zip(items.indices.tolist(), sources, greedy_ids)):
            hypothesis_symbols = module.target_symbols(hypothesis)
            references = [module.target_symbols(list(ids)) for ids in items.references[row]]
            distance = min(edit_distance(hypothesis_symbols, reference) for reference in references)
            entry = [epoch, int(index), source_join.join(source),
                     " | ".join(target_join.join(reference) for reference in references),
                     target_join.join(hypothesis_symbols), distance]
            if beam_ids is not None:
                beam_symbols = module.target_symbols(beam_ids[row])
                entry += [target_join.join(beam_symbols),
                          min(edit_distance(beam_symbols, reference) for reference in references)]
            rows.append(entry)
        columns = ["epoch", "item", "source", "references", "greedy", "greedy_edits"]
        if beam_ids is not None:
            columns += ["beam", "beam_edits"]
        rows.sort(key=lambda entry: (-entry[5], entry[1]))  # worst first; ties by item, so the order is stable
        artifacts: list[Artifact] = [TableArtifact("val_hypotheses", columns, rows)]
        if greedy.attention is not None and self.max_heatmaps > 0:
            panels = [
                (sources[row], module.target_symbols(greedy_ids[row]),
                 greedy.attention[row, : len(greedy_ids[row]), : len(sources[row])].float().cpu().numpy())
                for row in range(min(self.max_heatmaps, len(greedy_ids)))
            ]
            artifacts.append(attention_figure(panels, epoch))
        return artifacts


def attention_figure(panels: list[tuple[list[str], list[str], Any]], epoch: int) -> Artifact:
    """One heatmap per item: rows are output symbols, columns input symbols, colour the attention weight."""
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    widest = max((len(source) for source, _, _ in panels), default=1)
    tallest = max((len(target) for _, target, _ in panels), default=1)
    figure, axes = new_figure(columns * (1.5 + 0.3 * widest), rows * (1.2 + 0.25 * max(tallest, 1)), rows, columns)
    flat = axes.ravel()
    for ax, (source, target, weights) in zip(flat, panels):
        if len(target) == 0:
            ax.text(0.5, 0.5, "(empty output)", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(source)), labels=source, fontsize=7)
        ax.set_yticks(range(len(target)), labels=target, fontsize=7)
        ax.set_title("".join(source) if all(len(s) == 1 for s in source) else " ".join(source), fontsize=8)
    for ax in flat[len(panels):]:
        ax.axis("off")
    figure.suptitle(f"attention (greedy decode), epoch {epoch}")
    return render("attention", figure)


def _source_symbols(module: Any, items: Any) -> list[list[str]]:
    tokens: list[str] = module.hparams["source_tokens"]
    return [[tokens[i] for i in row[:n] if i != PAD_ID]
            for row, n in zip(items.sources.tolist(), items.source_lengths.tolist())]


__all__ = ["Seq2SeqFigures", "attention_figure"]
