"""Evaluation metrics that torchmetrics lacks: multi-reference G2P error rates, language-model
perplexity and bits per character from exact summed counts."""

from seqlit.metrics.error_rates import PhonemeErrorRate, WordErrorRate, edit_distance, strip_stress
from seqlit.metrics.language import BitsPerCharacter, Perplexity, TokenNLL

__all__ = [
    "BitsPerCharacter",
    "Perplexity",
    "PhonemeErrorRate",
    "TokenNLL",
    "WordErrorRate",
    "edit_distance",
    "strip_stress",
]
