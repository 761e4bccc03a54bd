"""A catalogue of bad inputs, each run through the entry point a user hits: the data module's `setup`
(or, for a few, `seqlit fit --config ...` in-process). Every case pins the exception type and a message
that names the problem and the fix.

Behaviours that are deliberately *not* errors are pinned at the end:
- a classification sequence of a single time step is a valid (length-1) sequence;
- a forecasting entity too short for a window is skipped, with a logged count;
- rows out of time order within an entity are sorted (stably) by time, in both classification and forecasting;
- a pronunciation dictionary with non-ASCII (valid UTF-8) headwords is accepted: graphemes are Unicode characters;
- a sequence longer than `data.max_length` is truncated only when `data.too_long` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from seqlit.cli import main
from seqlit.data.datamodules.base import LoaderSettings
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.data.datamodules.forecasting import ForecastingDataModule
from seqlit.data.datamodules.language_model import LanguageModelDataModule
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule
from seqlit.data.splits import EmptySplitError
from seqlit.errors import CheckpointMismatchError, DataError
from tests.builders import language_model as build_language_model

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# The JapaneseVowels recipe on a long-format CSV with a tiny encoder: a quick real run for CLI tests.
TINY = ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--data.init_args.dataset", "long_format",
        "--model.init_args.encoder.init_args.hidden_size", "8", *QUIET]


# ---- small valid inputs, spoiled one way per case ------------------------------------------------------------


def labelled_frame(n_per_label: int = 12, labels: str = "pq", seed: int = 0) -> pd.DataFrame:
    """Long-format classification rows: entities `p0..`, `q0..`, 3-7 steps each, features x and y."""
    rng = np.random.default_rng(seed)
    rows = [
        {"entity": f"{label}{i}", "time": t, "x": float(rng.normal()), "y": float(rng.normal()), "label": label}
        for label in labels
        for i in range(n_per_label)
        for t in range(int(rng.integers(3, 8)))
    ]
    return pd.DataFrame(rows)


def panel_frame(n_entities: int = 6, n_steps: int = 20) -> pd.DataFrame:
    """Long-format forecasting rows: entities e0..e5, yearly times 2000.., a smooth target."""
    rows = [
        {"entity": f"e{e}", "time": 2000 + t, "target": float(np.sin(t) + e + 2)}
        for e in range(n_entities)
        for t in range(n_steps)
    ]
    return pd.DataFrame(rows)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def classifier(path: Path, **overrides: Any) -> Callable[[], Any]:
    def build() -> SequenceClassificationDataModule:
        module = SequenceClassificationDataModule(dataset="long_format", train_path=str(path), **overrides)
        module.setup("fit")
        return module

    return build


def forecaster(path: Path, **overrides: Any) -> Callable[[], Any]:
    overrides.setdefault("horizon", 3)

    def build() -> ForecastingDataModule:
        module = ForecastingDataModule(dataset="long_format", path=str(path), **overrides)
        module.setup("fit")
        return module

    return build


def language_model(*paths: Path, **overrides: Any) -> Callable[[], Any]:
    settings = {"loader": LoaderSettings(batch_size=2, eval_batch_size=1), "bptt": 5, **overrides}

    def build() -> LanguageModelDataModule:
        module = LanguageModelDataModule(corpus="files", paths=[str(p) for p in paths], **settings)
        module.setup("fit")
        return module

    return build


def g2p(path: Path, **overrides: Any) -> Callable[[], Any]:
    settings = {"val_fraction": 0.2, "test_fraction": 0.2, **overrides}

    def build() -> Seq2SeqDataModule:
        module = Seq2SeqDataModule(dataset="pronunciation_file", train_path=str(path), **settings)
        module.setup("fit")
        return module

    return build


def dictionary_text(n_words: int = 20) -> str:
    """Headwords spelled with a, b, c only (base 3), so every split's characters are seen in training."""
    words = ["".join("ABC"[i // 3**k % 3] for k in range(4)) for i in range(n_words)]
    return "".join(f"{word}  K AE{i % 2} T\n" for i, word in enumerate(words))


# ---- the catalogue -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """Writes the bad input under a directory and returns what the user's entry point runs."""

    make: Callable[[Path], Callable[[], Any]]
    error: type[Exception]
    message: str  # a regex naming the problem and the fix


def _text(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _spoiled(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.copy()
    if not isinstance(value, float):
        frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def _unknown_test_label(tmp: Path) -> Callable[[], Any]:
    train = write_csv(tmp / "train.csv", labelled_frame())
    test = labelled_frame(3, labels="pr", seed=1).assign(entity=lambda f: "test-" + f["entity"])
    return classifier(train, test_path=str(write_csv(tmp / "test.csv", test)))


def _label_missing_for_a_sequence(tmp: Path) -> Callable[[], Any]:
    frame = labelled_frame()
    frame["label"] = frame["label"].astype(object)
    frame.loc[frame["entity"] == "q3", "label"] = np.nan
    return classifier(write_csv(tmp / "data.csv", frame))


def _classification_state_mismatch(tmp: Path) -> Callable[[], Any]:
    def build() -> None:
        saved = classifier(write_csv(tmp / "old.csv", labelled_frame(labels="pq")))().state_dict()
        classifier(write_csv(tmp / "new.csv", labelled_frame(labels="pz")))().load_state_dict(saved)

    return build


def _forecasting_state_mismatch(tmp: Path) -> Callable[[], Any]:
    def build() -> None:
        path = write_csv(tmp / "panel.csv", panel_frame())
        saved = forecaster(path, horizon=3)().state_dict()
        forecaster(path, horizon=2)().load_state_dict(saved)

    return build


def _g2p_vocabulary_mismatch(tmp: Path) -> Callable[[], Any]:
    def build() -> None:
        saved = g2p(_text(tmp / "old.dict", dictionary_text()))().state_dict()
        other = dictionary_text().replace("A", "D").replace("K AE", "Q")
        g2p(_text(tmp / "new.dict", other))().load_state_dict(saved)

    return build


def _lm_tokenizer_mismatch(tmp: Path) -> Callable[[], Any]:
    """Resuming a language model on a corpus that gives another tokenizer (checked by the task, on load)."""

    def build() -> None:
        old = language_model(_text(tmp / "old.txt", "the cat sat on the mat\n" * 30))().tokenizer_state
        new = language_model(_text(tmp / "new.txt", "0123456789 digits only\n" * 30))().tokenizer_state
        model = build_language_model(new, embedding_size=8, hidden_size=8, num_layers=1)
        model.on_load_checkpoint({"hyper_parameters": {"tokenizer": old}, "state_dict": {}})

    return build


def _predict_file_other_features(tmp: Path) -> Callable[[], Any]:
    """Training on columns f1, f2; the file to label has f1, f9 (issue 21: it used to be labelled anyway)."""
    train = write_csv(tmp / "train.csv", labelled_frame().rename(columns={"x": "f1", "y": "f2"}))
    other = labelled_frame(3, seed=1).drop(columns="label").rename(columns={"x": "f1", "y": "f9"})

    def build() -> None:
        module = SequenceClassificationDataModule(dataset="long_format", train_path=str(train),
                                                  predict_path=str(write_csv(tmp / "new.csv", other)))
        module.setup("predict")

    return build


CATALOGUE: dict[str, BadInput] = {
    # -- classification, user CSV/TSV/Parquet ------------------------------------------------------------------
    "csv-empty-file": BadInput(
        lambda tmp: classifier(_text(tmp / "data.csv", "")),
        DataError, r"the file is empty; expected a header row.*Fix: export the table again",
    ),
    "csv-header-only": BadInput(
        lambda tmp: classifier(_text(tmp / "data.csv", "entity,time,x,label\n")),
        DataError, r"header but no data rows\. Fix: export the table again",
    ),
    "csv-not-utf8": BadInput(
        lambda tmp: classifier(_text(tmp / "data.tsv", "entity\ttime\tx\tlabel\nJos\xe9\t0\t1.0\tp\n".encode("latin-1"))),
        DataError, r"data\.tsv: not valid UTF-8 text.*re-save the file as UTF-8",
    ),
    "csv-ragged-row-extra-field": BadInput(
        lambda tmp: classifier(_text(tmp / "data.csv", "entity,time,x,label\na,0,1.0,p\na,1,2.0,p,EXTRA\n")),
        DataError, r"Expected 4 fields in line 3, saw 5.*every row needs exactly as many fields as the header",
    ),
    "csv-ragged-row-missing-field": BadInput(
        lambda tmp: classifier(_text(tmp / "data.csv", "entity,time,x,label\na,0,1.0,p\na,1\n")),
        DataError, r"NaN/Inf features; first at entity 'a', time 1.*fewer fields than the header.*Impute or drop",
    ),
    "feature-nan": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", _spoiled(labelled_frame(), 3, "x", float("nan")))),
        DataError, r"1 row\(s\) have NaN/Inf features; first at entity 'p0', time 3, column 'x'.*Impute or drop",
    ),
    "feature-inf": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", _spoiled(labelled_frame(), 4, "y", float("-inf")))),
        DataError, r"NaN/Inf features; first at entity 'p0', time 4, column 'y'.*Impute or drop",
    ),
    "feature-text-in-numbers": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", _spoiled(labelled_frame(), 2, "x", "??"))),
        DataError, r"column 'x' is mostly numbers but 1 cell\(s\) are text \(first '\?\?' in row 4\).*data\.feature_columns",
    ),
    "config-missing-label-column": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame()), label_column="class"),
        DataError, r"missing column\(s\) \['class'\]; the file has \[.*'label'\]\. .*set .*label_column",
    ),
    "config-missing-feature-column": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame()), feature_columns=["x", "z"]),
        DataError, r"feature column\(s\) \['z'\] not in the file.*Fix: correct the names in data\.feature_columns",
    ),
    "duplicate-entity-time-classification": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", pd.concat([labelled_frame(), labelled_frame().iloc[[5]]]))),
        DataError,
        r"sequence 'p0' has repeated time stamps \(\d+ occurs more than once\).*Aggregate the duplicates first",
    ),
    "time-mixes-numbers-and-text": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", _spoiled(labelled_frame(), 2, "time", "yesterday"))),
        DataError, r"time column 'time' mixes numbers and text \(first non-number 'yesterday' in row 4\).*Fix",
    ),
    "label-empty-for-a-sequence": BadInput(
        _label_missing_for_a_sequence,
        DataError, r"sequence 'q3' has no label.*Fix: fill in its label",
    ),
    "sequence-longer-than-max-length": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame()), max_length=4),
        DataError, r"train sequence\(s\) are longer than data\.max_length=4.*set data\.too_long to 'keep_first'",
    ),
    "too-long-policy-unknown": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame()), max_length=4, too_long="drop"),
        DataError, r"data\.too_long must be 'error', 'keep_first' or 'keep_last', got 'drop'",
    ),
    "max-length-zero": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame()), max_length=0),
        DataError, r"data\.max_length must be a positive number of steps \(null: no limit\), got 0",
    ),
    "label-unknown-at-test-time": BadInput(
        _unknown_test_label,
        DataError, r"the test split has label\(s\) \['r'\] never seen in the training split.*Remove those sequences",
    ),
    "empty-split-val-fraction-zero": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame()), val_fraction=0.0),
        DataError, r"the val split is empty; raise data\.val_fraction",
    ),
    "empty-split-too-few-sequences": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", labelled_frame(n_per_label=1))),
        EmptySplitError, r"val split is empty: all 2 classes have a single item.*Fix: pass val_fraction=0",
    ),
    "parquet-not-parquet": BadInput(
        lambda tmp: classifier(_text(tmp / "data.parquet", "entity,time,x,label\na,0,1.0,p\n")),
        DataError, r"data\.parquet: not a readable Parquet file \(.*magic bytes.*\)\. Fix: .*\.csv/\.tsv suffix",
    ),
    "parquet-zero-bytes": BadInput(
        lambda tmp: classifier(_text(tmp / "data.pq", b"")),
        DataError, r"data\.pq: not a readable Parquet file.*Fix: write it again with DataFrame\.to_parquet",
    ),
    "predict-file-other-feature-columns": BadInput(
        _predict_file_other_features,
        DataError, r"the predict file .*new\.csv has feature columns \['f1', 'f9'\] but the model was trained with "
                   r"\['f1', 'f2'\] \(missing \['f2'\], not in training \['f9'\]\)\. Fix:",
    ),
    "sequence-above-the-default-size-guard": BadInput(
        lambda tmp: classifier(write_csv(tmp / "data.csv", pd.concat([labelled_frame(), pd.DataFrame(
            {"entity": "huge", "time": range(10_001), "x": 0.0, "y": 0.0, "label": "p"})]))),
        DataError, r"1 train sequence\(s\) are longer than data\.max_length=10000 \(e\.g\. 'huge' with 10001 steps\)",
    ),
    "checkpoint-other-classes": BadInput(
        _classification_state_mismatch,
        CheckpointMismatchError, r"trained with classes \['p', 'q'\] but this run has \['p', 'z'\].*start a new run",
    ),
    # -- forecasting panels -----------------------------------------------------------------------------------
    "target-nan": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", _spoiled(panel_frame(), 5, "target", float("nan")))),
        DataError, r"'target' is missing \(NaN\) for entity 'e0' at time 2005.*set data\.missing: mask",
    ),
    "target-inf": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", _spoiled(panel_frame(), 25, "target", float("inf")))),
        DataError, r"'target' is infinite for entity 'e1' at time 2005; replace it with a real value",
    ),
    "target-beyond-float32": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", _spoiled(panel_frame(), 9, "target", 1e308))),
        DataError, r"'target' is 1e\+308 for entity 'e0' at time 2009, beyond the float32 range .*Fix: rescale",
    ),
    "series-of-100000-steps": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", pd.concat([panel_frame(), pd.DataFrame(
            {"entity": "long", "time": range(100_000), "target": 1.0 + np.arange(100_000) % 7})]))),
        DataError, r"train window\(s\) have a context longer than data\.max_context_length=10000 \(e\.g\. entity "
                   r"'long': 10,001 steps\)\. Fix: set data\.context_length",
    ),
    "duplicate-entity-time-forecasting": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", pd.concat([panel_frame(), panel_frame().iloc[[3]]]))),
        DataError,
        r"entity 'e0' has repeated time stamps \(2003 occurs more than once\).*Aggregate the duplicates first",
    ),
    "every-entity-a-single-step": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", panel_frame(n_steps=1))),
        DataError, r"no train windows: with horizon=3 and min_context=3, series of 1-1 steps.*Fix: lower data\.min_context",
    ),
    "empty-split-min-context-filters-everything": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", panel_frame()), min_context=50),
        DataError, r"no (train|val|test) windows.*Fix: lower data\.min_context or data\.horizon",
    ),
    "config-missing-target-column": BadInput(
        lambda tmp: forecaster(write_csv(tmp / "panel.csv", panel_frame()), target_column="sales"),
        DataError, r"missing column\(s\) \['sales'\].*set .*target_column",
    ),
    "checkpoint-other-horizon": BadInput(
        _forecasting_state_mismatch,
        CheckpointMismatchError, r"trained with data\.horizon 3 but this run has 2; use the data settings",
    ),
    # -- language-model text corpora --------------------------------------------------------------------------
    "corpus-empty-file": BadInput(
        lambda tmp: language_model(_text(tmp / "empty.txt", "")),
        DataError, r"data\.paths files have no text: \[.*empty\.txt'\]; remove them from the list",
    ),
    "corpus-empty-after-tokenisation": BadInput(
        lambda tmp: language_model(_text(tmp / "blank.txt", " \n\t\n  \n"), tokenizer="word"),
        DataError, r"have no text: .*remove them from the list",
    ),
    "corpus-too-few-tokens-for-the-streams": BadInput(
        lambda tmp: language_model(_text(tmp / "small.txt", "ab\n" * 30), loader=LoaderSettings(batch_size=64)),
        DataError, r"train split: \d+ tokens cannot fill 64 streams.*use a smaller batch size",
    ),
    "corpus-too-short-to-split": BadInput(
        lambda tmp: language_model(_text(tmp / "tiny.txt", "a")),
        DataError, r"the val split is empty \(\d+ characters.*add text or change the fractions",
    ),
    "corpus-not-utf8": BadInput(
        lambda tmp: language_model(_text(tmp / "latin1.txt", "caf\xe9 au lait\n".encode("latin-1"))),
        DataError, r"latin1\.txt is not UTF-8 text \(byte 3: .*\); re-encode it, e\.g\. `iconv -f latin1 -t utf-8",
    ),
    "checkpoint-other-tokenizer": BadInput(
        _lm_tokenizer_mismatch,
        CheckpointMismatchError, r"trained with the tokenizer .char, \d+ tokens.*train a new model",
    ),
    # -- pronunciation dictionaries (G2P) ---------------------------------------------------------------------
    "dictionary-line-without-phonemes": BadInput(
        lambda tmp: g2p(_text(tmp / "words.dict", dictionary_text() + "DOG\n")),
        DataError, r"line 21 has a word but no phonemes: 'DOG'.*add the pronunciation or delete the line",
    ),
    "dictionary-not-utf8": BadInput(
        lambda tmp: g2p(_text(tmp / "words.dict", ("CAT  K AE1 T\nCAF\xc9  K AE0 F EY1\n").encode("latin-1"))),
        DataError, r"line 2 is not valid UTF-8 .*b'CAF\\xc9.*Re-save the file as UTF-8",
    ),
    "dictionary-only-comments": BadInput(
        lambda tmp: g2p(_text(tmp / "words.dict", ";;; a comment\n\n")),
        DataError, r"no dictionary entries.*Expected one entry per line",
    ),
    "empty-split-too-long-words-skipped": BadInput(
        lambda tmp: g2p(_text(tmp / "words.dict", dictionary_text()), max_source_length=1, too_long="skip"),
        DataError, r"every train word is longer than data\.max_source_length=1; raise it",
    ),
    "word-of-100000-characters": BadInput(
        lambda tmp: g2p(_text(tmp / "words.dict", dictionary_text() + "A" * 100_000 + "  K AE1 T\n")),
        DataError, r"1 train word\(s\) are longer than data\.max_source_length=1000 characters \(e\.g\. "
                   r"\['a{30}\.\.\. \(100,000 characters\)'\]\)\. Raise max_source_length, or set data\.too_long='skip'",
    ),
    "checkpoint-other-vocabulary": BadInput(
        _g2p_vocabulary_mismatch,
        CheckpointMismatchError,
        r"trained with source vocabulary .* but this run has .*Use the same dictionary.*or start a new run",
    ),
}


