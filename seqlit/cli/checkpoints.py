"""Checkpoints given to the CLI: refuse another model's in one line, name the settings a checkpoint replaces,
and find `--ckpt_path last`."""

from __future__ import annotations

import glob
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from seqlit.callbacks.safe_checkpointing import SafeCheckpointing
from seqlit.errors import CheckpointMismatchError, SeqlitError


# `--ckpt_path` values Lightning resolves itself rather than reading a file.
SPECIAL_CHECKPOINTS = frozenset({"best", "last", "hpc", "registry"})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The one way seqlit opens a checkpoint file: `torch.load(weights_only=True)`, with every unreadable or
    foreign file (missing, a folder, empty, truncated, text, a plain pickle, pickled objects, not a dict)
    turned into one SeqlitError line that names the file and what to do."""
    path = Path(path)
    fix = "Fix: pass a .ckpt file written by seqlit fit (runs/<name>/version_N/checkpoints/), or --ckpt_path last."
    if not path.exists():
        raise SeqlitError(f"the checkpoint {path} does not exist. {fix}")
    if path.is_dir():
        raise SeqlitError(f"the checkpoint {path} is a folder, not a file. {fix}")
    if path.stat().st_size == 0:
        raise SeqlitError(f"the checkpoint {path} is empty (0 bytes), e.g. a write that was cut off. {fix}")
    if not zipfile.is_zipfile(path):
        raise SeqlitError(
            f"the checkpoint {path} is not a PyTorch checkpoint (torch.save's zip format): it is truncated, or "
            f"another kind of file ({_first_bytes(path)}). {fix}"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise SeqlitError(
            f"the checkpoint {path} holds pickled Python objects and cannot be loaded safely "
            f"(torch.load with weights_only=True: {first_line}). seqlit writes plain-data checkpoints; load a "
            "file from elsewhere only if you trust it (torch.load(..., weights_only=False) in Python)."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split())[:160]
        raise SeqlitError(f"the checkpoint {path} is damaged or truncated and cannot be read ({reason}). {fix}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise SeqlitError(f"the checkpoint {path} is a PyTorch file but not a Lightning checkpoint (no state_dict). {fix}")
    return checkpoint


def check_checkpoint_file(path: str | Path | None) -> None:
    """Refuses an unreadable `--ckpt_path` file up front; names Lightning resolves itself and URLs pass."""
    if path is None or str(path) in SPECIAL_CHECKPOINTS or "://" in str(path):
        return
    read_checkpoint(path)


def load_hyperparameters(path: Path) -> dict[str, Any]:
    """The checkpoint's stored hyperparameters, loaded safely (see `read_checkpoint`)."""
    return read_checkpoint(path).get("hyper_parameters") or {}


def _first_bytes(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(8)
    if head.startswith(b"PK"):
        return "a zip archive cut off before its end"
    if head[:1] == b"\x80":
        return "a plain pickle, or an old-format torch.save file"
    return f"it starts with {head!r}"


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


def newest_last_checkpoint(trainer: Trainer) -> Path:
    """The newest `last*.ckpt`, interruption or rolling checkpoint of this config's own experiment: the first
    logger's `<save_dir>/<name>/version_*/checkpoints/` (where Lightning puts checkpoints), plus any
    `dirpath` a checkpoint callback was given. Other experiments in the same `runs/` are never looked at.
    Raises SeqlitError, naming the folders searched, when there is none."""
    folders = experiment_checkpoint_folders(trainer)
    patterns = ["last*.ckpt"]
    patterns += [c.filename for c in trainer.callbacks if isinstance(c, SafeCheckpointing)]
    # a mid-epoch checkpoint under a fixed name (the base's rolling.ckpt) can be newer than last.ckpt
    patterns += [f"{c.filename}.ckpt" for c in trainer.callbacks
                 if isinstance(c, ModelCheckpoint) and c.filename and "{" not in c.filename]
    found = {Path(path) for folder in folders for pattern in patterns for path in glob.glob(f"{folder}/{pattern}")}
    found = {path for path in found if path.is_file()}
    if not found:
        raise SeqlitError(
            f"--ckpt_path last: no checkpoint ({', '.join(dict.fromkeys(patterns))}) in "
            f"{' or '.join(folders)}. Fix: train this config first (seqlit fit), give the --run_name of the run "
            "to continue, or pass --ckpt_path <file>."
        )
    return max(found, key=lambda path: (path.stat().st_mtime, str(path)))


def experiment_checkpoint_folders(trainer: Trainer) -> list[str]:
    """Glob patterns of the folders holding this experiment's checkpoints, every version included."""
    if trainer.loggers:
        first = trainer.loggers[0]
        save_dir = first.save_dir if first.save_dir is not None else trainer.default_root_dir
        folders = [f"{_glob_safe(Path(save_dir) / str(first.name))}/*/checkpoints"]
    else:
        folders = [f"{_glob_safe(Path(trainer.default_root_dir))}/checkpoints"]
    # before `fit` starts, a ModelCheckpoint's dirpath is set only when the config gave one
    given = [c.dirpath for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath is not None]
    return list(dict.fromkeys([*folders, *(_glob_safe(Path(str(d))) for d in given)]))


def _glob_safe(path: Path) -> str:
    """`path` with glob metacharacters escaped, relative paths kept relative (to the working directory)."""
    return glob.escape(str(path))


def other_class(saved_class: str, built_class: str) -> str:
    """"it holds a Forecaster (seqlit.tasks.forecaster.Forecaster) but this config builds a SequenceClassifier"."""
    return (f"it holds a {saved_class.rsplit('.', 1)[-1]} ({saved_class}) but this config builds a "
            f"{built_class.rsplit('.', 1)[-1]}")


def describe_model_mismatch(checkpoint_path: str, model: torch.nn.Module) -> str:
    """What differs between a checkpoint and the model a config builds: class, settings, weights; and the fix."""
    checkpoint = read_checkpoint(checkpoint_path)
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
