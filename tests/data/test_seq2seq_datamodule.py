import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.bucketing import BucketBatchSampler, random_batches
from seqlit.data.collate import Seq2SeqCollator, Seq2SeqSample, shift_targets
from seqlit.data.datamodules import LoaderSettings, Seq2SeqDataModule
from seqlit.data.pronunciations import PronunciationDictionary, load_cmudict
from seqlit.data.splits import LeakageError
from seqlit.errors import CheckpointMismatchError, DataError
from seqlit.padding import padding_ratio
from seqlit.types import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, SPECIAL_TOKENS, UNK_ID, Seq2SeqBatch


@pytest.fixture(scope="module")
def cmu() -> PronunciationDictionary:
    return load_cmudict()


@pytest.fixture(scope="module")
def g2p() -> Seq2SeqDataModule:
    datamodule = Seq2SeqDataModule(loader=LoaderSettings(batch_size=64, eval_batch_size=128, sampler_seed=0))
    datamodule.setup("fit")
    datamodule.setup("test")
    return datamodule


def _small_dictionary(words: dict[str, list[str]]) -> str:
    """CMUdict-format text; a word's n-th pronunciation is written as WORD(n)."""
    lines = [";;; generated for a test"]
    for word, prons in words.items():
        lines += [f"{word.upper()}{f'({n + 1})' if n else ''}  {pron}" for n, pron in enumerate(prons)]
    return "\n".join(lines) + "\n"


def _numbered_words(n: int = 40) -> dict[str, list[str]]:
    """`w00a`, `w01a`, ...; every third word has an alternate pronunciation."""
    return {
        f"w{i:02d}a": ["W AH1 T", "W EY1 T"] if i % 3 == 0 else ["W AH1 N"]
        for i in range(n)
    }


def _file_module(tmp_path: Path, words: dict[str, list[str]], name: str = "dict.txt", **kwargs) -> Seq2SeqDataModule:
    path = tmp_path / name
    path.write_text(_small_dictionary(words), encoding="utf-8")
    options = {"val_fraction": 0.1, "test_fraction": 0.1, "loader": LoaderSettings(batch_size=4), **kwargs}
    return Seq2SeqDataModule(dataset="pronunciation_file", train_path=str(path), **options)


# ---- split ---------------------------------------------------------------------------------------


