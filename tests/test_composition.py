"""seqlit as a collection: a user's own cell in every task by YAML alone, optimisers by `--optimizer`, callbacks
removable by config, real subcommands, thin recipes that resolve to the settings they always had."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from seqlit.cli import BASE_CONFIG, SeqlitCLI, main

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
CELL = "tests.custom_cells.IndRNNCell"  # a cell written outside seqlit


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# ---- a user's cell in every task ----------------------------------------------------------------------------


def _reversal_pairs(path: Path, n: int = 400) -> Path:
    """`abcd<TAB>dcba`: a copy-reverse task any working encoder-decoder learns in a few epochs."""
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        word = "".join(rng.choice(string.ascii_lowercase[:8]) for _ in range(rng.randint(2, 6)))
        lines.append(f"{word}\t{word[::-1]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _task_arguments(task: str, tmp_path: Path) -> list[str]:
    """`seqlit fit` arguments that train `task` briefly with IndRNN cells everywhere a cell goes."""
    if task == "classifier":
        return ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--trainer.max_epochs", "6",
                "--model.init_args.encoder.init_args.cell", CELL]
    if task == "seq2seq":
        pairs = _reversal_pairs(tmp_path / "pairs.tsv")
        return ["--config", str(REPO / "configs/g2p_cmudict_small.yaml"), "--trainer.max_epochs", "12",
                "--data.init_args.dataset", "parallel_file", "--data.init_args.train_path", str(pairs),
                "--data.init_args.source_unit", "char", "--data.init_args.target_unit", "char",
                "--data.init_args.val_fraction", "0.1", "--data.init_args.test_fraction", "0.1",
                "--data.init_args.loader.batch_size", "32",
                "--model.init_args.encoder.init_args.cell", CELL, "--model.init_args.decoder.init_args.cell", CELL,
                "--model.init_args.beam_size", "2"]
    if task == "language_model":
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("the cat sat on the mat. the dog sat on the log.\n" * 60, encoding="utf-8")
        return ["--config", str(REPO / "configs/lm_pydoc_char.yaml"), "--trainer.max_epochs", "10",
                "--data.init_args.corpus", "files", "--data.init_args.paths", f"[{corpus}]",
                "--data.init_args.loader.batch_size", "8", "--data.init_args.loader.eval_batch_size", "2",
                "--data.init_args.bptt", "20", "--model.init_args.network.init_args.cell", CELL,
                "--model.init_args.network.init_args.hidden_size", "32",
                "--model.init_args.network.init_args.embedding_size", "32", "--model.init_args.network.init_args.weight_drop", "0",
                "--model.init_args.sample_length", "10"]
    if task == "forecaster":
        return ["--config", str(REPO / "configs/m1_yearly_gru.yaml"), "--trainer.max_epochs", "6",
                "--model.init_args.network.init_args.cell", CELL]
    raise AssertionError(task)


@pytest.mark.parametrize("task", ["classifier", "seq2seq", "language_model", "forecaster"])
def test_a_cell_from_a_users_file_trains_in_every_task_by_yaml_alone(task: str, tmp_path: Path) -> None:
    cli = SeqlitCLI(args=["fit", *_task_arguments(task, tmp_path), "--trainer.log_every_n_steps", "1",
                          "--test_after_fit", "false", *QUIET])
    cells = [module for module in cli.model.modules() if type(module).__name__ == "IndRNNCell"]
    assert cells, "the configured cell was not built"
    losses = pd.read_csv(Path(cli.trainer.log_dir) / "metrics.csv")["train/loss_step"].dropna().to_numpy()
    start, end = losses[:3].mean(), losses[-3:].mean()
    assert end < 0.6 * start, f"{task}: training loss {start:.3f} -> {end:.3f}"


# ---- optimisers and callbacks -------------------------------------------------------------------------------


LM_TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
           "--test_after_fit", "false", "--model.init_args.network.init_args.hidden_size", "16",
           "--model.init_args.network.init_args.embedding_size", "16", "--data.init_args.bptt", "16"]


def test_optimizer_flag_sets_the_tasks_own_optimizer_and_keeps_its_schedule(capsys: pytest.CaptureFixture) -> None:
    arguments = ["fit", "--config", str(REPO / "configs/lm_pydoc_char.yaml"), "--optimizer", "SGD",
                 "--optimizer.lr", "20"]
    with pytest.raises(SystemExit):
        main([*arguments, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    assert printed["optimizer"]["class_path"] == "torch.optim.SGD" and printed["optimizer"]["init_args"]["lr"] == 20
    cli = SeqlitCLI(args=[*arguments, *LM_TINY, *QUIET])
    [optimizer] = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 20
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0]  # matrices only
    [scheduler] = cli.trainer.lr_scheduler_configs  # the recipe's warmup-cosine, sized to the run
    assert type(scheduler.scheduler).__name__ == "WarmupCosineLR" and scheduler.interval == "step"
    assert scheduler.scheduler.lr_lambdas[0].total_steps == cli.trainer.estimated_stepping_batches


def test_lr_scheduler_flag_takes_torch_schedulers() -> None:
    cli = SeqlitCLI(args=["fit", "--config", str(REPO / "configs/lm_pydoc_char.yaml"), "--optimizer", "SGD",
                          "--optimizer.lr", "20", "--lr_scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau", "--lr_scheduler.factor",
                          "0.25", "--lr_scheduler.patience", "0", *LM_TINY, *QUIET])
    [scheduler] = cli.trainer.lr_scheduler_configs
    assert isinstance(scheduler.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.monitor == "val/bpc" and scheduler.interval == "epoch"


def test_a_default_callback_is_removed_by_giving_the_list_without_it(tmp_path: Path) -> None:
    base = yaml.safe_load(BASE_CONFIG.read_text())["trainer"]["callbacks"]
    kept = [entry for entry in base if "NonFiniteGuard" not in str(entry)]
    assert len(kept) == len(base) - 1
    overlay = tmp_path / "no_guard.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": kept}}))
    arguments = ["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--trainer.logger", "false"]
    with_guard = SeqlitCLI(args=arguments, run=False)
    without = SeqlitCLI(args=[*arguments, "--config", str(overlay)], run=False)
    names = [type(c).__name__ for c in with_guard.trainer.callbacks]
    assert "NonFiniteGuard" in names
    assert "NonFiniteGuard" not in [type(c).__name__ for c in without.trainer.callbacks]
    assert len(without.trainer.callbacks) == len(with_guard.trainer.callbacks) - 1


def test_the_base_config_gives_a_minimal_config_everything_else(tmp_path: Path) -> None:
    """A config with only the model and data trains with the base's checkpoints, early stopping and loggers,
    and logs to runs/<config name>/version_N with one last.ckpt."""
    minimal = tmp_path / "mine.yaml"
    minimal.write_text(yaml.safe_dump({
        "model": {"class_path": "seqlit.tasks.SequenceClassifier"},
        "data": {"class_path": "seqlit.data.datamodules.classification.SequenceClassificationDataModule"},
    }))
    cli = SeqlitCLI(args=["fit", "--config", str(minimal), "--trainer.max_epochs", "1", *QUIET])
    log_dir = Path(cli.trainer.log_dir)
    assert log_dir == Path("runs/mine/version_0")
    assert sorted(p.name for p in (log_dir / "checkpoints").iterdir() if p.name.startswith("last")) == ["last.ckpt"]
    assert list(log_dir.glob("events.out.tfevents.*")) and (log_dir / "metrics.csv").is_file()
    assert cli.test_results and "test/acc" in cli.test_results[0]
    names = {type(c).__name__ for c in cli.trainer.callbacks}
    assert {"BestCheckpoint", "EarlyStopping", "GradNormMonitor", "SafeCheckpointing"} <= names
    best = cli.trainer.checkpoint_callback
    assert best.monitor == "val/loss" and Path(best.best_model_path).name.startswith("best-epoch000-val_loss")


# ---- subcommands ------------------------------------------------------------------------------------------


def test_help_lists_seqlits_subcommands_and_each_has_its_own_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for name in ("fit", "test", "predict", "audit", "doctor", "compare"):
        assert f"    {name} " in listed, name
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    compare_help = capsys.readouterr().out
    assert "--variants" in compare_help and "--seeds" in compare_help and "--model" in compare_help
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert "leakage" in capsys.readouterr().out


# ---- recipes ------------------------------------------------------------------------------------------------

# What each recipe built before the recipes became thin YAML over the shared base (measured on the flat-argument
# code): parameters, optimizer (lr, weight decay), schedule (warmup steps of 1000, floor), epochs, clipping,
# logging cadence, early-stopping patience and the checkpoint metric, batch size.
BEFORE = {
    "japanese_vowels_gru": (31113, 0.003, 0.01, 50, 0.01, 60, 1.0, 5, 20, "val/loss", 16),
    "japanese_vowels_lstm": (86217, 0.003, 0.01, 50, 0.01, 60, 1.0, 5, 20, "val/loss", 16),
    "g2p_cmudict": (3182025, 0.003, 0.01, 30, 0.01, 12, 1.0, 50, 8, "val/wer", 128),
    "g2p_cmudict_small": (409353, 0.003, 0.01, 30, 0.01, 3, 1.0, 50, 8, "val/wer", 128),
    "lm_pydoc_char": (2392939, 0.003, 0.01, 20, 0.01, 24, 0.5, 50, 6, "val/bpc", 32),
    "lm_pydoc_bpe": (2879440, 0.003, 0.01, 20, 0.01, 40, 0.5, 50, 6, "val/bpc", 32),
    # M1 had no early stopping; patience 20 over its 20 epochs cannot stop it.
    "m1_yearly_gru": (17414, 0.003, 0.0, 50, 0.0, 20, 1.0, 10, 20, "val/mase", 64),
    "m1_yearly_lstm": (21702, 0.003, 0.0, 50, 0.0, 20, 1.0, 10, 20, "val/mase", 64),
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_recipes_resolve_to_the_settings_they_had(name: str) -> None:
    cli = SeqlitCLI(args=["--config", str(REPO / "configs" / f"{name}.yaml"), "--trainer.logger", "false"], run=False)
    model, trainer = cli.model, cli.trainer
    model._trainer = type("Planned", (), {"estimated_stepping_batches": 1000})()
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"].lr_lambdas[0]
    early = next(c for c in trainer.callbacks if type(c).__name__ == "EarlyStopping")
    patience = early._patience_given or model.patience
    got = (sum(p.numel() for p in model.parameters()), optimizer.defaults["lr"], optimizer.param_groups[0]["weight_decay"],
           schedule.warmup_steps, schedule.min_ratio, trainer.max_epochs, trainer.gradient_clip_val,
           trainer.log_every_n_steps, patience, model.monitor[0], cli.datamodule.loader.batch_size)
    assert got == BEFORE[name]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_are_thin(recipe: Path) -> None:
    lines = [line for line in recipe.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 30, f"{recipe.name}: {len(lines)} lines besides comments"
    settings = yaml.safe_load(recipe.read_text())
    assert "callbacks" not in settings["trainer"] and "logger" not in settings["trainer"]  # those come from the base


def test_public_api() -> None:
    from seqlit.callbacks import BestCheckpoint, GradNormMonitor  # noqa: F401
    from seqlit.data.datamodules import LoaderSettings, SeqlitDataModule  # noqa: F401
    from seqlit.nn import AttentionDecoder, RecurrentLayer, RNNEncoder  # noqa: F401
    from seqlit.tasks import Forecaster, LanguageModel, Seq2SeqModel, SequenceClassifier  # noqa: F401

    assert isinstance(RNNEncoder(3, 4), RecurrentLayer)
