"""The README's "Extending seqlit" example, executed: a cell in the user's own file, trained by YAML alone."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from seqlit.cli import SeqlitCLI

REPO = Path(__file__).resolve().parents[1]


def _section_blocks(title: str) -> dict[str, str]:
    """The fenced code blocks of one README section, by language."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return {language: body for language, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)}


def test_the_readme_cell_example_is_the_shipped_example_and_it_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _section_blocks("Extending seqlit")
    assert blocks["python"] == (REPO / "examples/my_cells.py").read_text(encoding="utf-8")
    assert blocks["yaml"] == (REPO / "examples/indrnn_japanese_vowels.yaml").read_text(encoding="utf-8")
    (tmp_path / "my_cells.py").write_text(blocks["python"], encoding="utf-8")
    (tmp_path / "indrnn_japanese_vowels.yaml").write_text(blocks["yaml"], encoding="utf-8")
    command = shlex.split(blocks["bash"].strip())
    assert command[0] == "seqlit"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # what `seqlit` does for the folder it runs in
    cli = SeqlitCLI(args=[*command[1:], "--trainer.max_epochs", "8", "--trainer.enable_progress_bar", "false"])
    assert type(cli.model.encoder.cells[0]).__module__ == "my_cells"
    assert cli.test_results[0]["test/acc"] > 0.6  # 9 speakers: chance is 0.11
