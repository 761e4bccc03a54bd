"""Char, word and byte-level BPE tokenizers: fitted on train only, specials fixed, state as plain data."""

from __future__ import annotations

import json

import pytest

from seqlit.data.tokenizers import fit_tokenizer, split_words, tokenizer_from_state_dict
from seqlit.errors import DataError
from seqlit.types import EOS_ID, SPECIAL_TOKENS, UNK_ID

TRAIN = ["def add(a, b):\n    return a + b\n", "The for statement iterates over a list.\n"]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_specials_first_and_state_round_trips_as_json(kind: str) -> None:
    tokenizer = fit_tokenizer(kind, TRAIN, vocab_size=300)
    assert tokenizer.tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    state = tokenizer.state_dict()
    restored = tokenizer_from_state_dict(json.loads(json.dumps(state)))  # plain data, no pickled objects
    assert restored.tokens == tokenizer.tokens
    assert restored.encode("return a") == tokenizer.encode("return a")


def test_char_tokenizer_maps_characters_unseen_in_training_to_unk() -> None:
    tokenizer = fit_tokenizer("char", TRAIN)
    ids = tokenizer.encode("ab€")
    assert ids[2] == UNK_ID and UNK_ID not in ids[:2]
    assert tokenizer.decode(tokenizer.encode("add(a, b)")) == "add(a, b)"


def test_word_tokenizer_keeps_newlines_and_punctuation_and_prunes_rare_words() -> None:
    assert split_words("x = f(y)\nok") == ["x", "=", "f", "(", "y", ")", "\n", "ok"]
    tokenizer = fit_tokenizer("word", TRAIN, min_count=2)
    assert "a" in tokenizer.tokens and "iterates" not in tokenizer.tokens
    assert tokenizer.encode("iterates")[0] == UNK_ID


def test_bpe_is_lossless_on_unseen_text_and_shows_document_breaks() -> None:
    tokenizer = fit_tokenizer("bpe", TRAIN, vocab_size=300)
    text = "Ünïcode never seen: λx → x²\n"
    assert UNK_ID not in tokenizer.encode(text)  # byte level: every character has bytes
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode([*tokenizer.encode("a"), EOS_ID, *tokenizer.encode("b")]) == "a\n\nb"


def test_clear_errors_for_empty_text_unknown_kind_and_tiny_bpe() -> None:
    with pytest.raises(DataError, match="empty training text"):
        fit_tokenizer("char", ["", ""])
    with pytest.raises(ValueError, match="choose one of"):
        fit_tokenizer("sentencepiece", TRAIN)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 260"):
        fit_tokenizer("bpe", TRAIN, vocab_size=100)
