"""Checkpoints of every task load with `torch.load(..., weights_only=True)`: no pickled objects, vocabularies
and tokenizers stored as plain data; and a checkpoint of another model or vocabulary is refused with one line.

Lightning passes `weights_only=None` to `torch.load` when resuming through `ckpt_path` and in
`load_from_checkpoint` (torch >= 2.6 then defaults to True; Lightning itself only forces False for http(s) URLs).
The round trips here run with `TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`, so any load that needed pickle would fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from seqlit.cli import SeqlitCLI, main
from tests.data.test_forecasting_windows import random_walk_frame
from tests.data.test_seq2seq_datamodule import _numbered_words, _small_dictionary

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--test_after_fit", "false", *QUIET]
TEXT = "def add(a, b):\n    return a + b\n\nThe with statement wraps a block.\n" * 40
TINY_LM = ["--data.init_args.corpus", "files", "--data.init_args.loader.batch_size", "4",
           "--data.init_args.loader.eval_batch_size", "2", "--data.init_args.bptt", "16",
           "--model.init_args.network.init_args.hidden_size", "16",
           "--model.init_args.network.init_args.embedding_size", "16", "--model.init_args.network.init_args.num_layers", "1",
           "--model.init_args.sample_length", "10"]


def _task_arguments(task: str, root: Path) -> list[str]:
    """A couple of training steps of `task` on tiny data, through its bundled config."""
    if task == "classifier":
        return ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--model.init_args.encoder.init_args.hidden_size", "16"]
    if task == "classifier_lstm":
        return ["--config", str(REPO / "configs/japanese_vowels_lstm.yaml"), "--model.init_args.encoder.init_args.hidden_size", "16"]
    if task == "seq2seq":
        dictionary = root / "tiny.dict"
        dictionary.write_text(_small_dictionary(_numbered_words(40)), encoding="utf-8")
        return ["--config", str(REPO / "configs/g2p_cmudict_small.yaml"), "--data.init_args.dataset",
                "pronunciation_file", "--data.init_args.train_path", str(dictionary), "--data.init_args.val_fraction",
                "0.1", "--data.init_args.test_fraction", "0.1", "--data.init_args.loader.batch_size", "8",
                "--model.init_args.encoder.init_args.hidden_size", "16", "--model.init_args.decoder.init_args.hidden_size", "16",
                "--model.init_args.beam_size", "2"]
    if task in ("lm_char", "lm_bpe"):
        corpus = root / "corpus.txt"
        corpus.write_text(TEXT, encoding="utf-8")
        config = "lm_pydoc_char.yaml" if task == "lm_char" else "lm_pydoc_bpe.yaml"
        bpe = ["--data.init_args.vocab_size", "300", "--data.init_args.min_count", "1"] if task == "lm_bpe" else []
        return ["--config", str(REPO / "configs" / config), *TINY_LM, *bpe, "--data.init_args.paths", f"[{corpus}]"]
    if task == "forecaster":
        panel = root / "panel.csv"
        random_walk_frame({f"store-{i}": 14 + 2 * i for i in range(6)}).to_csv(panel, index=False)
        return ["--config", str(REPO / "configs/m1_yearly_gru.yaml"), "--data.init_args.dataset", "long_format",
                "--data.init_args.path", str(panel), "--data.init_args.horizon", "3", "--data.init_args.scaling",
                "series", "--data.init_args.covariate_columns", "[promo]", "--data.init_args.loader.batch_size", "8",
                "--model.init_args.network.init_args.hidden_size", "16"]
    raise AssertionError(task)


TASKS = ("classifier", "seq2seq", "lm_char", "lm_bpe", "forecaster")
_FITTED: dict[str, tuple[Path, list[str], type]] = {}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    """task -> (its last.ckpt, the arguments that made it, its LightningModule class); fitted once each."""

    def fit(task: str) -> tuple[Path, list[str], type]:
        if task not in _FITTED:
            root = tmp_path_factory.mktemp(task)
            arguments = _task_arguments(task, root)
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(root)
                cli = SeqlitCLI(args=["fit", *arguments, *SHORT])
            checkpoint = root / cli.trainer.checkpoint_callback.last_model_path  # relative to root: logs in runs/
            assert checkpoint.is_file()
            _FITTED[task] = (checkpoint, arguments, type(cli.model))
        return _FITTED[task]

    return fit


PLAIN_LEAVES = (str, int, float, bool, type(None), torch.Tensor)


def _assert_plain(value: Any, where: str = "checkpoint") -> None:
    """Only dicts / lists / tuples of str, numbers, bools, None and tensors: what weights_only unpickles."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where} has a key of type {type(key).__name__}"
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _assert_plain(item, f"{where}[{index}]")
    else:
        assert isinstance(value, PLAIN_LEAVES), f"{where} is a {type(value).__module__}.{type(value).__name__}"


