"""The notebooks in notebooks/ are committed clean: no outputs, no execution counts, the python3 kernel.

Executing them is `pytest --nbmake notebooks` (part of `make test`); this only reads the JSON, so it is fast.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("quickstart.ipynb", "gru_vs_lstm.ipynb", "seq2seq_attention.ipynb")


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_expected_notebooks_exist() -> None:
    missing = [name for name in EXPECTED if not (NOTEBOOKS / name).is_file()]
    assert not missing, f"missing notebooks in {NOTEBOOKS}: {missing}"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda path: path.name)
def test_notebook_is_stripped_and_uses_python3(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook.get("nbformat") == 4, f"{path.name}: not an nbformat 4 notebook"
    kernelspec = notebook.get("metadata", {}).get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{path.name}: kernelspec is {kernelspec!r}, expected name python3"
    assert kernelspec.get("language", "python") == "python", f"{path.name}: kernelspec language {kernelspec!r}"
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells, f"{path.name} has no code cells"
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or execution counts; strip them before committing "
        "(Jupyter's 'Clear All Outputs' before saving, or `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`)"
    )
    attachments = [index for index, cell in enumerate(notebook["cells"]) if cell.get("attachments")]
    assert not attachments, f"{path.name}: cells {attachments} carry attachments"
