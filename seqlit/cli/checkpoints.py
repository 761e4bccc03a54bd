"""Checkpoints given to the CLI: refuse another model's in one line, name the settings a checkpoint replaces,
and find `--ckpt_path last`."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from seqlit.callbacks.safe_checkpointing import SafeCheckpointing
from seqlit.errors import CheckpointMismatchError, SeqlitError


def load_hyperparameters(path: Path) -> dict[str, Any]:
    """The checkpoint's stored hyperparameters, loaded safely (weights_only; pickled objects are refused)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise SeqlitError(
            f"the checkpoint {path} holds pickled Python objects and cannot be loaded safely "
            f"(torch.load with weights_only=True: {first_line}). seqlit writes plain-data checkpoints; load a "
            "file from elsewhere only if you trust it (torch.load(..., weights_only=False) in Python)."
        ) from None


def refuse_checkpoint_of_another_model(path: Path | None, config_model: dict[str, Any] | None) -> None:
    """With `--ckpt_path <file>` LightningCLI rebuilds the model from the checkpoint's stored settings, class
    included: a checkpoint of another task would replace the config's model outright and fail later with a
    misleading message. Refuse it here, naming both models."""
    if path is None or config_model is None:
        return
    saved_class = load_hyperparameters(path).get("_class_path")
    if saved_class and saved_class != config_model["class_path"]:
        raise CheckpointMismatchError(
            f"the checkpoint {path} is for another model: {other_class(saved_class, config_model['class_path'])}. "
            "Fix: use the config the checkpoint was trained with (the config.yaml saved in its run's log folder)."
        )


def settings_replaced_by_checkpoint(
    before: dict[str, Any] | None, after: dict[str, Any] | None, path: Path | None, linked: set[str]
) -> list[str]:
    """`key=checkpoint value (config: value)` for every model setting LightningCLI took from the checkpoint over
    the config's (the checkpoint's architecture must win for its weights to fit). Data-linked settings are
    set from the data anyway and left out."""
    if before is None or after is None or path is None:
        return []
    configured = flatten_settings({k: v for k, v in before["init_args"].items() if k not in linked})
    stored = flatten_settings({k: v for k, v in after["init_args"].items() if k not in linked})
    return [
        f"{key}={stored[key]!r} (config: {value!r})"
        for key, value in configured.items()
        if key in stored and stored[key] != value
    ]


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"encoder": {"class_path": C, "init_args": {"hidden_size": 16}}}` -> `{"encoder": "C",
    "encoder.hidden_size": 16}`: parts' settings as dotted keys, so a difference names the setting."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if hasattr(value, "class_path") and not isinstance(value, dict):  # a parsed jsonargparse Namespace
            value = {"class_path": value.class_path, "init_args": dict(vars(value.get("init_args") or {}))}
        if isinstance(value, dict) and "class_path" in value:
            flat[name] = value["class_path"]
            flat |= flatten_settings(dict(value.get("init_args") or {}), f"{name}.")
        else:
            flat[name] = value
    return flat


def newest_last_checkpoint(trainer: Trainer) -> Path | None:
    """The newest `last*.ckpt`, interruption or rolling checkpoint under the run's logger folders (every version)."""
    roots = [Path(logger.root_dir) for logger in trainer.loggers if getattr(logger, "root_dir", None)]
    roots.append(Path(trainer.default_root_dir))
    patterns = ["last*.ckpt"]
    patterns += [c.filename for c in trainer.callbacks if isinstance(c, SafeCheckpointing)]
    # a mid-epoch checkpoint under a fixed name (the base's rolling.ckpt) can be newer than last.ckpt
    patterns += [f"{c.filename}.ckpt" for c in trainer.callbacks
                 if isinstance(c, ModelCheckpoint) and c.filename and "{" not in c.filename]
    found = [
        path
        for root in roots if root.exists()
        for pattern in patterns
        for path in root.glob(f"**/checkpoints/{pattern}")
    ]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def other_class(saved_class: str, built_class: str) -> str:
    """"it holds a Forecaster (seqlit.tasks.forecaster.Forecaster) but this config builds a SequenceClassifier"."""
    return (f"it holds a {saved_class.rsplit('.', 1)[-1]} ({saved_class}) but this config builds a "
            f"{built_class.rsplit('.', 1)[-1]}")


def describe_model_mismatch(checkpoint_path: str, model: torch.nn.Module) -> str:
    """What differs between a checkpoint and the model a config builds: class, settings, weights; and the fix."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    saved = flatten_settings(dict(checkpoint.get("hyper_parameters") or {}))
    current = flatten_settings(dict(getattr(model, "hparams", {})))
    this_class = f"{type(model).__module__}.{type(model).__qualname__}"
    saved_class = saved.pop("_class_path", None)
    parts = []
    if saved_class and saved_class != this_class:
        parts.append(other_class(saved_class, this_class))
    differing = []
    for key in sorted(set(saved) & set(current)):
        if key.startswith("_") or saved[key] == current[key]:
            continue
        if isinstance(saved[key], (list, tuple, dict)) or isinstance(current[key], (list, tuple, dict)):
            differing.append(f"{key} differs")
        else:
            differing.append(f"{key}={saved[key]!r} (this config: {current[key]!r})")
    if differing:
        parts.append(f"it was trained with {', '.join(differing[:6])}{' ...' if len(differing) > 6 else ''}")
    weights, mine = checkpoint.get("state_dict", {}), model.state_dict()
    missing, unexpected = sorted(set(mine) - set(weights)), sorted(set(weights) - set(mine))
    resized = [k for k in sorted(set(mine) & set(weights)) if tuple(mine[k].shape) != tuple(weights[k].shape)]
    counts = [f"{len(v)} {what}" for v, what in ((missing, "missing"), (unexpected, "unexpected"),
                                                 (resized, "of another shape")) if v]
    if counts:
        example = (f"{resized[0]} is {tuple(weights[resized[0]].shape)} in the checkpoint, "
                   f"{tuple(mine[resized[0]].shape)} here" if resized else (missing or unexpected)[0])
        parts.append(f"its weights do not fit ({', '.join(counts)}; e.g. {example})")
    return (f"the checkpoint {checkpoint_path} is for another model: {'; '.join(parts) or 'its weights do not fit'}. "
            "Fix: use the config the checkpoint was trained with (the config.yaml saved in its run's log folder), "
            "or leave out --ckpt_path to train a new model.")