def test_cmudict_split_by_headword_keeps_every_alternate_with_its_word(
    g2p: Seq2SeqDataModule, cmu: PronunciationDictionary
) -> None:
    train, val, test = (set(g2p.item_ids(name).tolist()) for name in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(cmu.words)
    assert len(g2p.item_ids("val")) == len(val) and len(g2p.item_ids("test")) == len(test)  # one item per word
    pronunciations = dict(zip(cmu.words, cmu.pronunciations))
    # training has one item per (word, pronunciation): all alternates of a train word, none of others
    assert len(g2p.datasets["train"]) == sum(len(pronunciations[word]) for word in train)
    train_ids = g2p.item_ids("train")
    for word in ("read", "live", "tomato"):
        if word in train:
            assert int((train_ids == word).sum()) == len(pronunciations[word]) > 1
    # evaluation references are every pronunciation; the loss target is the first one
    dataset = g2p.datasets["test"]
    n_with_alternates = 0
    for index in range(len(dataset)):
        item = dataset[index]
        expected = [tuple(g2p.target_vocab.encode(pron)) for pron in pronunciations[dataset.item_ids[index]]]
        assert item["references"] == expected
        assert item["target"] is not None and tuple(item["target"].tolist()) == expected[0]
        n_with_alternates += len(expected) > 1
    assert n_with_alternates > 100


def test_cmudict_split_sizes_follow_the_fractions(g2p: Seq2SeqDataModule, cmu: PronunciationDictionary) -> None:
    sizes = {name: len(set(g2p.item_ids(name).tolist())) for name in ("train", "val", "test")}
    print(f"CMUdict headwords per split: {sizes}, train pairs: {len(g2p.datasets['train'])}")
    assert sizes["val"] == round(0.02 * len(cmu)) and sizes["test"] == round(0.05 * len(cmu))
    assert sum(sizes.values()) == len(cmu)


def test_audit_runs_on_every_setup(tmp_path: Path) -> None:
    datamodule = _file_module(tmp_path, _numbered_words())
    datamodule.setup("fit")
    train = datamodule._splits["train"]
    datamodule._splits["val"] = train.subset([0])  # a training word leaks into validation
    with pytest.raises(LeakageError, match="entity leakage"):
        datamodule.setup("validate")


def test_empty_split_names_the_fraction_to_raise(tmp_path: Path) -> None:
    datamodule = _file_module(tmp_path, _numbered_words(), val_fraction=0.0)
    with pytest.raises(DataError, match=r"val split is empty.*raise data.val_fraction"):
        datamodule.setup("fit")


# ---- vocabularies --------------------------------------------------------------------------------


def test_vocabularies_are_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    words = _numbered_words()
    first = _file_module(tmp_path, words)
    first.setup("fit")
    first.setup("test")
    held_out = sorted(first.item_ids("test").tolist())
    # Changing a held-out word's last letter keeps the sorted order, so the same words are held out.
    renamed = {(word[:-1] + "z" if word in held_out else word): prons for word, prons in words.items()}
    renamed[held_out[0][:-1] + "z"] = ["ZH AH1 N"]  # a phoneme no training word has
    second = _file_module(tmp_path, renamed, name="renamed.txt")
    assert "z" not in second.source_tokens and "ZH" not in second.target_tokens
    assert second.source_tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    second.setup("fit")
    with pytest.warns(UserWarning) as record:
        second.setup("test")
    messages = " ".join(str(w.message) for w in record)
    assert re.search(rf"{len(held_out)} of {len(held_out)} test word\(s\) contain characters never seen", messages)
    assert "1 test word(s) have phonemes never seen" in messages
    dataset = second.datasets["test"]
    assert all(dataset[i]["source"][-1].item() == UNK_ID for i in range(len(dataset)))
    assert any(UNK_ID in ref for i in range(len(dataset)) for ref in dataset[i]["references"])


def test_vocabularies_are_available_right_after_construction(tmp_path: Path) -> None:
    datamodule = _file_module(tmp_path, _numbered_words())
    assert datamodule.source_tokens == [*SPECIAL_TOKENS, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "w"]
    assert datamodule.target_tokens[len(SPECIAL_TOKENS) :] == sorted({"W", "AH1", "EY1", "T", "N"})
    assert datamodule.datasets == {}


# ---- batches -------------------------------------------------------------------------------------


def test_cmudict_batches_shift_targets_and_pad_with_ignore_index(g2p: Seq2SeqDataModule) -> None:
    batch = next(iter(g2p.train_dataloader()))
    assert isinstance(batch, Seq2SeqBatch)
    size, source_length = batch.sources.shape
    assert batch.source_mask.shape == (size, source_length) and batch.source_lengths.tolist() == (
        batch.source_mask.sum(dim=1).tolist()
    )
    assert torch.all(batch.sources[~batch.source_mask] == PAD_ID)
    assert batch.n_tokens == int(batch.source_lengths.sum()) and batch.n_tokens + batch.n_pad == size * source_length
    assert batch.target_inputs.shape == batch.target_outputs.shape
    assert torch.all(batch.target_inputs[:, 0] == BOS_ID)
    dataset = g2p.datasets["train"]
    for row, index in enumerate(batch.indices.tolist()):
        item = dataset[index]
        target = item["target"]
        assert target is not None
        n = int(target.shape[0])
        assert torch.equal(batch.sources[row, : batch.source_lengths[row]], item["source"])
        assert batch.target_inputs[row, 1 : n + 1].tolist() == target.tolist()
        assert batch.target_outputs[row, :n].tolist() == target.tolist()
        assert batch.target_outputs[row, n] == EOS_ID
        assert torch.all(batch.target_outputs[row, n + 1 :] == IGNORE_INDEX)
        assert torch.all(batch.target_inputs[row, n + 1 :] == PAD_ID)
        assert tuple(target.tolist()) in batch.references[row]
    assert batch.n_target_tokens == sum(len(dataset[i]["target"]) + 1 for i in batch.indices.tolist())


def test_collator_builds_exact_tensors() -> None:
    samples = [
        Seq2SeqSample(index=7, source=torch.tensor([5, 6, 7]), target=torch.tensor([9]), references=[(9,), (8, 9)]),
        Seq2SeqSample(index=2, source=torch.tensor([5]), target=torch.tensor([8, 8, 9]), references=[(8, 8, 9)]),
    ]
    batch = Seq2SeqCollator()(samples)
    assert batch.sources.tolist() == [[5, 6, 7], [5, PAD_ID, PAD_ID]]
    assert batch.source_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.target_inputs.tolist() == [[BOS_ID, 9, PAD_ID, PAD_ID], [BOS_ID, 8, 8, 9]]
    assert batch.target_outputs.tolist() == [[9, EOS_ID, IGNORE_INDEX, IGNORE_INDEX], [8, 8, 9, EOS_ID]]
    assert batch.references == [[(9,), (8, 9)], [(8, 8, 9)]]
    assert batch.indices.tolist() == [7, 2] and (batch.n_tokens, batch.n_pad) == (4, 2)


def test_collator_without_targets_gives_empty_target_tensors() -> None:
    samples = [Seq2SeqSample(index=i, source=torch.tensor([5] * (i + 1)), target=None, references=[]) for i in range(3)]
    batch = Seq2SeqCollator()(samples)
    assert batch.target_inputs.shape == (3, 0) and batch.target_outputs.shape == (3, 0)
    assert batch.references == [[], [], []] and batch.n_target_tokens == 0
    mixed = [samples[0], Seq2SeqSample(index=9, source=torch.tensor([5]), target=torch.tensor([8]), references=[])]
    with pytest.raises(ValueError, match="mixes samples with and without targets"):
        Seq2SeqCollator()(mixed)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=4, max_value=50), min_size=1, max_size=12), min_size=1, max_size=10))
