"""`seqlit report RUN_DIR`: one self-contained HTML page of a finished run (sections, inlined PNGs, nothing
loaded from the network), and (browser marker) what headless Chromium draws of it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlit.cli import SeqlitCLI, main
from seqlit.report import write_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("Test metrics", "Curves", "Gradient norms by layer", "Padding and throughput",
            "Task figures of the last validation", "Resolved config")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-epoch JapaneseVowels run with the base config's callbacks (figures at the last epoch) and test
    metrics."""
    folder = tmp_path_factory.mktemp("report")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # logs and checkpoints go to folder/runs
        torch.set_num_threads(1)
        cli = SeqlitCLI(args=[
            "fit", "--config", str(REPO / "configs/japanese_vowels_gru.yaml"),
            "--model.init_args.encoder.init_args.hidden_size", "8",
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--run_name", "jv",
        ])
    torch.set_num_threads(threads)
    return folder / cli.trainer.log_dir


def test_report_has_every_section_inlined_images_and_no_network(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["report", str(run_dir)])
    assert f"wrote {run_dir / 'report.html'}" in capsys.readouterr().out
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page, section
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) >= 6 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page  # no external resource, nor a link out
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert "test/acc" in page and "confusion_matrix" in page and "val_items" in page
    assert "class_path: seqlit.tasks.SequenceClassifier" in page  # the resolved config


def test_report_of_a_folder_without_run_files_is_one_clear_error(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "neither metrics.csv nor config.yaml" in capsys.readouterr().err


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_headless_chromium_draws_the_report(run_dir: Path, tmp_path: Path) -> None:
    page = write_report(run_dir, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1280,2000", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from matplotlib.image import imread

    pixels = imread(shot)  # (H, W, C) floats in [0, 1]
    assert pixels.shape[:2] == (2000, 1280)
    grey = pixels[..., :3].mean(axis=-1)  # (H, W)
    assert (grey < 0.5).mean() > 0.01  # text and plot lines, not a blank white page
    assert len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50  # plots in colour


def test_the_readme_report_commands_run(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Loggers, validation figures and `seqlit report`\n", 1)[1].split("\n### ", 1)[0]
    commands = [line.split("#")[0].split() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if line.startswith("seqlit report")]
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path)
    for command in commands:
        main([str(run_dir) if arg == "runs/japanese_vowels_gru/version_0" else arg for arg in command[1:]])
    assert (run_dir / "report.html").is_file() and (tmp_path / "jv.html").is_file()