def test_the_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 18


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_bad_input_is_refused_with_the_problem_and_the_fix(case: str, tmp_path: Path) -> None:
    bad = CATALOGUE[case]
    run = bad.make(tmp_path)
    with pytest.raises(bad.error, match=bad.message) as caught:
        run()
    # One line, so the CLI prints it as one `seqlit: error:` line.
    assert "\n" not in str(caught.value)


# ---- through the CLI: one clear line, nothing written before is touched --------------------------------------


def _cli_not_parquet(tmp: Path) -> list[str]:
    path = _text(tmp / "train.parquet", "entity,time,x,label\na,0,1.0,p\n")
    return ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--data.init_args.dataset", "long_format",
            "--data.init_args.train_path", str(path)]


def _cli_nan_feature(tmp: Path) -> list[str]:
    path = write_csv(tmp / "train.csv", _spoiled(labelled_frame(), 3, "x", float("nan")))
    return ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--data.init_args.dataset", "long_format",
            "--data.init_args.train_path", str(path)]


def _cli_duplicate_time(tmp: Path) -> list[str]:
    path = write_csv(tmp / "panel.csv", pd.concat([panel_frame(), panel_frame().iloc[[3]]]))
    return ["--config", str(REPO / "configs/m1_yearly_gru.yaml"), "--data.init_args.dataset", "long_format",
            "--data.init_args.path", str(path), "--data.init_args.horizon", "3"]