def test_shift_targets_is_teacher_forcing_by_one_step(targets: list[list[int]]) -> None:
    inputs, outputs = shift_targets([torch.tensor(t) for t in targets])
    assert inputs.shape == outputs.shape == (len(targets), max(map(len, targets)) + 1)
    real = outputs != IGNORE_INDEX
    assert real.sum(dim=1).tolist() == [len(t) + 1 for t in targets]
    # the decoder reads y_t at input step t+1 and must predict it at output step t
    target_steps = real[:, :-1] & (outputs[:, :-1] != EOS_ID)
    assert torch.equal(inputs[:, 1:][target_steps], outputs[:, :-1][target_steps])
    assert torch.all(inputs[:, 0] == BOS_ID)
    assert torch.all(inputs[~real] == PAD_ID)


def test_bucketing_pads_cmudict_far_less_than_random_batches(g2p: Seq2SeqDataModule) -> None:
    lengths = g2p.datasets["train"].lengths.tolist()
    sampler = g2p.train_dataloader().batch_sampler
    assert isinstance(sampler, BucketBatchSampler)
    bucketed = padding_ratio(lengths, list(sampler))
    shuffled = padding_ratio(lengths, random_batches(len(lengths), batch_size=64, seed=0))
    print(f"CMUdict train source padding ratio: bucketed {bucketed:.4f}, random {shuffled:.4f}")
    assert bucketed < 0.05 and shuffled > 0.3
    assert sorted(i for batch in sampler for i in batch) == list(range(len(lengths)))  # every pair once


def test_eval_loaders_use_eval_batch_size_and_plain_batches_without_bucketing(tmp_path: Path) -> None:
    loader = LoaderSettings(batch_size=3, eval_batch_size=6, bucketing=False)
    datamodule = _file_module(tmp_path, _numbered_words(), loader=loader)
    datamodule.setup("fit")
    assert datamodule.loader.batch_size_for("val") == 6
    train = datamodule.train_dataloader()
    assert train.batch_size == 3 and not isinstance(train.batch_sampler, BucketBatchSampler)
    assert datamodule.val_dataloader().batch_size == 6
    seen = sorted(i for batch in train for i in batch.indices.tolist())
    assert seen == list(range(len(datamodule.datasets["train"])))


