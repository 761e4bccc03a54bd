"""The pure parts of seqlit.figures: per-class F1 against torchmetrics, table rendering, rendering, file output,
and the grad-norm rows taken from GradNormMonitor's epoch means."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torchmetrics.classification import MulticlassF1Score

from seqlit.figures.artifacts import TableArtifact, new_figure, render
from seqlit.figures.classification import per_class_f1
from seqlit.figures.grad_norms import grad_norm_heatmap, history_from_epoch_means
from seqlit.figures.publish import write_files


def test_per_class_f1_matches_torchmetrics() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (200,), generator=generator)
    predictions = torch.where(torch.rand(200, generator=generator) < 0.6, targets,
                              torch.randint(0, 5, (200,), generator=generator))
    confusion = torch.bincount(targets * 5 + predictions, minlength=25).reshape(5, 5).numpy()
    expected = MulticlassF1Score(5, average=None)(predictions, targets).numpy()
    np.testing.assert_allclose(per_class_f1(confusion), expected, rtol=1e-6)


def test_a_class_never_seen_nor_predicted_has_f1_zero() -> None:
    confusion = np.array([[3, 0, 0], [1, 2, 0], [0, 0, 0]])
    assert per_class_f1(confusion)[2] == 0.0


def test_table_markdown_escapes_pipes_and_newlines() -> None:
    table = TableArtifact("t", ["a", "b"], [["x|y", "line\nbreak"], [0.123456, 3]])
    lines = table.markdown().splitlines()
    assert lines[:2] == ["| a | b |", "|---|---|"]
    assert lines[2] == "| x\\|y | line⏎break |" and lines[3] == "| 0.1235 | 3 |"


def test_render_gives_pixels_and_the_png_of_the_same_image(tmp_path: Path) -> None:
    figure, axes = new_figure(3.0, 2.0)
    axes.plot([0, 1], [1, 0])
    image = render("line", figure)
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3
    from matplotlib.image import imread

    write_files([image, TableArtifact("rows", ["k", "v"], [["a", 1]])], tmp_path)
    decoded = imread(tmp_path / "line.png")
    assert decoded.shape[:2] == image.pixels.shape[:2]
    with open(tmp_path / "rows.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [["k", "v"], ["a", "1"]]


def test_grad_rows_come_from_module_and_gate_epoch_means_only() -> None:
    means = {"grad/norm_total_epoch": 2.0, "grad/norm_clipped_epoch": 1.0, "grad/norm/head_epoch": 0.5,
             "grad/norm_gate/encoder.rnn.l0/forget_epoch": 0.1}
    assert history_from_epoch_means(means) == {"head": 0.5, "encoder.rnn.l0/forget": 0.1}
    heatmap = grad_norm_heatmap({"head": {0: 0.5, 1: 0.4}, "encoder.rnn.l0/forget": {1: 0.0}})  # 0: blank cell
    assert heatmap.name == "grad_norms" and heatmap.png.startswith(b"\x89PNG")
