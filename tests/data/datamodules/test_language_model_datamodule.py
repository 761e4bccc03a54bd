"""Language-model data: positional (chronological) split, train-only tokenizer, streams, prompts, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.language_model import LanguageModelDataModule, TextSpan
from seqlit.data.splits import LeakageError
from seqlit.errors import DataError
from seqlit.types import EOS_ID, UNK_ID


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_pydoc_corpus_is_split_by_position_with_train_first() -> None:
    data = LanguageModelDataModule(bptt=64, loader=LoaderSettings(batch_size=8, eval_batch_size=4))
    spans = data.spans
    assert spans["train"].start == 0
    assert spans["train"].end == spans["val"].start < spans["val"].end == spans["test"].start < spans["test"].end
    text = "".join(data.documents)
    assert len(text) > 400_000  # Python's own documentation topics, bundled with the interpreter
    for boundary in (spans["val"].start, spans["test"].start):
        assert text[boundary - 1] == "\n"  # splits fall on line starts
    assert abs(spans["test"].end - spans["test"].start - 0.05 * len(text)) < 2_000


def test_leakage_audit_runs_on_setup_and_catches_an_evaluation_span_inside_training() -> None:
    data = LanguageModelDataModule(loader=LoaderSettings(batch_size=8, eval_batch_size=4))
    split = data.audit()
    assert split.train.max() < split.val.min() and split.val.max() < split.test.min()  # no eval line before train
    assert split.sizes()["train"] > 10 * split.sizes()["test"] > 0
    spans = dict(data.spans)
    spans["val"] = TextSpan(spans["train"].end - 5_000, spans["val"].end)  # planted: val reaches back into train
    data.__dict__["spans"] = spans
    with pytest.raises(LeakageError):
        data.setup("fit")


def test_tokenizer_is_fitted_on_training_text_only(tmp_path: Path) -> None:
    # "Z" and "Q" appear only after the training span, so they must be unknown to the tokenizer.
    body = "".join(f"line {i} abc\n" for i in range(200))
    path = _write(tmp_path / "doc.txt", body + "ZZZZ\n" * 12 + "QQQQ\n" * 12)
    data = LanguageModelDataModule(
        corpus="files", paths=[path], val_fraction=0.03, test_fraction=0.03,
        loader=LoaderSettings(batch_size=2, eval_batch_size=1),
    )
    assert "Z" not in data.tokenizer.tokens and "Q" not in data.tokenizer.tokens
    assert "a" in data.tokenizer.tokens
    test_ids = data.token_ids("test")
    assert (test_ids == UNK_ID).sum() >= 40


def test_documents_end_with_eos_and_split_pieces_do_not(tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"{i}.txt", f"document {i}\n" * 30) for i in range(3)]
    data = LanguageModelDataModule(
        corpus="files", paths=paths, val_fraction=0.2, test_fraction=0.2,
        loader=LoaderSettings(batch_size=2, eval_batch_size=1),
    )
    all_ids = torch.cat([data.token_ids(stage) for stage in ("train", "val", "test")])
    assert int((all_ids == EOS_ID).sum()) == 3  # one per document, none at a split boundary
    assert int(data.token_ids("test")[-1]) == EOS_ID


def test_loaders_yield_streams_that_continue_across_batches() -> None:
    data = LanguageModelDataModule(bptt=32, loader=LoaderSettings(batch_size=4, eval_batch_size=2))
    data.setup("fit")
    first, second = list(zip(range(2), data.train_dataloader()))
    inputs_first, inputs_second = first[1].inputs, second[1].inputs
    assert inputs_first.shape == (4, 32)
    assert torch.equal(first[1].targets[:, -1], inputs_second[:, 0])  # row b of batch 2 continues row b of batch 1
    val = next(iter(data.val_dataloader()))
    assert val.inputs.shape == (2, 32)


def test_prompts_from_config_and_file(tmp_path: Path) -> None:
    data = LanguageModelDataModule(prompts=["def ", ""], loader=LoaderSettings(batch_size=2))
    data.setup("predict")
    batches = list(data.predict_dataloader())
    assert [int(b.indices[0]) for b in batches] == [0, 1]
    assert batches[0].inputs[0, 0] == EOS_ID and batches[0].inputs.shape[1] == 5
    assert data.item_ids("predict") == ["def ", ""]
    file_data = LanguageModelDataModule(predict_path=_write(tmp_path / "p.txt", "class \nimport\\n"),
                                        loader=LoaderSettings(batch_size=2))
    file_data.setup("predict")
    assert file_data.item_ids("predict") == ["class ", "import\n"]


def test_bad_input_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs data.paths"):
        LanguageModelDataModule(corpus="files")
    with pytest.raises(DataError, match="leaves no training text"):
        LanguageModelDataModule(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="choose one of"):
        LanguageModelDataModule(tokenizer="chars")  # type: ignore[arg-type]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        _ = LanguageModelDataModule(corpus="files", paths=[str(latin1)]).documents
    empty = _write(tmp_path / "empty.txt", "  \n")
    with pytest.raises(DataError, match="no text"):
        _ = LanguageModelDataModule(corpus="files", paths=[empty]).documents
    with pytest.raises(DataError, match="not found"):
        _ = LanguageModelDataModule(corpus="files", paths=[str(tmp_path / "missing.txt")]).documents
    small = _write(tmp_path / "small.txt", "a b c\n" * 40)
    with pytest.raises(DataError, match="val split.*smaller batch size"):
        data = LanguageModelDataModule(corpus="files", paths=[small],
                                       loader=LoaderSettings(batch_size=2, eval_batch_size=64))
        data.setup("fit")
    with pytest.raises(DataError, match="needs prompts"):
        LanguageModelDataModule().setup("predict")


def test_explicit_split_files_are_the_splits_and_only_train_fits_the_tokenizer(tmp_path: Path) -> None:
    # The PTB / WikiText layout: one file per split. "Z" appears only in the validation file, "Q" only in test.
    train = _write(tmp_path / "train.txt", "".join(f"line {i} abc\n" for i in range(120)))
    val = _write(tmp_path / "valid.txt", "ZZ abc\n" * 30)
    test = _write(tmp_path / "test.txt", "QQ abc\n" * 30)
    data = LanguageModelDataModule(
        corpus="splits", train_path=train, val_path=val, test_path=test, bptt=8,
        loader=LoaderSettings(batch_size=2, eval_batch_size=2),
    )
    lengths = [len(Path(path).read_text()) for path in (train, val, test)]
    assert data.spans["train"] == TextSpan(0, lengths[0])
    assert data.spans["val"] == TextSpan(lengths[0], lengths[0] + lengths[1])
    assert data.spans["test"].end == sum(lengths)
    assert data.split_documents["val"] == [Path(val).read_text()]
    assert data.tokenizer.encode("Z") == [UNK_ID] and data.tokenizer.encode("Q") == [UNK_ID]
    val_ids = data.token_ids("val")
    assert val_ids[-1] == EOS_ID and (val_ids == UNK_ID).sum() == 60  # every "Z" of the val file, nothing else
    data.setup("fit")  # the leakage audit holds by construction
    data.setup("test")


def test_split_files_need_all_three_and_the_splits_corpus(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.txt", "abc\n" * 10)
    with pytest.raises(DataError, match=r"needs data\.val_path, data\.test_path"):
        LanguageModelDataModule(corpus="splits", train_path=train)
    with pytest.raises(DataError, match=r"data\.train_path is set but data\.corpus is 'pydoc'.*'splits'"):
        LanguageModelDataModule(train_path=train, val_path=train, test_path=train)
    empty = _write(tmp_path / "empty.txt", "\n")
    data = LanguageModelDataModule(corpus="splits", train_path=train, val_path=empty, test_path=train)
    with pytest.raises(DataError, match="train_path/val_path/test_path files have no text"):
        data.documents


def test_a_document_without_a_final_newline_is_not_joined_to_the_next(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.txt", "\ufefffirst topic\nlast line")  # a byte-order mark and no final newline
    second = _write(tmp_path / "b.txt", "next topic\n")
    data = LanguageModelDataModule(corpus="files", paths=[first, second])
    assert data.documents == ["first topic\nlast line\n", "next topic\n"]
    assert "last linenext" not in data.corpus_text and "\ufeff" not in data.corpus_text