def _cli_empty_corpus(tmp: Path) -> list[str]:
    path = _text(tmp / "corpus.txt", "")
    return ["--config", str(REPO / "configs/lm_pydoc_char.yaml"), "--data.init_args.corpus", "files",
            "--data.init_args.paths", f"[{path}]"]


def _cli_dictionary_without_phonemes(tmp: Path) -> list[str]:
    path = _text(tmp / "words.dict", dictionary_text() + "DOG\n")
    return ["--config", str(REPO / "configs/g2p_cmudict_small.yaml"), "--data.init_args.dataset",
            "pronunciation_file", "--data.init_args.train_path", str(path)]


def _cli_setting(config: str, key: str, value: str) -> Callable[[Path], list[str]]:
    """A bundled recipe with one setting spoiled on the command line."""
    return lambda tmp: ["--config", str(REPO / "configs" / config), f"--{key}", value]


def _cli_lm_bptt_zero(tmp: Path) -> list[str]:
    path = _text(tmp / "corpus.txt", "the cat sat on the mat\n" * 30)
    return ["--config", str(REPO / "configs/lm_pydoc_char.yaml"), "--data.init_args.corpus", "files",
            "--data.init_args.paths", f"[{path}]", "--data.init_args.bptt", "0"]


def _cli_beam_size_zero(tmp: Path) -> list[str]:
    path = _text(tmp / "words.dict", dictionary_text())
    return ["--config", str(REPO / "configs/g2p_cmudict_small.yaml"), "--data.init_args.dataset",
            "pronunciation_file", "--data.init_args.train_path", str(path), "--model.init_args.beam_size", "0"]


