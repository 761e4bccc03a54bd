"""The command line before jsonargparse reads it: LightningCLI's `--optimizer` spelling, and the task a data
module trains when a config names no model."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningCLI


# `--optimizer X` / `--lr_scheduler X` (LightningCLI's spelling) set the task's own optimizer / schedule.
_SHORTHAND = re.compile(r"^--(optimizer|lr_scheduler)(?=$|[.=])")


def rewrite_shorthands(args: list[str]) -> list[str]:
    """`--optimizer SGD --optimizer.lr 20` -> `--model.init_args.optimizer SGD --model.init_args.optimizer.lr 20`."""
    return [_SHORTHAND.sub(r"--model.init_args.\1", arg) if isinstance(arg, str) else arg for arg in args]


def with_default_model(args: list[str], subcommands: Iterable[str] | None = None) -> list[str]:
    """`fit --config my.yaml` whose files and flags name a data module but no model class: `--model <the data
    module's default_task>` is put right after the subcommand, so a config's own model settings still apply on
    top. Anything else is returned unchanged (no data module named: jsonargparse's "model is required")."""
    names = set(LightningCLI.subcommands() if subcommands is None else subcommands)
    if not args or not isinstance(args[0], str) or args[0] not in names:
        return args
    data_class, model_named = None, False
    for index, arg in enumerate(args[1:], start=1):
        if not isinstance(arg, str):
            continue
        key, has_value, inline_value = arg.partition("=")
        value = inline_value if has_value else (args[index + 1] if index + 1 < len(args) else None)
        if key == "--config" and isinstance(value, str):
            settings = _read_yaml(Path(value))
            model_named = model_named or _names_class(settings.get("model"))
            data = settings.get("data")
            data_class = (data if isinstance(data, str) else data.get("class_path") if isinstance(data, dict)
                          else None) or data_class
        elif key in ("--model", "--model.class_path"):
            model_named = True
        elif key in ("--data", "--data.class_path") and isinstance(value, str):
            data_class = value
    task = None if model_named or data_class is None else _default_task(data_class)
    return args if task is None else [args[0], "--model", task, *args[1:]]


def _read_yaml(path: Path) -> dict[str, Any]:
    """A config file's top-level settings; {} when it is missing or not a mapping (the parser reports those)."""
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _names_class(model: Any) -> bool:
    return isinstance(model, str) or (isinstance(model, dict) and "class_path" in model)


def _default_task(data_class: str) -> str | None:
    """The `default_task` of a data module given by class path (or by its name, for seqlit's own)."""
    for class_path in (data_class, f"seqlit.data.datamodules.{data_class}"):
        module_name, _, class_name = class_path.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            continue
        return getattr(found, "default_task", None)
    return None


def sets_model(path: Path) -> bool:
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(settings, dict) and "model" in settings
