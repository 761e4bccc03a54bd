"""seqlit's tasks: LightningModules that own the loss, metrics and optimisation, and take their networks
as parts (`class_path` in YAML)."""

from seqlit.tasks.base import SeqlitTask
from seqlit.tasks.classifier import SequenceClassifier
from seqlit.tasks.forecaster import Forecaster
from seqlit.tasks.language_model import LanguageModel
from seqlit.tasks.seq2seq import Seq2SeqModel

__all__ = ["Forecaster", "LanguageModel", "Seq2SeqModel", "SeqlitTask", "SequenceClassifier"]
