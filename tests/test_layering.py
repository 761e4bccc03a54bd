"""Enforces DESIGN.md's import rules: what each layer of seqlit may import."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seqlit"

# layer -> seqlit layers it may import (besides itself); `types`, `errors`, `parts` (building parts from
# class_path specs) and `padding` (padding statistics: data, callbacks, doctor and audit report the same
# numbers) and `validation` (range checks of settings) are leaves all may use.
LEAVES = {"types", "errors", "parts", "padding", "validation"}
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "validation": {"errors"},
    "parts": set(),
    "distributed": set(),
    "padding": set(),
    "schedules": LEAVES,
    "data": LEAVES,
    "nn": LEAVES,
    "metrics": LEAVES,
    "tasks": LEAVES | {"nn", "metrics", "schedules", "distributed"},
    "callbacks": LEAVES | {"distributed", "figures"},
    "figures": LEAVES | {"metrics"},
    # The CLI sits on top: it may import every layer; nothing imports it but the entry points below.
    "cli": LEAVES | {"schedules", "data", "nn", "metrics", "tasks", "callbacks", "compare", "doctor", "audit",
                     "distributed", "report", "figures"},
    "doctor": LEAVES | {"data", "nn", "callbacks"},
    "audit": LEAVES | {"data", "doctor"},
    "compare": LEAVES | {"plots", "compare_report"},
    "compare_report": LEAVES | {"plots"},
    "demo": LEAVES | {"cli"},
    "__main__": {"cli"},  # `python -m seqlit`
    "plots": LEAVES | {"tasks"},
    "report": LEAVES | {"figures"},
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


def violations(path: Path, layer: str) -> list[str]:
    """What `path`, a module of `layer`, imports against the rules (empty when it keeps them)."""
    if layer not in ALLOWED:
        return [f"{path}: layer {layer!r} has no rule in tests/test_layering.py; add one"]
    found = []
    for name in _imports(path):
        root = name.split(".")[0]
        if root == "seqlit":
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else ""
            if not (target == layer or target in ALLOWED[layer] or name in ALLOWED_MODULES.get(layer, set())):
                found.append(f"{path} imports {name}: {layer} may not import {target}")
        if root in FORBIDDEN_THIRD_PARTY.get(layer, set()):
            found.append(f"{path} imports {name}, forbidden in {layer}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_respects_layering(path: Path) -> None:
    assert violations(path, _layer(path)) == []


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from seqlit.tasks.classifier import SequenceClassifier\nimport lightning\nfrom seqlit.cli import main\n")
    found = violations(bad, "nn")
    assert any("nn may not import tasks" in line for line in found)
    assert any("imports lightning, forbidden in nn" in line for line in found)
    assert any("nn may not import cli" in line for line in found)
    assert violations(bad, "cli") == []  # the CLI may import everything
    assert any("compare may not import cli" in line for line in violations(bad, "compare"))


def test_no_layer_below_the_cli_imports_it() -> None:
    """compare, doctor and audit are subcommands the CLI registers; importing the CLI back would be a cycle."""
    for layer, allowed in ALLOWED.items():
        if layer not in ("cli", "demo", "__main__"):
            assert "cli" not in allowed, f"{layer} may import cli: an import cycle"
