import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.vocab import Vocab
from seqlit.types import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

WORDS = [list("cat"), list("act"), list("tab")]


def test_specials_hold_their_fixed_ids_and_regular_tokens_are_sorted() -> None:
    vocab = Vocab.fit(WORDS)
    tokens = vocab.tokens
    assert tokens[PAD_ID] == "<pad>" and tokens[UNK_ID] == "<unk>"
    assert tokens[BOS_ID] == "<s>" and tokens[EOS_ID] == "</s>"
    assert tokens == [*SPECIAL_TOKENS, "a", "b", "c", "t"]
    assert len(vocab) == 8
    assert Vocab.fit(reversed(WORDS)) == vocab  # ids never depend on data order


def test_min_count_drops_rare_tokens() -> None:
    vocab = Vocab.fit(WORDS, min_count=2)
    assert vocab.tokens[len(SPECIAL_TOKENS) :] == ["a", "c", "t"]  # 'b' occurs once
    with pytest.raises(ValueError, match="min_count must be an int >= 1"):
        Vocab.fit(WORDS, min_count=0)


def test_encode_decode_round_trip_with_bos_and_eos() -> None:
    vocab = Vocab.fit(WORDS)
    ids = vocab.encode("cab", add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 5
    assert vocab.decode(ids) == ["c", "a", "b"]
    assert vocab.encode("cab") == ids[1:-1]


def test_unseen_tokens_map_to_unk_and_decode_keeps_unk_visible() -> None:
    vocab = Vocab.fit(WORDS)
    ids = vocab.encode("cz!")
    assert ids[1:] == [UNK_ID, UNK_ID]
    assert vocab.decode(ids) == ["c", "<unk>", "<unk>"]
    assert vocab.unknown("cz!t") == {"z", "!"}
    assert vocab.unknown("cat") == set()


def test_decode_stops_at_first_eos_and_drops_pad_and_bos() -> None:
    vocab = Vocab.fit(WORDS)
    a, t = vocab.encode("at")
    assert vocab.decode([BOS_ID, a, PAD_ID, t, EOS_ID, a, a]) == ["a", "t"]
    assert vocab.decode(torch.tensor([a, t, EOS_ID])) == ["a", "t"]  # tensors and numpy ints work too
    assert vocab.decode(np.array([t])) == ["t"]
    with pytest.raises(ValueError, match="outside this vocabulary"):
        vocab.decode([len(vocab)])


def test_data_tokens_spelled_like_specials_reuse_the_special_ids() -> None:
    vocab = Vocab.fit([["the", "<unk>", "cat", "</s>"]])
    assert vocab.tokens.count("<unk>") == 1
    assert vocab.encode(["<unk>", "the"]) == [UNK_ID, vocab.tokens.index("the")]


def test_constructor_validates_specials_and_duplicates() -> None:
    with pytest.raises(ValueError, match="must start with the special tokens"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="must start with the special tokens"):
        Vocab([])
    with pytest.raises(ValueError, match=r"must be unique.*'a'"):
        Vocab([*SPECIAL_TOKENS, "a", "b", "a"])
    with pytest.raises(ValueError, match="must be strings"):
        Vocab([*SPECIAL_TOKENS, 3])  # type: ignore[list-item]


def test_tokens_is_a_copy() -> None:
    vocab = Vocab.fit(WORDS)
    vocab.tokens.append("x")
    assert "x" not in vocab and len(vocab) == 8


def test_state_dict_round_trip_is_plain_data() -> None:
    vocab = Vocab.fit(WORDS)
    state = vocab.state_dict()
    assert json.loads(json.dumps(state)) == state  # strings only, nothing pickled
    assert Vocab.from_state_dict(state) == vocab
    assert Vocab.fit([list("dog")]) != vocab
    with pytest.raises(ValueError, match="'tokens' list"):
        Vocab.from_state_dict({})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="abcdefgh<>/", min_size=1, max_size=3), max_size=8), max_size=10))
def test_encode_then_decode_is_identity_on_training_tokens(sequences: list[list[str]]) -> None:
    vocab = Vocab.fit(sequences)
    for sequence in sequences:
        ids = vocab.encode(sequence, add_bos=True, add_eos=True)
        assert UNK_ID not in ids[1:-1] or "<unk>" in sequence
        kept = [token for token in sequence if token not in ("<pad>", "<s>")]
        expected = kept[: kept.index("</s>")] if "</s>" in kept else kept
        assert vocab.decode(ids) == expected
