"""TaskFigures on each recipe's task: tiny two-epoch runs write figures and tables to TensorBoard and to the
version folder, show the same fixed items at both epochs, and (classification) reach the offline W&B run."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqlit.callbacks import TaskFigures
from seqlit.cli import SeqlitCLI

REPO = Path(__file__).resolve().parents[2]
OVERLAY = """
test_after_fit: false
trainer:
  max_epochs: 2
  limit_train_batches: 2
  limit_val_batches: 2
  log_every_n_steps: 1
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - seqlit.callbacks.GradNormMonitor
    - class_path: seqlit.callbacks.TaskFigures
      init_args: {every_n_epochs: 1, max_items: 3, max_overhead: null}
"""
# recipe, tiny-model flags, expected images, expected tables, the table and column naming the fixed items
CASES = {
    "classification": (
        "japanese_vowels_gru.yaml", ["--model.init_args.encoder.init_args.hidden_size", "8"],
        {"confusion_matrix", "per_class_f1", "grad_norms"}, {"val_items"}, ("val_items", "item"),
    ),
    "seq2seq": (  # the G2P recipe's model on a small generated parallel file (CMUdict takes seconds to load)
        "g2p_cmudict_small.yaml",
        ["--model.init_args.encoder.init_args.hidden_size", "8", "--model.init_args.decoder.init_args.hidden_size", "8",
         "--data.init_args.dataset", "parallel_file", "--data.init_args.train_path", "pairs.tsv",
         "--data.init_args.val_fraction", "0.2", "--data.init_args.test_fraction", "0.1",
         "--data.init_args.loader.batch_size", "16", "--data.init_args.loader.eval_batch_size", "16"],
        {"attention", "grad_norms"}, {"val_hypotheses"}, ("val_hypotheses", "source"),
    ),
    "language_model": (
        "lm_pydoc_char.yaml",  # the char-LM recipe's model on a small generated text file
        ["--model.init_args.network.init_args.hidden_size", "16", "--model.init_args.network.init_args.embedding_size",
         "16", "--data.init_args.bptt", "16", "--data.init_args.loader.batch_size", "4",
         "--data.init_args.loader.eval_batch_size", "2", "--data.init_args.corpus", "files",
         "--data.init_args.paths", "[corpus.txt]"],
        {"grad_norms"}, {"samples"}, ("samples", "prompt"),
    ),
    "forecasting": (
        "m1_yearly_gru.yaml",
        ["--model.init_args.network.init_args.hidden_size", "8", "--model.init_args.loss", "quantile"],
        {"forecasts", "mase_distribution", "grad_norms"}, {"val_forecasts", "val_worst_mase"},
        ("val_forecasts", "window"),
    ),
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    _write_small_data(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and two oversubscribe a shared machine
    yield
    torch.set_num_threads(threads)


def _write_small_data(folder: Path) -> None:
    """A word -> reversed-spelling parallel file and a short English text, both seeded."""
    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 7))) for _ in range(300)})
    (folder / "pairs.tsv").write_text("".join(f"{w}\t{' '.join(reversed(w))}\n" for w in words), encoding="utf-8")
    sentences = ["the cat sat on the mat.", "a dog ran to the park.", "we read the book at night."]
    text = "\n".join(rng.choice(sentences) for _ in range(400))
    (folder / "corpus.txt").write_text(text, encoding="utf-8")


def _fit(recipe: str, flags: list[str], *extra_configs: str) -> SeqlitCLI:
    overlay = Path("overlay.yaml")
    overlay.write_text(OVERLAY, encoding="utf-8")
    configs = ["--config", str(REPO / "configs" / recipe), "--config", str(overlay)]
    for path in extra_configs:
        configs += ["--config", path]
    return SeqlitCLI(args=["fit", *configs, *flags])


def _column(path: Path, column: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return sorted(row[column] for row in csv.DictReader(handle))


@pytest.mark.parametrize("family", list(CASES))
def test_each_task_writes_its_figures_to_tensorboard_and_files_with_the_same_items(family: str) -> None:
    recipe, flags, images, tables, (fixed_table, fixed_column) = CASES[family]
    cli = _fit(recipe, flags)
    version = Path(cli.trainer.log_dir)
    for epoch in ("epoch_000", "epoch_001"):
        folder = version / "figures" / epoch
        assert {p.stem for p in folder.glob("*.png")} == images, epoch
        assert {p.stem for p in folder.glob("*.csv")} == tables, epoch
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in folder.glob("*.png"))
    first = _column(version / "figures/epoch_000" / f"{fixed_table}.csv", fixed_column)
    second = _column(version / "figures/epoch_001" / f"{fixed_table}.csv", fixed_column)
    assert first == second and len(set(first)) >= 2

    events = EventAccumulator(str(version), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert {f"figures/{name}" for name in images} <= set(events.Tags()["images"])
    assert {f"tables/{name}/text_summary" for name in tables} <= set(events.Tags()["tensors"])
    for name in images:
        assert len(events.Images(f"figures/{name}")) == 2, name  # one per epoch
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, TaskFigures))
    assert callback.seconds_spent > 0


def test_classification_figures_reach_the_offline_wandb_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = _fit("japanese_vowels_gru.yaml", ["--model.init_args.encoder.init_args.hidden_size", "8"],
               str(REPO / "configs/loggers/wandb.yaml"))
    from lightning.pytorch.loggers import WandbLogger

    run = next(logger for logger in cli.trainer.loggers if isinstance(logger, WandbLogger)).experiment
    run.finish()
    import wandb

    wandb.teardown()  # stops wandb's service, which writes the offline run file: complete before it is read
    runs = list(Path("runs/wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    images = {p.name.split("_")[0] for p in (media / "images" / "figures").glob("*.png")}
    assert {"confusion", "per", "grad"} <= images
    assert list((media / "table" / "tables").glob("val_items_*.table.json"))
    content = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"figures/confusion_matrix" in content and b"tables/val_items" in content


def test_figures_are_drawn_every_n_epochs_and_at_the_last() -> None:
    cli = _fit("japanese_vowels_gru.yaml", ["--model.init_args.encoder.init_args.hidden_size", "8",
                                            "--trainer.max_epochs", "3",
                                            "--trainer.callbacks.init_args.every_n_epochs", "2"])
    drawn = sorted(p.name for p in (Path(cli.trainer.log_dir) / "figures").iterdir())
    assert drawn == ["epoch_001", "epoch_002"]  # the 2nd epoch, and the last


def test_rejects_a_bad_schedule() -> None:
    with pytest.raises(ValueError, match="every_n_epochs"):
        TaskFigures(every_n_epochs=0)
    with pytest.raises(ValueError, match="max_overhead"):
        TaskFigures(max_overhead=0.0)


def test_time_cap_puts_a_drawing_off_until_the_budget_allows_and_always_draws_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callback = TaskFigures(every_n_epochs=2, max_overhead=0.03)
    callback._fit_started, callback.seconds_spent, callback._last_cost = 0.0, 1.0, 1.0
    trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"), current_epoch=1, max_epochs=100, should_stop=False)
    clock = {"now": 50.0}  # 2 s of drawing would be 4% of 50 s
    monkeypatch.setattr("seqlit.callbacks.figures.time.perf_counter", lambda: clock["now"])
    assert not callback._due(trainer)  # scheduled, but over the cap: owed
    trainer.current_epoch, clock["now"] = 2, 60.0  # not a scheduled epoch, still over the cap (2 / 60 > 3%)
    assert not callback._due(trainer)
    trainer.current_epoch, clock["now"] = 4, 70.0  # not scheduled either, but 2 / 70 < 3%: the owed drawing
    assert callback._due(trainer)
    trainer.current_epoch = 6  # neither scheduled nor owed
    assert not callback._due(trainer)
    trainer.current_epoch, clock["now"] = 99, 71.0  # the last epoch, whatever the cap says
    assert callback._due(trainer)
    trainer.current_epoch, trainer.should_stop = 10, True  # early stopping ends the run here
    assert callback._due(trainer)


def test_makers_are_chosen_from_yaml_by_class_path() -> None:
    Path("makers.yaml").write_text("""
trainer:
  callbacks:
    - class_path: seqlit.callbacks.TaskFigures
      init_args:
        every_n_epochs: 3
        makers:
          - {class_path: seqlit.figures.ClassificationFigures}
          - {class_path: seqlit.figures.Seq2SeqFigures, init_args: {beam: false, max_heatmaps: 2}}
""", encoding="utf-8")
    cli = SeqlitCLI(args=["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--config", "makers.yaml"],
                    run=False)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, TaskFigures)]
    assert callback.every_n_epochs == 3
    assert [type(m).__name__ for m in callback.makers or []] == ["ClassificationFigures", "Seq2SeqFigures"]
    assert callback.makers is not None and callback.makers[1].beam is False
