"""Tests for multi-reference G2P word/phoneme error rates, against torchmetrics where comparable."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.text import word_error_rate
from torchmetrics.functional.text.helper import _edit_distance as torchmetrics_edit_distance

from seqlit.metrics import PhonemeErrorRate, WordErrorRate, edit_distance, strip_stress

PHONEMES = ["AH0", "AH1", "B", "K", "T", "IY1", "ER0", "S"]
pronunciation = st.lists(st.sampled_from(PHONEMES), max_size=8)
nonempty_pronunciation = st.lists(st.sampled_from(PHONEMES), min_size=1, max_size=8)

# "EITHER" in CMUdict has two pronunciations; the second is given as the prediction.
EITHER = [["IY1", "DH", "ER0"], ["AY1", "DH", "ER0"]]


def _rates(predictions: list[list[str]], references: list[list[list[str]]], stress: bool = True) -> tuple[float, float]:
    wer = WordErrorRate(stress=stress)
    per = PhonemeErrorRate(stress=stress)
    wer.update(predictions, references)
    per.update(predictions, references)
    return wer.compute().item(), per.compute().item()


def test_match_with_second_alternative_is_correct() -> None:
    assert _rates([["AY1", "DH", "ER0"]], [EITHER]) == (0.0, 0.0)


def test_substitution() -> None:
    wer, per = _rates([["K", "AE1", "P"]], [[["K", "AE1", "T"]]])
    assert wer == 1.0
    assert per == pytest.approx(1 / 3)


def test_insertion() -> None:
    wer, per = _rates([["K", "AE1", "T", "S"]], [[["K", "AE1", "T"]]])
    assert wer == 1.0
    assert per == pytest.approx(1 / 3)


def test_deletion() -> None:
    wer, per = _rates([["K", "AE1"]], [[["K", "AE1", "T"]]])
    assert wer == 1.0
    assert per == pytest.approx(1 / 3)


def test_corpus_level_rates() -> None:
    predictions = [["AY1", "DH", "ER0"], ["K", "AE1"], ["D", "AO1", "G"]]
    references = [EITHER, [["K", "AE1", "T"]], [["D", "AO1", "G"]]]
    wer, per = _rates(predictions, references)
    assert wer == pytest.approx(1 / 3)
    assert per == pytest.approx(1 / 9)


def test_per_uses_closest_reference() -> None:
    # distance 1 to the first (length 3), distance 2 to the second: the first is chosen.
    wer, per = _rates([["IY1", "DH", "AH0"]], [[["IY1", "DH", "ER0"], ["AY1", "DH", "AH1", "R"]]])
    assert wer == 1.0
    assert per == pytest.approx(1 / 3)


def test_per_ties_go_to_the_shorter_reference() -> None:
    # ["K", "T"] is 1 edit from both ["K"] and ["K", "T", "S"]; the shorter gives PER 1/1, not 1/3.
    for references in ([["K"], ["K", "T", "S"]], [["K", "T", "S"], ["K"]]):
        _, per = _rates([["K", "T"]], [references])
        assert per == pytest.approx(1.0)


def test_stress_stripping_makes_stress_errors_correct() -> None:
    predictions = [["AH1", "B", "AW1", "T"]]
    references = [[["AH0", "B", "AW1", "T"]]]
    assert _rates(predictions, references, stress=True) == pytest.approx((1.0, 0.25))
    assert _rates(predictions, references, stress=False) == (0.0, 0.0)


def test_strip_stress() -> None:
    assert strip_stress(["AH0", "B", "AW1", "T", "ER2"]) == ["AH", "B", "AW", "T", "ER"]


def test_strip_stress_does_not_mutate_input() -> None:
    phonemes = ["AH0", "B"]
    strip_stress(phonemes)
    assert phonemes == ["AH0", "B"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(pronunciation, nonempty_pronunciation), min_size=1, max_size=6))
def test_per_equals_torchmetrics_wer_with_single_references(pairs: list[tuple[list[str], list[str]]]) -> None:
    predictions = [prediction for prediction, _ in pairs]
    references = [[reference] for _, reference in pairs]
    per = PhonemeErrorRate()
    per.update(predictions, references)
    expected = word_error_rate([" ".join(p) for p in predictions], [" ".join(r) for r, in references])
    torch.testing.assert_close(per.compute(), expected.float())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(pronunciation, st.lists(nonempty_pronunciation, min_size=1, max_size=3)), min_size=1, max_size=9
    ),
    st.integers(min_value=1, max_value=4),
)
def test_accumulating_updates_equals_one_update(
    pairs: list[tuple[list[str], list[list[str]]]], n_chunks: int
) -> None:
    predictions = [prediction for prediction, _ in pairs]
    references = [alternatives for _, alternatives in pairs]
    for metric_class in (WordErrorRate, PhonemeErrorRate):
        whole = metric_class()
        whole.update(predictions, references)
        chunked = metric_class()
        for start in range(n_chunks):
            chunked.update(predictions[start::n_chunks], references[start::n_chunks])
        torch.testing.assert_close(chunked.compute(), whole.compute())
        assert chunked.errors.item() == whole.errors.item()
        assert chunked.total.item() == whole.total.item()


@given(pronunciation, pronunciation)
def test_edit_distance_properties(first: list[str], second: list[str]) -> None:
    distance = edit_distance(first, second)
    assert distance == edit_distance(second, first)
    assert (distance == 0) == (first == second)
    assert distance <= max(len(first), len(second))
    assert distance >= abs(len(first) - len(second))


@given(pronunciation, pronunciation)
def test_edit_distance_matches_torchmetrics(first: list[str], second: list[str]) -> None:
    assert edit_distance(first, second) == torchmetrics_edit_distance(first, second)


def test_edit_distance_hand_examples() -> None:
    assert edit_distance([], []) == 0
    assert edit_distance(["K", "AE1", "T"], []) == 3
    assert edit_distance(list("kitten"), list("sitting")) == 3


@pytest.mark.parametrize("metric_class", [WordErrorRate, PhonemeErrorRate])
def test_reset_clears_state(metric_class: type[WordErrorRate] | type[PhonemeErrorRate]) -> None:
    metric = metric_class()
    metric.update([["K", "AE1"]], [[["K", "AE1", "T"]]])
    assert metric.compute().item() > 0
    metric.reset()
    assert metric.errors.item() == 0 and metric.total.item() == 0
    metric.update([["K", "AE1", "T"]], [[["K", "AE1", "T"]]])
    assert metric.compute().item() == 0.0


@pytest.mark.parametrize("metric_class", [WordErrorRate, PhonemeErrorRate])
def test_states_are_summed_for_distributed_sync(metric_class: type[WordErrorRate] | type[PhonemeErrorRate]) -> None:
    """Two ranks with unequal numbers of words: merging their states the way a DDP sync does (each state
    reduced with its dist_reduce_fx) gives the rate of one process over all words, not the mean of the ranks'
    rates."""
    words = [(["K", "AE1", "T"], [("K", "AE1", "T")]), (["D", "AO1"], [("D", "AO1", "G")]),
             (["B", "AH1", "S"], [("B", "IH1", "S"), ("B", "AH1", "S")]), (["F"], [("F", "IY1", "D")]),
             (["T", "OW1"], [("T", "UW1")])]
    rank_zero, rank_one, whole = metric_class(), metric_class(), metric_class()
    for metric, part in ((rank_zero, words[:1]), (rank_one, words[1:]), (whole, words)):
        metric.update([prediction for prediction, _ in part], [references for _, references in part])
    rank_zero.merge_state(rank_one)  # applies each state's dist_reduce_fx, as the sync across ranks does
    assert float(rank_zero.compute()) == pytest.approx(float(whole.compute()))
    assert rank_zero.errors.dtype == torch.long  # exact integer counts, no float drift over an epoch
    one, rest = metric_class(), metric_class()
    one.update([words[0][0]], [words[0][1]])
    rest.update([w for w, _ in words[1:]], [r for _, r in words[1:]])
    per_rank_mean = (float(one.compute()) + float(rest.compute())) / 2
    assert per_rank_mean != pytest.approx(float(whole.compute()))  # what averaging ratios would report


@pytest.mark.parametrize("metric_class", [WordErrorRate, PhonemeErrorRate])
@pytest.mark.parametrize(
    ("predictions", "references", "match"),
    [
        ([["K"], ["T"]], [[["K"]]], "one entry per word"),
        ([["K"]], [[]], "at least one reference"),
        ([["K"]], [["K"]], "list of pronunciations"),
        ([["K"]], ["K"], "at least one reference"),
        (["K AE1"], [[["K", "AE1"]]], "list of phonemes"),
    ],
)
def test_bad_inputs_raise(
    metric_class: type[WordErrorRate] | type[PhonemeErrorRate],
    predictions: list,
    references: list,
    match: str,
) -> None:
    with pytest.raises(ValueError, match=match):
        metric_class().update(predictions, references)
