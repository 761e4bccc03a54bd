"""Text tokenizers for language modelling: characters, words, or byte-level BPE (HF `tokenizers`).

Every tokenizer is fitted on the training text only and keeps the special tokens at their fixed ids
(PAD, UNK, BOS, EOS first), so id 3 is the document separator whatever the kind. `state_dict()` is
plain data (a token list, or the BPE model's JSON), stored in checkpoints instead of pickled code.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Literal, Protocol

from seqlit.data.vocab import Vocab
from seqlit.errors import DataError
from seqlit.types import EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

TokenizerKind = Literal["char", "word", "bpe"]
TOKENIZER_KINDS: tuple[str, ...] = ("char", "word", "bpe")

# Words, single punctuation marks and newlines; other whitespace only separates.
_WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\n")


class TextTokenizer(Protocol):
    """What the language-model data module and task need from a tokenizer."""

    kind: str

    @property
    def tokens(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def state_dict(self) -> dict[str, Any]: ...


def fit_tokenizer(
    kind: TokenizerKind, texts: Iterable[str], *, min_count: int = 1, vocab_size: int = 2000
) -> TextTokenizer:
    """A tokenizer of `kind` fitted on `texts` (the training split only).

    `min_count` prunes rare characters/words to UNK; `vocab_size` is the BPE target size, specials included.
    """
    texts = list(texts)
    if not any(texts):
        raise DataError("cannot fit a tokenizer on empty training text; give the data module a non-empty train split.")
    if kind in VOCAB_TOKENIZERS:
        tokenizer_class = VOCAB_TOKENIZERS[kind]
        return tokenizer_class(Vocab.fit((tokenizer_class.split(text) for text in texts), min_count=min_count))
    if kind == "bpe":
        return BPETokenizer.fit(texts, vocab_size=vocab_size, min_frequency=min_count)
    raise ValueError(f"unknown tokenizer {kind!r}; choose one of {list(TOKENIZER_KINDS)}.")


def tokenizer_from_state_dict(state: dict[str, Any]) -> TextTokenizer:
    """Rebuilds a tokenizer from its `state_dict()` (e.g. the copy stored in a checkpoint's hparams)."""
    kind = state.get("kind")
    if kind in VOCAB_TOKENIZERS:
        return VOCAB_TOKENIZERS[kind](Vocab.from_state_dict(state))
    if kind == "bpe":
        if "json" not in state:
            raise ValueError("a BPE tokenizer state needs its 'json' model; the stored state is incomplete.")
        return BPETokenizer.from_json(state["json"])
    raise ValueError(f"tokenizer state has kind {kind!r}; expected one of {list(TOKENIZER_KINDS)}.")


def split_words(text: str) -> list[str]:
    """Words, punctuation marks and newlines of `text`, in order."""
    return _WORD_PATTERN.findall(text)


class VocabTokenizer(ABC):
    """A `Vocab` over the pieces `split` cuts text into; decoding joins pieces with `separator`."""

    kind: str
    separator = ""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    @staticmethod
    @abstractmethod
    def split(text: str) -> list[str]:
        """The pieces (characters, words) of `text`, in order."""

    @property
    def tokens(self) -> list[str]:
        return self.vocab.tokens

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.split(text))

    def decode(self, ids: Iterable[int]) -> str:
        return self.separator.join(_decode_pieces(self.vocab, ids))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.vocab.state_dict()}


class CharTokenizer(VocabTokenizer):
    """One token per Unicode character; characters unseen in training map to UNK."""

    kind = "char"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)


class WordTokenizer(VocabTokenizer):
    """Words and punctuation marks (newlines kept as tokens); decoding rejoins them with single spaces."""

    kind = "word"
    separator = " "

    @staticmethod
    def split(text: str) -> list[str]:
        return split_words(text)

    def decode(self, ids: Iterable[int]) -> str:
        return re.sub(r" ?\n ?", "\n", super().decode(ids))


class BPETokenizer:
    """Byte-level BPE from the `tokenizers` package: no unknown characters, and decoding is lossless."""

    kind = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        for expected_id, special in enumerate(SPECIAL_TOKENS):
            if vocab.get(special) != expected_id:
                raise ValueError(
                    f"BPE tokenizer has {special!r} at id {vocab.get(special)}, expected {expected_id}; train it "
                    "with seqlit's fit_tokenizer, which reserves the special tokens first."
                )
        self._tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 1) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < len(SPECIAL_TOKENS) + 256:
            raise DataError(
                f"vocab_size={vocab_size} is too small for byte-level BPE (the 256 byte symbols and "
                f"{len(SPECIAL_TOKENS)} specials); use at least {len(SPECIAL_TOKENS) + 256}."
            )
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[UNK_ID]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(list(texts), trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, serialized: str) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(serialized))

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        # Decoded document by document, so the separator shows as a blank line rather than vanishing.
        documents: list[list[int]] = [[]]
        for raw_id in ids:
            token_id = int(raw_id)
            if token_id == EOS_ID:
                documents.append([])
            elif token_id != PAD_ID:
                documents[-1].append(token_id)
        return "\n\n".join(self._tokenizer.decode(document, skip_special_tokens=False) for document in documents)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "json": self._tokenizer.to_str()}


VOCAB_TOKENIZERS: dict[str, type[VocabTokenizer]] = {"char": CharTokenizer, "word": WordTokenizer}


def _decode_pieces(vocab: Vocab, ids: Iterable[int]) -> list[str]:
    """Tokens of `ids` with EOS shown as a blank line (a document boundary) instead of ending the text."""
    pieces: list[str] = []
    for raw_id in ids:
        token_id = int(raw_id)
        if token_id == EOS_ID:
            pieces.append("\n\n")
        elif token_id != PAD_ID:
            pieces.extend(vocab.decode([token_id]))
    return pieces
