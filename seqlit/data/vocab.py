"""Token <-> id mapping with the special tokens (PAD, UNK, BOS, EOS) at fixed ids.

A `Vocab` is fitted on the training split only, so a token that first appears in validation or
test maps to UNK exactly as an unseen token would in deployment. It is stored in checkpoints as a
plain list of strings (data, not a pickled object), so a checkpoint stays readable across versions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from seqlit.types import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

__all__ = ["Vocab"]


class Vocab:
    """An ordered token list whose first entries are `SPECIAL_TOKENS`, so PAD_ID/UNK_ID/BOS_ID/EOS_ID hold.

    Args:
        tokens: every token in id order, the specials first; duplicates are refused because two ids
            for one token would make `encode` ambiguous.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        non_strings = [token for token in tokens if not isinstance(token, str)]
        if non_strings:
            raise ValueError(f"Vocab tokens must be strings, got {non_strings[:5]!r}; convert them with str().")
        if tokens[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS):
            raise ValueError(
                f"Vocab tokens must start with the special tokens {list(SPECIAL_TOKENS)} (ids {PAD_ID}..{EOS_ID}), "
                f"got {tokens[: len(SPECIAL_TOKENS)]!r}; build the vocabulary with Vocab.fit(...) or prepend them."
            )
        self._tokens: list[str] = tokens
        self._ids: dict[str, int] = {token: i for i, token in enumerate(tokens)}
        if len(self._ids) != len(tokens):
            duplicates = sorted(token for token, count in Counter(tokens).items() if count > 1)
            raise ValueError(
                f"Vocab tokens must be unique, but {duplicates[:10]!r} appear more than once; "
                "a token with two ids could not be encoded. Remove the repeats."
            )

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Vocabulary of the tokens seen at least `min_count` times, sorted so the ids never depend on data order.

        Tokens spelled like a special token (e.g. a corpus's literal "<unk>") are not added again: they
        encode to that special's id.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}.")
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        specials = set(SPECIAL_TOKENS)
        regular = sorted(token for token, count in counts.items() if count >= min_count and token not in specials)
        return cls([*SPECIAL_TOKENS, *regular])

    @property
    def tokens(self) -> list[str]:
        """Every token in id order, specials included (a copy, so callers cannot corrupt the mapping)."""
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._tokens == other._tokens

    __hash__ = None  # type: ignore[assignment]  # equal by content, and mutable content must not hash

    def __repr__(self) -> str:
        preview = self._tokens[len(SPECIAL_TOKENS) : len(SPECIAL_TOKENS) + 8]
        more = ", ..." if len(self._tokens) > len(SPECIAL_TOKENS) + 8 else ""
        return f"Vocab(size={len(self)}, tokens={preview!r}{more})"

    def encode(self, tokens: Iterable[str], add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Ids of `tokens`, UNK_ID for tokens outside the vocabulary, optionally framed by BOS/EOS."""
        ids = [self._ids.get(token, UNK_ID) for token in tokens]
        if add_bos:
            ids.insert(0, BOS_ID)
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids` up to the first EOS; PAD and BOS are dropped, UNK stays visible as "<unk>"."""
        tokens: list[str] = []
        for raw_id in ids:
            token_id = int(raw_id)  # accepts numpy / 0-d tensor ints
            if token_id == EOS_ID:
                break
            if token_id in (PAD_ID, BOS_ID):
                continue
            if not 0 <= token_id < len(self._tokens):
                raise ValueError(
                    f"id {token_id} is outside this vocabulary (ids 0..{len(self._tokens) - 1}); were the ids "
                    "produced with another vocabulary?"
                )
            tokens.append(self._tokens[token_id])
        return tokens

    def unknown(self, tokens: Iterable[str]) -> set[str]:
        """The tokens that `encode` would map to UNK (for reporting unseen characters, words, phonemes)."""
        return {token for token in tokens if token not in self._ids}

    def state_dict(self) -> dict[str, Any]:
        """A plain `{"tokens": [...]}`: safe to store in a checkpoint and to compare."""
        return {"tokens": list(self._tokens)}

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Any]) -> Vocab:
        """The inverse of `state_dict`; validates the stored tokens like the constructor does."""
        if "tokens" not in state_dict:
            raise ValueError(f"a Vocab state dict needs a 'tokens' list, got keys {sorted(state_dict)}.")
        return cls(list(state_dict["tokens"]))
