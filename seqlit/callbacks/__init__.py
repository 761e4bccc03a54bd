"""seqlit's callbacks, one per file; the shared base config (`seqlit/cli/base.yaml`) lists the defaults."""

from seqlit.callbacks.best_checkpoint import BestCheckpoint
from seqlit.callbacks.early_stopping import EarlyStopping
from seqlit.callbacks.figures import TaskFigures
from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.callbacks.loss_scale import LossScaleMonitor
from seqlit.callbacks.nonfinite_guard import NonFiniteGuard
from seqlit.callbacks.padding_ratio import PaddingRatioMonitor
from seqlit.callbacks.prediction_writer import PredictionWriter
from seqlit.callbacks.progress_bar import ProgressBar
from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.callbacks.safe_checkpointing import SafeCheckpointing

__all__ = [
    "BestCheckpoint",
    "EarlyStopping",
    "GradNormMonitor",
    "LossScaleMonitor",
    "NonFiniteGuard",
    "PaddingRatioMonitor",
    "PredictionWriter",
    "ProgressBar",
    "RNGStateCheckpoint",
    "SafeCheckpointing",
    "TaskFigures",
]
