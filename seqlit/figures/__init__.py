"""Validation figures per task family (drawn by `seqlit.callbacks.TaskFigures`, read back by `seqlit report`):
matplotlib on the Agg canvas, rendered once and sent to every logger and to the run's folder."""

from seqlit.figures.artifacts import Artifact, ImageArtifact, TableArtifact
from seqlit.figures.classification import ClassificationFigures
from seqlit.figures.forecasting import ForecastingFigures
from seqlit.figures.grad_norms import grad_norm_heatmap
from seqlit.figures.language_model import LanguageModelFigures
from seqlit.figures.maker import FigureMaker
from seqlit.figures.publish import FIGURES_FOLDER, publish
from seqlit.figures.seq2seq import Seq2SeqFigures

# A task's `figure_family` -> its figure maker (what TaskFigures draws when it is given none).
MAKERS_BY_FAMILY: dict[str, type[FigureMaker]] = {
    "classification": ClassificationFigures,
    "seq2seq": Seq2SeqFigures,
    "language_model": LanguageModelFigures,
    "forecasting": ForecastingFigures,
}

__all__ = [
    "FIGURES_FOLDER",
    "MAKERS_BY_FAMILY",
    "Artifact",
    "ClassificationFigures",
    "FigureMaker",
    "ForecastingFigures",
    "ImageArtifact",
    "LanguageModelFigures",
    "Seq2SeqFigures",
    "TableArtifact",
    "grad_norm_heatmap",
    "publish",
]
