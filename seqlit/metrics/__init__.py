"""Evaluation metrics that torchmetrics lacks: multi-reference G2P word and phoneme error rates."""

from seqlit.metrics.error_rates import PhonemeErrorRate, WordErrorRate, edit_distance, strip_stress

__all__ = ["PhonemeErrorRate", "WordErrorRate", "edit_distance", "strip_stress"]
