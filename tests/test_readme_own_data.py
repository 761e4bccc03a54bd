"""The README's "Your own data" section, executed as written on the data a new user brings: a CSV of 3 classes,
2 channels, sequences of 20-200 steps whose time restarts at 0, rows shuffled. Every block marked
`<!-- readme-test: own-data-... -->` is run (commands) or compared (config, printed lines)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqlit.cli import default_precision, main

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```(\w+)\n(.*?)```", flags=re.S)
N_TRAIN_SEQUENCES = 15  # few sequences keep the fit short; the README's printed numbers are for this file
MAX_OTHER_LINES = 5  # what a default fit may print besides progress bars, the model summary and result tables


def readme_blocks() -> dict[str, str]:
    """Marked README blocks by marker name (the fenced block right after `<!-- readme-test: NAME -->`)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = {name: body for name, _, body in MARKER.findall(readme)}
    assert len(blocks) == len(MARKER.findall(readme)), "a readme-test marker name is used twice"
    return blocks


def write_user_csv(path: Path, n_sequences: int, seed: int, labels: bool = True) -> None:
    """The issue's data: 3 classes, 2 channels, lengths 20-200, time restarting at 0 per sequence, rows shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(n_sequences):
        length = int(rng.integers(20, 201))
        features = rng.standard_normal((length, 2))  # (T, F)
        rows += [(f"s{seed}_{index:03d}", step, round(features[step, 0], 4), round(features[step, 1], 4),
                  "abc"[index % 3]) for step in range(length)]
    frame = pd.DataFrame(rows, columns=["entity", "time", "f1", "f2", "label"]).sample(frac=1, random_state=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=[] if labels else ["label"]).to_csv(path, index=False)


def command(block: str) -> list[str]:
    """A one-command bash block (backslash continuations joined) as argv, without the leading `seqlit`."""
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[0] == "seqlit", block
    return argv[1:]


def expected_pattern(line: str) -> re.Pattern[str]:
    """A printed line from the README, `…` standing for any text (numbers that vary from run to run)."""
    return re.compile(".*?".join(re.escape(part) for part in line.split("…")))


def run_in_process(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capfd.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capfd.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A user's folder after `seqlit init` and the README's `seqlit fit` (run as a separate process, so the console
    output is what a user sees, warnings included): (folder, what init printed, everything the fit printed)."""
    folder = tmp_path_factory.mktemp("own_data")
    write_user_csv(folder / "data/train.csv", N_TRAIN_SEQUENCES, seed=0)
    write_user_csv(folder / "data/new.csv", 6, seed=1, labels=False)
    blocks = readme_blocks()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    for name in ("own-data-init", "own-data-fit"):
        result = subprocess.run([sys.executable, "-m", "seqlit", *command(blocks[name])], cwd=folder, env=environment,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        if name == "own-data-init":
            init_output = result.stdout
    return folder, init_output, result.stdout + result.stderr


def test_readme_own_data_section_runs_as_written(own_data: tuple[Path, str, str], capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder, init_output, fit_output = own_data
    blocks = readme_blocks()
    monkeypatch.chdir(folder)

    # `seqlit init` prints the README's lines and writes the README's config (below its comment header).
    assert init_output.splitlines() == blocks["own-data-init-output"].splitlines()
    written = (folder / "my.yaml").read_text(encoding="utf-8")
    assert "\n".join(line for line in written.splitlines() if not line.startswith("#")) + "\n" == \
        blocks["own-data-config"]

    # `seqlit fit` prints the README's lines; the run folder holds what the README says.
    expected_fit = blocks["own-data-fit-output"]
    if torch.cuda.is_available():
        expected_fit = expected_fit.replace("cpu, precision 32-true", f"cuda, precision {default_precision()}")
    for line in expected_fit.splitlines():
        assert expected_pattern(line).search(fit_output), (line, fit_output[-3000:])
    run = folder / "runs/my/version_0"
    assert (run / "metrics.csv").is_file() and (run / "config.yaml").is_file()
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard files are not next to metrics.csv"
    assert sorted(p.name for p in (run / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
    assert len(list((run / "checkpoints").glob("best-epoch*-val_loss*.ckpt"))) == 1
    assert not (folder / "runs/lightning_logs").exists()
    last_epoch = pd.read_csv(run / "metrics.csv")["epoch"].max()
    assert last_epoch < 99, "early stopping did not end the run before the 100-epoch cap"

    # `seqlit test` and `seqlit predict` with the run's last.ckpt.
    code, output = run_in_process(command(blocks["own-data-test"]), capfd)
    assert code == 0, output
    assert "test/acc" in output
    code, output = run_in_process(command(blocks["own-data-predict"]), capfd)
    assert code == 0, output
    assert "seqlit: wrote 6 predictions to predictions.csv" in output
    predictions = pd.read_csv(folder / "predictions.csv")
    assert list(predictions.columns) == ["id", "prediction", "p_a", "p_b", "p_c"] and len(predictions) == 6

    # The error examples (here and in "Safe loading", which refuses this run's checkpoint) print the README's line.
    lines = blocks["own-data-errors"].splitlines() + blocks["checkpoint-mismatch"].splitlines()
    for shell_line, expected in zip(lines[::2], lines[1::2]):
        assert shell_line.startswith("$ seqlit ")
        argv = [str(REPO / arg) if arg.startswith("configs/") else arg for arg in command(shell_line[2:])]
        code, output = run_in_process(argv, capfd)
        assert code == 2
        assert [line for line in output.splitlines() if line.startswith("seqlit: error:")] == [expected]


# Console lines that are not seqlit's or Lightning's result tables: progress bars (and their cursor moves), the
# model summary table and the test table.
_BAR = re.compile(r"^(Sanity Checking|Training|Epoch \d+|Validation|Testing|Predicting)\b")
_TABLE = re.compile(
    r"^(\s*\|?\s*Name\s+\|.*|\d+\s+\|.*|-{10,}|─{10,}|\s*Test metric\s+DataLoader.*|\s*test/\w+\s+\S+"
    r"|[\d.]+\s+[KMGT]?\s*(Trainable|Non-trainable|Total) .*|\d+\s+Modules in (train|eval) mode"
    r"|[\d.]+\s+[KMGT]?\s*Total Flops)$"
)


def console_lines(output: str) -> list[str]:
    lines = [line.replace("\x1b[A", "").strip() for line in re.split(r"[\r\n]", output)]
    return [line for line in lines if line and not _BAR.match(line) and not _TABLE.match(line)]


def test_a_default_fit_prints_only_a_few_lines_besides_bars_and_tables(own_data: tuple[Path, str, str]) -> None:
    """seqlit's own lines stay; Lightning's device/seed/tip/checkpoint chatter and known third-party warnings do
    not reach the console."""
    _, _, fit_output = own_data
    lines = console_lines(fit_output)
    assert len(lines) <= MAX_OTHER_LINES, "\n".join(lines)
    for noise in ("Tip:", "GPU available", "Seed set", "LeafSpec", "Warning", "warn", "weights_only",
                  "dirpath has changed", "Restoring states", "logging interval"):
        assert not any(noise in line for line in lines), (noise, lines)
    assert any(line.startswith("seqlit: fit on ") for line in lines), lines
    # What remains: seqlit's own lines (where the run logs, which checkpoint is tested), the padding comparison,
    # and Lightning's note when the epoch cap (not early stopping) ends the fit.
    allowed = ("seqlit: fit on ", "seqlit: stopped early ", "seqlit: testing ", "padding ratio: ",
               "`Trainer.fit` stopped: ")
    assert all(line.startswith(allowed) for line in lines), lines


def test_console_lines_drop_bars_and_tables_only() -> None:
    output = ("seqlit: fit on cpu\r\nEpoch 0:  50%|█████     | 1/2 [00:00<00:00]\r\x1b[A\n  | Name | Type\n"
              "0 | encoder | RNNEncoder\n26.5 K    Trainable params\n15        Modules in train mode\n"
              "───────────────\n       Test metric             DataLoader 0\n"
              "        test/acc            0.5\n"
              "a warning from somewhere\n")
    assert console_lines(output) == ["seqlit: fit on cpu", "a warning from somewhere"]