# ---- predict -------------------------------------------------------------------------------------


def test_predict_dataset_from_a_word_list(tmp_path: Path) -> None:
    word_list = tmp_path / "words.txt"
    word_list.write_text("W01A\n;;; comment\nw99a\nwq\n", encoding="utf-8")
    datamodule = _file_module(tmp_path, _numbered_words(), predict_path=str(word_list))
    with pytest.warns(UserWarning, match=r"1 of 3 predict word\(s\) contain characters never seen.*'q'"):
        datamodule.setup("predict")
    assert datamodule.item_ids("predict").tolist() == ["w01a", "w99a", "wq"]
    batches = list(datamodule.predict_dataloader())
    assert sorted(i for batch in batches for i in batch.indices.tolist()) == [0, 1, 2]
    for batch in batches:
        assert batch.target_inputs.shape == (batch.batch_size, 0) == batch.target_outputs.shape
        assert batch.references == [[] for _ in range(batch.batch_size)]
    unknown = datamodule.datasets["predict"][2]["source"].tolist()
    assert unknown == [datamodule.source_tokens.index("w"), UNK_ID]


def test_predict_needs_a_word_list(tmp_path: Path) -> None:
    datamodule = _file_module(tmp_path, _numbered_words())
    with pytest.raises(DataError, match="needs data.predict_path"):
        datamodule.setup("predict")


# ---- length limit, config, checkpoint ------------------------------------------------------------


def test_too_long_words_error_or_are_dropped_with_a_count(tmp_path: Path) -> None:
    words = _numbered_words()
    words.update({f"long{i:02d}wordw": ["L AO1 NG", "L AA1 NG"] for i in range(20)})
    with pytest.raises(DataError, match=r"longer than data.max_source_length=6.*too_long='skip'"):
        _ = _file_module(tmp_path, words, max_source_length=6).source_tokens
    skipping = _file_module(tmp_path, words, max_source_length=6, too_long="skip")
    with pytest.warns(UserWarning) as record:
        skipping.setup("fit")
    messages = [str(w.message) for w in record]
    for name in ("train", "val", "test"):  # never silent: each split reports what it lost
        pattern = rf"dropped \d+ {name} headword\(s\) \(\d+ \(word, pronunciation\) pair"
        assert any(re.search(pattern, message) for message in messages), messages
    assert max(skipping.datasets["train"].lengths) <= 6 and len(skipping.datasets["train"]) > 0
    assert not any(word.startswith("long") for word in skipping.item_ids("train").tolist())


def test_invalid_configs_are_refused_with_the_fix() -> None:
    with pytest.raises(DataError, match="needs data.train_path"):
        Seq2SeqDataModule(dataset="pronunciation_file")
    with pytest.raises(DataError, match=r"unknown dataset 'timit'.*'cmudict', 'pronunciation_file'"):
        Seq2SeqDataModule(dataset="timit")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"data.val_fraction must be in \[0, 1\)"):
        Seq2SeqDataModule(val_fraction=1.5)
    with pytest.raises(DataError, match="unknown data.too_long"):
        Seq2SeqDataModule(too_long="truncate")  # type: ignore[arg-type]


def test_state_dict_round_trip_and_vocabulary_mismatch(tmp_path: Path) -> None:
    datamodule = _file_module(tmp_path, _numbered_words())
    state = datamodule.state_dict()
    assert state == {"source_tokens": datamodule.source_tokens, "target_tokens": datamodule.target_tokens}
    _file_module(tmp_path, _numbered_words(), name="same.txt").load_state_dict(state)  # same data: accepted
    more_letters = {**_numbered_words(), **{f"x{i:02d}b": ["K S"] for i in range(40)}}
    other = _file_module(tmp_path, more_letters, name="other.txt")
    with pytest.raises(CheckpointMismatchError, match=r"source vocabulary.*start a new run"):
        other.load_state_dict(state)
    upper = _file_module(tmp_path, _numbered_words(), name="upper.txt", lowercase=False)
    with pytest.raises(CheckpointMismatchError, match="source vocabulary"):
        upper.load_state_dict(state)
    np.testing.assert_array_equal(upper.source_tokens[-2:], ["A", "W"])
