from pathlib import Path

import pytest

from seqlit.data.pronunciations import (
    PronunciationDictionary,
    load_cmudict,
    load_pronunciation_file,
    load_word_list,
)
from seqlit.errors import DataError

SAMPLE = """\
;;; a CMUdict-style sample
;;; comment lines and blank lines are skipped

CAT  K AE1 T
READ  R IY1 D
READ(2)  R EH1 D
READ(3)  R IY1 D
AALTO  AA1 L T OW2 # name, finnish
new york\tN UW1 Y AO1 R K
"""


def _write(tmp_path: Path, text: str | bytes, name: str = "dict.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cmu() -> PronunciationDictionary:
    return load_cmudict()


def test_file_loader_merges_alternates_and_skips_comments(tmp_path: Path) -> None:
    dictionary = load_pronunciation_file(_write(tmp_path, SAMPLE))
    assert dictionary.words == ["cat", "read", "aalto", "new york"]  # file order, lower-cased
    assert dictionary.pronunciations[0] == [("K", "AE1", "T")]
    # READ(2) joins READ; READ(3) repeats the first pronunciation and is kept once
    assert dictionary.pronunciations[1] == [("R", "IY1", "D"), ("R", "EH1", "D")]
    assert dictionary.pronunciations[2] == [("AA1", "L", "T", "OW2")]  # trailing '# ...' comment dropped
    assert dictionary.pronunciations[3] == [("N", "UW1", "Y", "AO1", "R", "K")]  # tab format, word with space
    assert len(dictionary) == 4 and dictionary.n_pronunciations == 5


def test_lowercase_false_keeps_case_and_subset_keeps_order(tmp_path: Path) -> None:
    dictionary = load_pronunciation_file(_write(tmp_path, "Read  R IY1 D\nREAD  R EH1 D\n"), lowercase=False)
    assert dictionary.words == ["Read", "READ"]
    merged = load_pronunciation_file(_write(tmp_path, "Read  R IY1 D\nREAD  R EH1 D\n"))
    assert merged.words == ["read"] and len(merged.pronunciations[0]) == 2
    assert dictionary.subset([1, 0]).words == ["READ", "Read"]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file not found: .*nope\.txt.*Check the path"):
        load_pronunciation_file(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a directory"):
        load_pronunciation_file(tmp_path)


def test_non_utf8_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, "CAT  K AE1 T\nCAF\xc9  K AE0 F EY1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2 is not valid UTF-8.*Re-save the file as UTF-8"):
        load_pronunciation_file(path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffCAFÉ  K AE0 F EY1\n".encode())
    assert load_pronunciation_file(path).words == ["café"]


@pytest.mark.parametrize("text", ["", "\n\n", ";;; only a comment\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataError, match=r"no dictionary entries.*Expected one entry per line"):
        load_pronunciation_file(_write(tmp_path, text))


def test_word_without_phonemes_names_line_number_and_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "CAT  K AE1 T\n\nDOG\n")
    with pytest.raises(DataError, match=r"line 3 has a word but no phonemes: 'DOG'.*add the pronunciation"):
        load_pronunciation_file(path)
    with pytest.raises(DataError, match="line 1 has a word but no phonemes"):
        load_pronunciation_file(_write(tmp_path, "DOG  # no phonemes, just a comment\n"))


def test_word_list_takes_first_field_and_skips_alternates(tmp_path: Path) -> None:
    assert load_word_list(_write(tmp_path, "Hello\n\n;;; comment\nworld extra fields\n")) == ["hello", "world"]
    # a pronunciation dictionary doubles as a word list; READ(2) repeats READ
    assert load_word_list(_write(tmp_path, SAMPLE), lowercase=False) == ["CAT", "READ", "AALTO", "new"]


def test_word_list_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no words to transcribe"):
        load_word_list(_write(tmp_path, ";;; nothing\n"))
    with pytest.raises(DataError, match="data file not found"):
        load_word_list(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="line 1 is not valid UTF-8"):
        load_word_list(_write(tmp_path, b"caf\xe9\n"))


def test_cmudict_is_sorted_lowercase_and_has_alternates(cmu: PronunciationDictionary) -> None:
    assert 120_000 < len(cmu) < 140_000
    assert cmu.words == sorted(cmu.words) and len(set(cmu.words)) == len(cmu.words)
    assert all(word == word.lower() for word in cmu.words[:: 97])
    entries = dict(zip(cmu.words, cmu.pronunciations))
    assert entries["cat"] == [("K", "AE1", "T")]
    assert ("R", "IY1", "D") in entries["read"] and ("R", "EH1", "D") in entries["read"]
    n_alternates = sum(len(prons) > 1 for prons in cmu.pronunciations)
    assert 8_000 < n_alternates < 9_000
    assert all(len(set(prons)) == len(prons) for prons in cmu.pronunciations)  # repeats removed (e.g. 'tribalism')
    assert all(prons and all(prons) for prons in cmu.pronunciations)