def _cli_one_class(tmp: Path) -> list[str]:
    path = write_csv(tmp / "train.csv", labelled_frame(labels="p"))
    return ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--data.init_args.dataset", "long_format",
            "--data.init_args.train_path", str(path)]


def _cli_huge_forecast_value(tmp: Path) -> list[str]:
    path = write_csv(tmp / "panel.csv", _spoiled(panel_frame(), 9, "target", 1e308))
    return ["--config", str(REPO / "configs/m1_yearly_gru.yaml"), "--data.init_args.dataset", "long_format",
            "--data.init_args.path", str(path), "--data.init_args.horizon", "3"]


ENCODER = "model.init_args.encoder.init_args"
CLI_CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # -- settings out of range (issue 21): refused when the config is instantiated, before any log folder --------
    "hidden-size-zero": (_cli_setting("japanese_vowels_gru.yaml", f"{ENCODER}.hidden_size", "0"),
                         r"RNNEncoder hidden_size must be an integer >= 1, got 0\.$"),
    "hidden-size-negative-forecaster": (
        _cli_setting("m1_yearly_gru.yaml", "model.init_args.network.init_args.hidden_size", "-4"),
        r"RNNEncoder hidden_size must be an integer >= 1, got -4\.$"),
    "num-layers-zero": (_cli_setting("japanese_vowels_gru.yaml", f"{ENCODER}.num_layers", "0"),
                        r"RNNEncoder num_layers must be an integer >= 1, got 0\.$"),
    "dropout-above-one": (_cli_setting("japanese_vowels_gru.yaml", f"{ENCODER}.dropout", "1.5"),
                          r"RNNEncoder dropout must be in \[0, 1\), got 1\.5"),
    "val-fraction-above-one": (_cli_setting("japanese_vowels_gru.yaml", "data.init_args.val_fraction", "1.5"),
                               r"data\.val_fraction must be in \[0, 1\), got 1\.5"),
    "val-fraction-above-one-forecasting": (_cli_setting("m1_yearly_gru.yaml", "data.init_args.val_fraction", "1.5"),
                                           r"data\.val_fraction must be in \[0, 1\), got 1\.5"),
    "lm-bptt-zero": (_cli_lm_bptt_zero, r"data\.bptt must be a positive int, got 0"),
    "training-file-with-one-class": (_cli_one_class, r"the training split has a single class \('p'\).*at least 2 classes"),
    "learning-rate-negative": (_cli_setting("japanese_vowels_gru.yaml", "model.init_args.optimizer.init_args.lr", "-0.1"),
                               r"model\.optimizer: Invalid learning rate: -0\.1 \(optimizer lr must be >= 0"),
    "warmup-fraction-above-one": (
        _cli_setting("japanese_vowels_gru.yaml", "model.init_args.lr_scheduler.init_args.warmup_fraction", "2"),
        r"warmup_fraction must be in \[0, 1\), got 2"),
    "beam-size-zero": (_cli_beam_size_zero, r"beam_size must be >= 1, got 0"),
    "hidden-size-not-a-number": (_cli_setting("japanese_vowels_gru.yaml", f"{ENCODER}.hidden_size", "big"),
                                 rf"{ENCODER}\.hidden_size must be an integer, got 'big'\. Fix:"),
    "cell-unknown": (_cli_setting("japanese_vowels_gru.yaml", f"{ENCODER}.cell", "rnn"),
                     r"unknown cell 'rnn'; use one of \['gru', 'lstm'\]"),
    "pooling-not-a-choice": (_cli_setting("japanese_vowels_gru.yaml", "model.init_args.pooling", "max"),
                             r"model\.init_args\.pooling must be one of 'last', 'mean', 'attention', 'mean_max', got 'max'"),
    "forecast-value-beyond-float32": (_cli_huge_forecast_value, r"'target' is 1e\+308 for entity 'e0' .*float32 range"),
    # -- data --------------------------------------------------------------------------------------------------
    "parquet-not-parquet": (_cli_not_parquet, r"not a readable Parquet file.*Fix:"),
    "feature-nan": (_cli_nan_feature, r"NaN/Inf features.*Impute or drop"),
    "duplicate-entity-time": (_cli_duplicate_time, r"more than once.*Aggregate the duplicates"),
    "corpus-empty-file": (_cli_empty_corpus, r"have no text.*remove them from the list"),
    "dictionary-line-without-phonemes": (_cli_dictionary_without_phonemes, r"no phonemes: 'DOG'.*add the pronunciation"),
}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `root`: a new empty log folder shows up too."""
    return {str(path.relative_to(root)): path.read_bytes() if path.is_file() else None for path in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_prints_one_error_line_and_keeps_earlier_runs(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    monkeypatch.chdir(tmp_path)
    arguments, message = CLI_CASES[case]
    earlier = tmp_path / "runs"
    for name in ("japanese_vowels_gru", "m1_yearly_gru", "lm_pydoc_char", "g2p_cmudict_small"):
        checkpoints = earlier / name / "version_0" / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / "last.ckpt").write_bytes(b"an earlier run's weights")
        (earlier / name / "version_0" / "metrics.csv").write_text("epoch,val/loss\n0,1.5\n")
    before = snapshot(earlier)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *arguments(inputs), *QUIET])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    errors = [line for line in output.splitlines() if line.startswith("seqlit:")]
    assert len(errors) == 1 and errors[0].startswith("seqlit: error: "), output
    assert re.search(message, errors[0]), errors[0]
    assert "Traceback" not in output
    assert snapshot(earlier) == before  # nothing earlier was deleted or rewritten, and nothing new was written


# ---- documented behaviours that are not errors ---------------------------------------------------------------


def test_classification_single_step_sequence_is_a_valid_length_one_item(tmp_path: Path) -> None:
    frame = labelled_frame()
    frame = frame[~((frame["entity"] == "p0") & (frame["time"] > 0))]
    module = classifier(write_csv(tmp_path / "data.csv", frame))()
    where = {name: list(d.records.sequence_ids) for name, d in module.datasets.items()}
    stage = next(name for name, ids in where.items() if "p0" in ids)
    dataset = module.datasets[stage]
    sample = dataset[where[stage].index("p0")]
    assert sample["inputs"].shape == (1, 2)
    batch = module.collate([sample, dataset[(where[stage].index("p0") + 1) % len(dataset)]])
    assert batch.lengths[0] == 1 and batch.mask[0].sum() == 1


def test_forecasting_entity_too_short_for_a_window_is_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.concat([panel_frame(), pd.DataFrame([{"entity": "solo", "time": 2000, "target": 1.0}])])
    with caplog.at_level(logging.INFO):
        module = forecaster(write_csv(tmp_path / "panel.csv", frame))()
    assert "solo" not in {module.panel.entity(int(s)) for s in module.datasets["val"].windows.series}
    assert "1 series too short for a val window" in caplog.text
    assert len(module.datasets["train"]) > 0


def test_unsorted_rows_are_put_in_time_order(tmp_path: Path) -> None:
    frame = labelled_frame()
    shuffled = frame.sample(frac=1.0, random_state=0)
    records = classifier(write_csv(tmp_path / "data.csv", shuffled), normalize=False)()._splits
    for name, split in records.items():
        for entity, sequence in zip(split.sequence_ids, split.sequences):
            expected = frame[frame["entity"] == entity].sort_values("time")[["x", "y"]].to_numpy(np.float32)
            np.testing.assert_allclose(sequence, expected, err_msg=f"{name} {entity}")
    panel = panel_frame()
    module = forecaster(write_csv(tmp_path / "panel.csv", panel.sample(frac=1.0, random_state=0)))()
    for series, entity in enumerate(module.panel.entities):
        np.testing.assert_array_equal(module.panel.times[series], np.arange(2000, 2020))
        np.testing.assert_allclose(module.panel.values[series], panel[panel["entity"] == entity]["target"])


def test_non_ascii_utf8_headwords_are_accepted_as_characters(tmp_path: Path) -> None:
    words = "".join(f"CAFÉ{word.split()[0]}  K AE0 F EY1\n" for word in dictionary_text().splitlines())
    module = g2p(_text(tmp_path / "words.dict", words))()
    assert "é" in module.source_tokens  # lowercased, one grapheme per character


@pytest.mark.parametrize(("policy", "kept"), [("keep_first", slice(None, 4)), ("keep_last", slice(-4, None))])
def test_too_long_sequences_are_truncated_only_when_asked(tmp_path: Path, policy: str, kept: slice) -> None:
    frame = labelled_frame()
    module = classifier(write_csv(tmp_path / "data.csv", frame), max_length=4, too_long=policy, normalize=False)()
    for split in module._splits.values():
        assert split.lengths.max() <= 4
        for entity, sequence in zip(split.sequence_ids, split.sequences):
            full = frame[frame["entity"] == entity][["x", "y"]].to_numpy(np.float32)
            np.testing.assert_array_equal(sequence, full[kept] if len(full) > 4 else full)


def test_a_byte_order_mark_is_not_text_in_any_reader(tmp_path: Path) -> None:
    """Issue 21: a UTF-8 BOM at the start of a corpus (or prompt file) became a vocabulary character."""
    bom = "\ufeff"
    corpus = _text(tmp_path / "corpus.txt", (bom + "the cat sat on the mat\n" * 30).encode("utf-8"))
    second = _text(tmp_path / "more.txt", (bom + "a dog ate the hat\n" * 30).encode("utf-8"))
    prompts = _text(tmp_path / "prompts.txt", (bom + "the cat\nthe mat\n").encode("utf-8"))
    module = language_model(corpus, second, predict_path=str(prompts))()
    assert all(bom not in document for document in module.documents)
    assert bom not in str(module.tokenizer_state)
    module.setup("predict")
    assert list(module.datasets["predict"].prompts) == ["the cat", "the mat"]
    words = _text(tmp_path / "words.dict", (bom + dictionary_text()).encode("utf-8"))
    assert bom not in "".join(g2p(words)().source_tokens)
    table = _text(tmp_path / "data.csv", (bom + "entity,time,x,label\na,0,1.0,p\n").encode("utf-8"))
    from seqlit.data.long_format import read_table

    assert list(read_table(table).columns) == ["entity", "time", "x", "label"]
