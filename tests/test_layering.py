"""Enforces DESIGN.md's import rules: what each layer of seqlit may import."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seqlit"

# layer -> seqlit layers it may import (besides itself); `types`, `errors` and `padding` (padding statistics:
# data, callbacks, doctor and audit report the same numbers) are leaves.
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "distributed": set(),
    "padding": set(),
    "schedules": {"types", "errors"},
    "data": {"types", "errors", "padding"},
    "nn": {"types", "errors"},
    "metrics": {"types", "errors"},
    "tasks": {"types", "errors", "nn", "metrics", "schedules", "distributed"},
    "callbacks": {"types", "errors", "distributed", "padding"},
    "cli": {"types", "errors", "schedules", "data", "nn", "metrics", "tasks", "callbacks", "compare", "doctor",
            "audit", "distributed", "padding"},
    "doctor": {"cli", "types", "errors", "data", "nn", "callbacks", "padding"},
    "audit": {"cli", "types", "errors", "data", "doctor", "padding"},
    "compare": {"cli", "types", "errors", "plots"},
    "demo": {"cli", "types", "errors"},
    "plots": {"types", "errors", "tasks"},
}
# Single modules a layer may import from a layer it otherwise may not. A language model carries its
# tokenizer (plain data in the checkpoint) to encode prompts and decode samples, like HF models do.
ALLOWED_MODULES: dict[str, set[str]] = {
    "tasks": {"seqlit.data.tokenizers"},
}
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "types": {"lightning", "pytorch_lightning", "numpy", "pandas"},
    "padding": {"lightning", "pytorch_lightning", "pandas"},
    "nn": {"lightning", "pytorch_lightning"},
    "schedules": {"lightning", "pytorch_lightning"},
}


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_respects_layering(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"{path}: layer {layer!r} has no rule in tests/test_layering.py; add one"
    for name in _imports(path):
        root = name.split(".")[0]
        if root == "seqlit":
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else ""
            allowed = target == layer or target in ALLOWED[layer] or name in ALLOWED_MODULES.get(layer, set())
            assert allowed, f"{path} imports {name}: {layer} may not import {target}"
        assert root not in FORBIDDEN_THIRD_PARTY.get(layer, set()), f"{path} imports {name}, forbidden in {layer}"


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from seqlit.tasks.classifier import SequenceClassifier\nimport lightning\n")
    names = _imports(bad)
    assert "seqlit.tasks.classifier" in names and "lightning" in names
    assert "tasks" not in ALLOWED["nn"] and "lightning" in FORBIDDEN_THIRD_PARTY["nn"]
