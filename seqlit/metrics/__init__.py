"""Evaluation metrics that torchmetrics lacks: multi-reference G2P error rates, language-model
perplexity and bits per character, forecast MASE and sMAPE, the evaluation loss per target, all from
exact summed counts."""

from seqlit.metrics.error_rates import PhonemeErrorRate, WordErrorRate, edit_distance, strip_stress
from seqlit.metrics.forecasting import MeanAbsoluteScaledError, SymmetricMAPE, mase_scale
from seqlit.metrics.language import BitsPerCharacter, Perplexity, TokenNLL
from seqlit.metrics.mean import MeanPerTarget

__all__ = [
    "BitsPerCharacter",
    "MeanAbsoluteScaledError",
    "MeanPerTarget",
    "Perplexity",
    "PhonemeErrorRate",
    "SymmetricMAPE",
    "TokenNLL",
    "WordErrorRate",
    "edit_distance",
    "mase_scale",
    "strip_stress",
]