@pytest.mark.parametrize("task", TASKS)
def test_checkpoint_is_plain_data_and_round_trips_with_weights_only(
    task: str, fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint_path, arguments, model_class = fitted(task)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    _assert_plain(checkpoint)
    hyper_parameters = checkpoint["hyper_parameters"]
    if task == "classifier":
        assert hyper_parameters["class_names"] == [str(i) for i in range(1, 10)]
    elif task == "seq2seq":
        assert all(isinstance(t, str) for t in hyper_parameters["source_tokens"] + hyper_parameters["target_tokens"])
    elif task.startswith("lm_"):
        tokenizer = hyper_parameters["tokenizer"]
        assert tokenizer["kind"] == task.removeprefix("lm_") and isinstance(tokenizer, dict)
    elif task == "forecaster":
        data_state = checkpoint["ForecastingDataModule"]
        assert data_state["scaling"] == "series" and data_state["scaler"]  # fitted statistics, as plain data

    # Lightning's own loads (resume through ckpt_path, load_from_checkpoint) under forced weights_only.
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    seen: list[Any] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: seen.append(kwargs.get("weights_only"))
                        or real_load(*args, **kwargs))
    monkeypatch.chdir(tmp_path)
    main(["test", *arguments, "--ckpt_path", str(checkpoint_path), "--trainer.limit_test_batches", "1", *QUIET])
    model_class.load_from_checkpoint(checkpoint_path)
    assert seen and set(seen) <= {None, True}, f"Lightning asked torch.load for weights_only={seen}"


def _refused(arguments: list[str], checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> str:
    size = checkpoint.stat().st_size
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *arguments, "--ckpt_path", str(checkpoint), *QUIET])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqlit: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert checkpoint.stat().st_size == size  # a refused checkpoint is left as it was
    return errors[0]


def test_checkpoint_of_another_task_names_both_models(
    fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, _, _ = fitted("forecaster")
    monkeypatch.chdir(tmp_path)
    line = _refused(_task_arguments("classifier", tmp_path), checkpoint, capsys)
    assert "is for another model: it holds a Forecaster (seqlit.tasks.Forecaster)" in line
    assert "this config builds a SequenceClassifier" in line and "Fix: use the config the checkpoint" in line


def test_checkpoint_settings_replace_the_config_and_say_so(
    fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """LightningCLI rebuilds the model from an explicit checkpoint's settings (its weights must fit): a GRU
    checkpoint tested with the LSTM config tests the GRU, and one line names what was replaced."""
    checkpoint, _, _ = fitted("classifier")  # a GRU with 16 units
    monkeypatch.chdir(tmp_path)
    cli = SeqlitCLI(args=["test", *_task_arguments("classifier_lstm", tmp_path), "--model.init_args.encoder.init_args.hidden_size",
                          "32", "--ckpt_path", str(checkpoint), "--trainer.limit_test_batches", "1", *QUIET])
    encoder = cli.model.hparams.encoder["init_args"]
    assert encoder["cell"] == "gru" and encoder["hidden_size"] == 16
    notice = next(line for line in capsys.readouterr().err.splitlines() if "from the checkpoint replace" in line)
    assert "encoder.cell='gru' (config: 'lstm')" in notice and "encoder.hidden_size=16 (config: 32)" in notice


def test_last_checkpoint_of_another_size_is_one_error_line(
    fitted, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--ckpt_path last` is resolved after LightningCLI would read settings from it: the config's model is
    built, and weights that do not fit are explained instead of torch's state_dict traceback."""
    checkpoint, arguments, _ = fitted("classifier")
    monkeypatch.chdir(checkpoint.parents[4])  # <root>/runs/<name>/version_0/checkpoints/last.ckpt
    size = checkpoint.stat().st_size
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *arguments, "--model.init_args.encoder.init_args.hidden_size", "32", "--ckpt_path", "last", *QUIET])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("seqlit: error:")]
    assert len(errors) == 1 and "is for another model" in errors[0]
    assert "encoder.hidden_size=16 (this config: 32)" in errors[0] and "of another shape" in errors[0]
    assert "Fix: use the config the checkpoint was trained with" in errors[0]
    assert checkpoint.stat().st_size == size


class Pickled:
    """Stands for any Python object pickled into a checkpoint from elsewhere."""


def test_a_checkpoint_with_pickled_objects_is_refused_safely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "pickled.ckpt"
    torch.save({"hyper_parameters": {"extra": Pickled()}, "state_dict": {}}, checkpoint)
    monkeypatch.chdir(tmp_path)
    line = _refused(_task_arguments("classifier", tmp_path), checkpoint, capsys)
    assert "holds pickled Python objects and cannot be loaded safely" in line


def test_checkpoint_of_another_tokenizer_is_refused_by_the_task(
    fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, arguments, _ = fitted("lm_char")
    monkeypatch.chdir(tmp_path)
    line = _refused([*arguments, "--data.init_args.tokenizer", "word"], checkpoint, capsys)
    assert "the tokenizer 'char, " in line and "this run has 'word, " in line and "use the training run's corpus" in line
