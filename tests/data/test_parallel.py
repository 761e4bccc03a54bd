"""Generic parallel data for seq2seq: `source<TAB>target` files with char or token units, and pinyin phrases."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule
from seqlit.data.parallel import load_parallel_file, load_pinyin_phrases, load_source_list, split_symbols
from seqlit.errors import DataError


def _pairs(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_units_split_characters_or_whitespace_tokens() -> None:
    assert split_symbols("ab c", "char") == ("a", "b", " ", "c")
    assert split_symbols(" K  AE1 T ", "token") == ("K", "AE1", "T")
    with pytest.raises(ValueError, match="unknown unit"):
        split_symbols("x", "word")  # type: ignore[arg-type]


def test_parallel_file_groups_alternates_and_skips_comments(tmp_path: Path) -> None:
    path = _pairs(tmp_path / "pairs.tsv", ["# a comment", "", "K AE1 T\tcat", "K AE1 T\tkat", "D AO1 G\tdog",
                                           "K AE1 T\tcat"])
    data = load_parallel_file(path, target_unit="char", source_unit="token")
    assert data.words == ["K AE1 T", "D AO1 G"]
    assert data.pronunciations == [[tuple("cat"), tuple("kat")], [tuple("dog")]]


def test_parallel_file_errors_name_the_line_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 2 has no tab between source and target.*source<TAB>target"):
        load_parallel_file(_pairs(tmp_path / "a.tsv", ["a\tb", "no tab here"]))
    with pytest.raises(DataError, match="line 1 has an empty source or target"):
        load_parallel_file(_pairs(tmp_path / "b.tsv", ["a\t   "]), target_unit="token")
    with pytest.raises(DataError, match="no pairs"):
        load_parallel_file(_pairs(tmp_path / "c.tsv", ["# only a comment"]))
    (tmp_path / "latin1.tsv").write_bytes("caf\xe9\tcafe\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_parallel_file(tmp_path / "latin1.tsv")


def test_a_byte_order_mark_is_not_part_of_the_first_source(tmp_path: Path) -> None:
    (tmp_path / "bom.tsv").write_bytes("\ufeffab\tba\n".encode("utf-8"))
    assert load_parallel_file(tmp_path / "bom.tsv").words == ["ab"]


def test_data_module_reads_token_sources_and_char_targets_split_by_source(tmp_path: Path) -> None:
    lines = [f"{' '.join(word.upper())}\t{word}" for word in (f"w{i:02d}x" for i in range(60))]
    lines.append("W 0 0 X\tvariant")  # an alternate of the first source
    module = Seq2SeqDataModule(dataset="parallel_file", train_path=str(_pairs(tmp_path / "p.tsv", lines)),
                               source_unit="token", target_unit="char", lowercase=False, val_fraction=0.1,
                               test_fraction=0.1, loader=LoaderSettings(batch_size=8))
    assert (module.source_unit, module.target_unit, module.stress_marked) == ("token", "char", False)
    assert "W" in module.source_tokens and "w" in module.target_tokens and "W 0" not in module.source_tokens
    module.setup("fit")
    module.setup("test")
    sources = {name: set(module.datasets[name].item_ids) for name in ("train", "val", "test")}
    assert not (sources["train"] & sources["val"]) and not (sources["train"] & sources["test"])
    first = "W 0 0 X"
    split = next(name for name, ids in sources.items() if first in ids)
    index = list(module.datasets[split].item_ids).index(first)
    references = module.datasets[split].references[index]
    assert len(references) == 2  # both targets of the source are acceptable


def test_predict_reads_one_source_per_line(tmp_path: Path) -> None:
    path = _pairs(tmp_path / "predict.txt", ["K AE1 T", "# skipped", "D AO1 G\tignored target"])
    assert load_source_list(path, "token") == ["K AE1 T", "D AO1 G"]


def test_fixed_unit_datasets_refuse_other_units() -> None:
    with pytest.raises(DataError, match="dataset 'cmudict' reads sources as chars and targets as tokens"):
        Seq2SeqDataModule(dataset="cmudict", target_unit="char")
    with pytest.raises(DataError, match="needs data.train_path"):
        Seq2SeqDataModule(dataset="parallel_file")


def test_pinyin_phrases_are_real_per_character_readings() -> None:
    phrases = load_pinyin_phrases()
    assert len(phrases) > 40_000
    assert all(len(word) == len(prons[0]) for word, prons in zip(phrases.words[:2000], phrases.pronunciations[:2000]))
    readings = dict(zip(phrases.words, phrases.pronunciations))
    assert readings["银行"][0] == ("yín", "háng")  # 行 read háng here, xíng elsewhere
