"""The CLI as a user meets it: every config runs, typos and missing files give one clear line."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from seqlit.cli import SeqlitCLI, main
from tests.recipe_data import own_file_arguments

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO / "configs").glob("*.yaml"))
JV_GRU = REPO / "configs/japanese_vowels_gru.yaml"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # logs and checkpoints go to tmp_path/runs


@pytest.mark.parametrize("config", RECIPES, ids=lambda p: p.name)
def test_every_config_runs_fast_dev_run(config: Path) -> None:
    cli = SeqlitCLI(args=["fit", "--config", str(config), *own_file_arguments(config, Path.cwd()),
                          "--trainer.fast_dev_run", "true", *QUIET])
    assert cli.test_results is not None
    assert {"test/acc", "test/wer", "test/bpc", "test/mase"} & set(cli.test_results[0])


@pytest.mark.parametrize("config", RECIPES, ids=lambda p: p.name)
def test_every_config_prints_its_resolved_config(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "hidden_size" in printed and "class_path" in printed


def test_training_logs_grad_padding_and_validation_metrics_to_csv() -> None:
    cli = SeqlitCLI(args=["fit", "--config", str(JV_GRU), "--trainer.max_epochs", "1", *QUIET])
    metrics = pd.read_csv(Path(cli.trainer.log_dir) / "metrics.csv")
    for column in ("grad/norm_total", "grad/norm_clipped", "grad/norm/encoder.rnn.l0", "grad/norm_total_epoch",
                   "grad/norm_gate/encoder.rnn.l0/update", "data/padding_ratio", "data/tokens_per_sec",
                   "val/loss", "val/acc", "train/loss_epoch"):
        assert column in metrics.columns, column
        assert metrics[column].notna().any(), column
    assert metrics["data/padding_ratio"].dropna().between(0.0, 1.0).all()


def test_wandb_logger_config_runs_offline_with_our_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = SeqlitCLI(
        args=["fit", "--config", str(REPO / "configs/japanese_vowels_gru.yaml"),
              "--config", str(REPO / "configs/loggers/wandb.yaml"), "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps",
              "1", "--test_after_fit", "false", *QUIET]
    )
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    # A CLI process does both at exit. In-process the run is finished and the W&B service process is shut down
    # (teardown waits for it), so the offline run file is complete and closed before it is read: no race, no sleep.
    next(logger for logger in cli.trainer.loggers if isinstance(logger, WandbLogger)).experiment.finish()
    wandb.teardown()
    run_files = list(Path("runs/wandb").glob("offline-run-*/run-*.wandb"))
    assert run_files, "no offline W&B run file was written"
    content = run_files[0].read_bytes()
    for key in (b"grad/norm_total", b"grad/norm_clipped", b"data/padding_ratio", b"val/loss", b"train/loss"):
        assert key in content, key


def test_config_typo_names_the_closest_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(JV_GRU), "--model.init_args.encoder.init_args.hiden_size", "32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlit: error: RNNEncoder (encoder) has no option 'hiden_size'. Did you mean 'hidden_size'")
    assert len(err.strip().splitlines()) == 1


def test_a_setting_of_a_part_given_to_the_task_names_the_full_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(JV_GRU), "--model.init_args.hidden_size", "32"])
    err = capsys.readouterr().err
    assert "it is a setting of its encoder; use --model.init_args.encoder.init_args.hidden_size" in err


def test_missing_data_file_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(JV_GRU), "--data.init_args.dataset", "long_format",
              "--data.init_args.train_path", "no/such/file.csv"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not found" in err and "no/such/file.csv" in err
    assert "Traceback" not in err


def _labelled_csv(path: Path, labels: tuple[str, ...], n_per_label: int = 12, with_labels: bool = True) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for k, label in enumerate(labels):
        for i in range(n_per_label):
            for t in range(int(rng.integers(4, 10))):
                row = {"entity": f"{label}{i}", "time": t, "a": rng.normal() + 3 * k, "b": rng.normal() * t}
                if with_labels:
                    row["label"] = label
                rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_fit_then_predict_a_new_csv_and_refuse_another_label_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _labelled_csv(tmp_path / "train.csv", ("cat", "dog", "eel"))
    new = _labelled_csv(tmp_path / "new.csv", ("cat", "dog", "eel"), n_per_label=3, with_labels=False)
    data_args = ["--data.init_args.dataset", "long_format", "--data.init_args.train_path", str(train)]
    fit = SeqlitCLI(
        args=["fit", "--config", str(JV_GRU), *data_args, "--trainer.max_epochs", "3", *QUIET]
    )
    checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)
    assert checkpoint.exists()
    out = tmp_path / "predictions.csv"
    main(["predict", "--config", str(JV_GRU), *data_args, "--data.init_args.predict_path", str(new),
          "--ckpt_path", str(checkpoint), "--predictions_path", str(out), *QUIET])
    predictions = pd.read_csv(out)
    assert len(predictions) == 9
    assert set(predictions["prediction"]) <= {"cat", "dog", "eel"}
    np.testing.assert_allclose(predictions[["p_cat", "p_dog", "p_eel"]].sum(axis=1), 1.0, atol=1e-4)

    other = _labelled_csv(tmp_path / "other.csv", ("cat", "dog", "fox"))
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(JV_GRU), "--data.init_args.dataset", "long_format",
              "--data.init_args.train_path", str(other), "--ckpt_path", str(checkpoint), *QUIET])
    assert exit_info.value.code == 2
    assert "classes" in capsys.readouterr().err
    assert checkpoint.exists()  # a refused resume loses nothing


G2P_SMALL = REPO / "configs/g2p_cmudict_small.yaml"
G2P_SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2"]


def test_g2p_fit_then_predict_a_word_list_and_refuse_another_vocabulary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fit = SeqlitCLI(args=["fit", "--config", str(G2P_SMALL), *G2P_SHORT, *QUIET])
    assert fit.test_results is not None and 0.0 <= fit.test_results[0]["test/wer"] <= 1.0
    assert fit.fit_metrics["train/teacher_forcing_prob"] == 1.0
    checkpoint = Path(fit.trainer.checkpoint_callback.best_model_path)
    words = tmp_path / "words.txt"
    words.write_text("Phoneme\nlightning\n\nrecurrent\n", encoding="utf-8")
    out = tmp_path / "pronunciations.csv"
    main(["predict", "--config", str(G2P_SMALL), "--data.init_args.predict_path", str(words),
          "--ckpt_path", str(checkpoint), "--predictions_path", str(out), *QUIET])
    predictions = pd.read_csv(out, keep_default_na=False)
    assert predictions["id"].tolist() == ["phoneme", "lightning", "recurrent"]  # lowercased, in file order
    phonemes = set(fit.model.hparams.target_tokens[4:])
    assert all(p and set(p.split()) <= phonemes for p in predictions["prediction"])

    # a dictionary with other symbols gives other vocabularies: refused, checkpoint untouched
    other = tmp_path / "other.dict"
    other.write_text("\n".join(f"W{i}  Q{i % 3} R" for i in range(60)) + "\n", encoding="utf-8")
    size = checkpoint.stat().st_size
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(G2P_SMALL), "--data.init_args.dataset", "pronunciation_file",
              "--data.init_args.train_path", str(other), "--data.init_args.val_fraction", "0.2",
              "--data.init_args.test_fraction", "0.2", "--ckpt_path", str(checkpoint), *QUIET])
    assert exit_info.value.code == 2
    assert "vocabulary" in capsys.readouterr().err
    assert checkpoint.stat().st_size == size


LM_CHAR = REPO / "configs/lm_pydoc_char.yaml"
LM_TINY = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
    "--trainer.limit_test_batches", "2", "--model.init_args.network.init_args.hidden_size", "32",
    "--model.init_args.network.init_args.embedding_size", "16", "--model.init_args.network.init_args.num_layers", "2",
    "--model.init_args.sample_length", "40", "--data.init_args.bptt", "20",
]


def test_lm_fit_then_sample_prompts_and_refuse_another_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fit = SeqlitCLI(args=["fit", "--config", str(LM_CHAR), *LM_TINY, *QUIET])
    assert fit.test_results is not None and fit.test_results[0]["test/bpc"] > 0
    assert {"train/ppl", "val/ppl", "val/bpc"} <= set(fit.fit_metrics)
    checkpoint = Path(fit.trainer.checkpoint_callback.best_model_path)
    out = tmp_path / "samples.csv"
    main(["predict", "--config", str(LM_CHAR), *LM_TINY, "--ckpt_path", str(checkpoint),
          "--data.init_args.prompts", '["The with statement", ""]', "--predictions_path", str(out), *QUIET])
    samples = pd.read_csv(out, keep_default_na=False)
    assert samples["id"].tolist() == ["The with statement", ""]
    assert samples["prediction"][0].startswith("The with statement")
    assert len(samples["prediction"][0]) >= len("The with statement") + 30  # ~40 sampled characters

    # a BPE tokenizer is another vocabulary: refused with a clear line, checkpoint untouched
    size = checkpoint.stat().st_size
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(LM_CHAR), *LM_TINY, "--data.init_args.tokenizer", "bpe",
              "--ckpt_path", str(checkpoint), *QUIET])
    assert exit_info.value.code == 2
    assert "tokenizer" in capsys.readouterr().err
    assert checkpoint.stat().st_size == size


def test_default_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from seqlit.cli import default_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_precision() == "32-true"
    asked: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: asked.append(device) or (8, 0))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert default_precision() == "bf16-mixed"
    assert asked == [1]  # this process's own GPU, not device 0
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 5))
    assert default_precision() == "16-mixed"
    assert default_precision("cpu") == "32-true"


def test_ckpt_path_last_resumes_the_newest_run_across_log_versions() -> None:
    first = SeqlitCLI(args=["fit", "--config", str(JV_GRU), "--trainer.max_epochs", "1",
                            "--test_after_fit", "false", *QUIET])
    steps_per_epoch = first.trainer.global_step
    resumed = SeqlitCLI(args=["fit", "--config", str(JV_GRU), "--trainer.max_epochs", "2",
                              "--ckpt_path", "last", "--test_after_fit", "false", *QUIET])
    assert resumed.trainer.log_dir != first.trainer.log_dir  # a new version folder, yet it resumed
    assert resumed.trainer.global_step == 2 * steps_per_epoch
    assert str(resumed.config_init["fit"]["ckpt_path"]).startswith(str(Path(first.trainer.log_dir)))


def test_a_config_with_only_a_data_section_trains_the_data_modules_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's own-data YAML names data but no model: the data module's default task is used, and a config's
    own model settings (without class_path) still apply."""
    config = tmp_path / "only_data.yaml"
    config.write_text("data:\n  class_path: seqlit.data.datamodules.SequenceClassificationDataModule\n"
                      "model:\n  init_args:\n    label_smoothing: 0.1\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "seqlit.tasks.SequenceClassifier"
    assert printed["model"]["init_args"]["label_smoothing"] == 0.1
    assert printed["weights_only"] is True  # checkpoints are loaded with weights_only said explicitly
    # ... and everything else from the shared base: an epoch cap with early stopping, loggers under runs/<name>
    assert printed["trainer"]["max_epochs"] == 100
    assert "seqlit.callbacks.EarlyStopping" in str(printed["trainer"]["callbacks"])
    assert [logger["init_args"]["save_dir"] for logger in printed["trainer"]["logger"]] == ["runs", "runs"]


@pytest.mark.parametrize(("arguments", "task"), [
    (["--data", "ForecastingDataModule"], "seqlit.tasks.Forecaster"),
    (["--data.class_path=seqlit.data.datamodules.Seq2SeqDataModule"], "seqlit.tasks.Seq2SeqModel"),
    (["--data", "ForecastingDataModule", "--model", "my.Model"], None),  # a model named: nothing added
    (["--trainer.max_epochs", "3"], None),  # no data named: jsonargparse says the model is required
])
def test_the_default_model_comes_from_the_data_module(arguments: list[str], task: str | None) -> None:
    from seqlit.cli.arguments import with_default_model

    expected = ["fit", *arguments] if task is None else ["fit", "--model", task, *arguments]
    assert with_default_model(["fit", *arguments]) == expected


def test_no_model_and_no_data_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "trainer_only.yaml"
    config.write_text("trainer:\n  max_epochs: 1\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlit: error: the config names no model") and "seqlit init --data" in err


def test_fit_help_lists_seqlit_tasks_and_data_modules(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = "".join(capsys.readouterr().out.split())  # help text wraps class paths across lines
    for name in ("seqlit.tasks.SequenceClassifier", "seqlit.tasks.Forecaster", "seqlit.tasks.LanguageModel",
                 "seqlit.tasks.Seq2SeqModel", "seqlit.data.datamodules.SequenceClassificationDataModule"):
        assert name in text, name


def test_seqlit_help_lists_init_and_report(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: seqlit ") and "init" in out and "Inspect a data file" in out
    assert "report" in out and "self-contained HTML page for a finished run" in out


def test_an_unset_wandb_anonymous_is_not_passed_to_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb >= 0.19 warns "The anonymous setting has no effect" for any value Lightning passes, None included."""
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    from seqlit.cli.trainer_setup import drop_unset_wandb_anonymous as _drop_unset_wandb_anonymous

    monkeypatch.setenv("WANDB_MODE", "offline")
    unset, anonymous = WandbLogger(project="p", offline=True), WandbLogger(project="p", offline=True, anonymous=True)
    assert "anonymous" in unset._wandb_init  # what Lightning does
    _drop_unset_wandb_anonymous(SimpleNamespace(loggers=[unset, anonymous]))
    assert "anonymous" not in unset._wandb_init and anonymous._wandb_init["anonymous"] == "allow"


def test_quiet_console_drops_known_third_party_noise_only() -> None:
    """Each known line is matched by its own message: other warnings and log lines, seqlit's included, still show."""
    import logging
    import warnings

    from seqlit.cli.main import quiet_console

    noise_warnings = [
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()`",
        "The number of training batches (2) is smaller than the logging interval Trainer(log_every_n_steps=10).",
        "The dirpath has changed from 'runs/x/version_2/checkpoints' to 'runs/x/version_3/checkpoints', therefore",
    ]
    noise_logs = ["Seed set to 0", "[rank: 1] Seed set to 0", "GPU available: False, used: False",
                  "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
                  "Restoring states from the checkpoint path at runs/x.ckpt"]
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    seen_logs: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen_logs.append(record.getMessage())  # type: ignore[method-assign]
    rank_zero.addHandler(handler)
    level = rank_zero.level
    rank_zero.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as seen_warnings:
            warnings.simplefilter("always")
            with quiet_console():
                for message in [*noise_warnings, "seqlit: 40% of the padded training steps were padding"]:
                    warnings.warn(message, UserWarning, stacklevel=1)
                for message in [*noise_logs, "padding ratio: this loader 0.030 (first epoch)"]:
                    rank_zero.info(message)
            warnings.warn(noise_warnings[0], UserWarning, stacklevel=1)  # the filters come off afterwards
    finally:
        rank_zero.removeHandler(handler)
        rank_zero.setLevel(level)
    assert [str(w.message) for w in seen_warnings] == ["seqlit: 40% of the padded training steps were padding",
                                                       noise_warnings[0]]
    assert seen_logs == ["padding ratio: this loader 0.030 (first epoch)"]


def test_every_save_through_a_seqlit_trainer_says_weights_only() -> None:
    """Lightning's SLURM requeue handler calls `trainer.save_checkpoint(path)`; seqlit's trainer passes an explicit
    weights_only (False: the full, resumable state), so Lightning does not log that it was unset."""
    from types import SimpleNamespace

    from seqlit.cli.trainer_setup import say_weights_only_on_every_save as _say_weights_only_on_every_save

    calls: list[dict] = []

    class _Trainer(SimpleNamespace):
        def save_checkpoint(self, filepath: str, **kwargs: object) -> None:
            calls.append({"path": filepath, **kwargs})

    trainer = _Trainer()
    _say_weights_only_on_every_save(trainer)
    trainer.save_checkpoint("hpc_ckpt_1.ckpt")
    trainer.save_checkpoint("weights.ckpt", True)
    assert calls == [{"path": "hpc_ckpt_1.ckpt", "weights_only": False, "storage_options": None},
                     {"path": "weights.ckpt", "weights_only": True, "storage_options": None}]
