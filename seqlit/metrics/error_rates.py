"""Grapheme-to-phoneme error rates against several acceptable pronunciations per word (CMUdict).

torchmetrics' WER/CER take one reference per sample; CMUdict lists alternates ("EITHER" has two),
and published G2P results count a word correct if it matches any of them. Counts are kept as
summed tensor states so a DDP sync adds them exactly instead of averaging per-rank ratios.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

_STRESS_DIGIT = re.compile(r"[012]$")


class _ErrorCountMetric(Metric):
    """Summed `errors` / `total` counts (exact under DDP sync) and the shared stress option."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    errors: Tensor
    total: Tensor

    def __init__(self, stress: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stress = stress
        self.add_state("errors", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def compute(self) -> Tensor:
        return self.errors.float() / self.total.float()

    def _add(self, errors: int, total: int) -> None:
        # Replaced, not updated in place: states reset under inference mode (after `validate`) refuse in-place ops.
        self.errors = self.errors + errors
        self.total = self.total + total


class WordErrorRate(_ErrorCountMetric):
    """Fraction of words whose predicted pronunciation matches none of its references.

    With `stress=False` stress digits are stripped from both sides first (AH0 == AH1), as in most
    published G2P results. `compute()` is NaN before any word has been seen.
    """

    def update(self, predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> None:
        """Counts a word wrong unless its prediction equals one of its references exactly."""
        wrong = 0
        for prediction, alternatives in _normalised_pairs(predictions, references, self.stress):
            wrong += prediction not in alternatives
        self._add(wrong, len(predictions))


class PhonemeErrorRate(_ErrorCountMetric):
    """Phoneme edit distance to each word's closest reference, over the length of those references.

    Per word the reference with the smallest edit distance is chosen (ties go to the shorter one,
    the stricter, larger-PER choice), and PER = sum of distances / sum of chosen reference lengths.
    With a single reference per word this is torchmetrics' word_error_rate over phoneme tokens.
    It can exceed 1 when predictions insert many phonemes. `compute()` is NaN before any phoneme has been seen.
    """

    def update(self, predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> None:
        """Adds each word's distance to its closest reference and that reference's length."""
        distance_sum = 0
        length_sum = 0
        for prediction, alternatives in _normalised_pairs(predictions, references, self.stress):
            distance, length = min((edit_distance(prediction, reference), len(reference)) for reference in alternatives)
            distance_sum += distance
            length_sum += length
        self._add(distance_sum, length_sum)


def edit_distance(hypothesis: Sequence[Hashable], reference: Sequence[Hashable]) -> int:
    """Levenshtein distance over tokens (unit-cost substitution, insertion, deletion)."""
    previous = list(range(len(reference) + 1))
    for i, hyp_token in enumerate(hypothesis, start=1):
        current = [i]
        for j, ref_token in enumerate(reference, start=1):
            current.append(
                min(
                    previous[j] + 1,  # extra hypothesis token
                    current[j - 1] + 1,  # missing reference token
                    previous[j - 1] + (hyp_token != ref_token),
                )
            )
        previous = current
    return previous[-1]


def strip_stress(phonemes: Sequence[str]) -> list[str]:
    """Drops CMUdict stress digits (AH0 -> AH) so stress errors are not counted."""
    return [_STRESS_DIGIT.sub("", phoneme) for phoneme in phonemes]


def _normalised_pairs(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]], stress: bool
) -> list[tuple[list[str], list[list[str]]]]:
    """Validates the inputs and returns (prediction, alternatives) as lists, stress-stripped if asked."""
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have one entry per word, got {len(predictions)} predictions "
            f"and {len(references)} references; pass references[i] as the list of pronunciations of word i"
        )
    pairs: list[tuple[list[str], list[list[str]]]] = []
    for index, (prediction, alternatives) in enumerate(zip(predictions, references)):
        # A bare string would be compared character by character and silently give wrong rates.
        if isinstance(prediction, str):
            raise ValueError(
                f"predictions[{index}] is the string {prediction!r}; "
                f"pass a list of phonemes, e.g. {prediction.split()!r}"
            )
        if isinstance(alternatives, str) or len(alternatives) == 0:
            raise ValueError(
                f"references[{index}] must be a non-empty list of pronunciations (each a list of phonemes), "
                f"got {alternatives!r}; every word needs at least one reference"
            )
        if any(isinstance(reference, str) for reference in alternatives):
            raise ValueError(
                f"references[{index}] holds strings ({alternatives!r}); it must be a list of pronunciations, "
                f"e.g. [['AH0', 'B']] rather than ['AH0', 'B']"
            )
        if stress:
            pairs.append((list(prediction), [list(reference) for reference in alternatives]))
        else:
            pairs.append((strip_stress(prediction), [strip_stress(reference) for reference in alternatives]))
    return pairs
