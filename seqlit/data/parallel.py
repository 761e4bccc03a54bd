"""Parallel data for sequence-to-sequence tasks beyond CMUdict: a user's `source<TAB>target` file, or the
Chinese phrase -> pinyin dictionary that ships with the `pypinyin` package.

Texts split into symbols by unit: `char` (every character is a symbol, spaces included) or `token`
(whitespace-separated tokens). Lines with the same source are alternates: every one is a training target and
an acceptable answer when evaluating, as CMUdict's alternate pronunciations are.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from seqlit.data.pronunciations import PronunciationDictionary
from seqlit.errors import DataError

TokenUnit = Literal["char", "token"]
TOKEN_UNITS: tuple[str, ...] = ("char", "token")
_FORMAT_HINT = (
    "Expected one pair per line: `source<TAB>target` (a tab between them; blank lines and lines starting with "
    "`#` are skipped; a source listed twice has two acceptable targets)."
)
_MAX_ALTERNATES = 4  # pinyin phrases with several readable characters: at most this many alternates


def split_symbols(text: str, unit: TokenUnit) -> tuple[str, ...]:
    """`text` as symbols: its characters (`char`) or its whitespace-separated tokens (`token`)."""
    if unit == "char":
        return tuple(text)
    if unit == "token":
        return tuple(text.split())
    raise ValueError(f"unknown unit {unit!r}; choose one of {list(TOKEN_UNITS)}.")


def load_parallel_file(
    path: str | Path, target_unit: TokenUnit = "char", source_unit: TokenUnit = "char", lowercase: bool = False
) -> PronunciationDictionary:
    """Reads `source<TAB>target` lines into unique sources (first-seen order) with their distinct targets.

    Errors name the file, the line and the fix: a line without a tab, an empty source or target.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {file}. Give data.train_path a `source<TAB>target` file.")
    entries: dict[str, list[tuple[str, ...]]] = {}
    for number, line in enumerate(_lines(file), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise DataError(f"{file}: line {number} has no tab between source and target: {line[:80]!r}. {_FORMAT_HINT}")
        source, target = line.split("\t", 1)
        source = source.strip() if source_unit == "token" else source
        source = source.lower() if lowercase else source
        symbols = split_symbols(target.strip() if target_unit == "token" else target, target_unit)
        if not split_symbols(source, source_unit) or not symbols:
            raise DataError(f"{file}: line {number} has an empty source or target: {line[:80]!r}. {_FORMAT_HINT}")
        alternates = entries.setdefault(source, [])
        if symbols not in alternates:
            alternates.append(symbols)
    if not entries:
        raise DataError(f"{file}: no pairs (the file is empty or holds only comments). {_FORMAT_HINT}")
    return PronunciationDictionary(words=list(entries), pronunciations=list(entries.values()))


def load_source_list(path: str | Path, source_unit: TokenUnit = "char", lowercase: bool = False) -> list[str]:
    """Sources to transcribe (for `seqlit predict`): each line up to an optional tab, in file order."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {file}. Give data.predict_path a file with one source per line.")
    sources = []
    for line in _lines(file):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        source = line.split("\t", 1)[0]
        source = source.strip() if source_unit == "token" else source
        sources.append(source.lower() if lowercase else source)
    if not sources:
        raise DataError(f"{file}: no sources to transcribe (the file is empty or holds only comments).")
    return sources


def load_pinyin_phrases() -> PronunciationDictionary:
    """Chinese phrases (2-10 characters) and their tone-marked pinyin syllables, from `pypinyin`'s phrase
    dictionary (~47k phrases): a real pronunciation task where a character's reading depends on its neighbours
    (一 is yī, yí or yì; 行 is xíng or háng)."""
    try:
        from pypinyin.phrases_dict import phrases_dict
    except ImportError:  # pragma: no cover - a dependency of seqlit
        raise DataError("dataset 'pinyin_phrases' needs the `pypinyin` package: pip install pypinyin") from None
    words, pronunciations = [], []
    for phrase, readings in phrases_dict.items():
        if len(readings) != len(phrase):
            continue  # one reading per character, or the entry is not a per-character transcription
        alternates = list(itertools.islice(itertools.product(*readings), _MAX_ALTERNATES))
        words.append(phrase)
        pronunciations.append([tuple(choice) for choice in alternates])
    return PronunciationDictionary(words=words, pronunciations=pronunciations)


def _lines(file: Path) -> list[str]:
    try:
        text = file.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first source
    except UnicodeDecodeError as error:
        raise DataError(f"{file} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8.") from None
    return text.splitlines()
