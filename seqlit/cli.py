"""`seqlit fit|validate|test|predict --config ...`: LightningCLI with data-derived sizes linked in.

Sizes that come from the data (features, classes, class names, vocabularies) are linked from the instantiated
data module into the model, so configs never repeat them and can never disagree with the data.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import pickle
import re
import signal
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.callbacks.loss_scale import LossScaleMonitor
from seqlit.callbacks.nonfinite_guard import NonFiniteGuard
from seqlit.callbacks.padding_ratio import PaddingRatioMonitor
from seqlit.callbacks.prediction_writer import PredictionWriter
from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.callbacks.safe_checkpointing import SafeCheckpointing
from seqlit.errors import CheckpointMismatchError, SeqlitError


def default_precision() -> str:
    """bf16 autocast where the GPU supports it, fp16 + loss scaling on older GPUs, fp32 on CPU.

    RNN kernels gain little from bf16 on CPU and fp16 autocast there is slow, so CPU stays fp32.
    """
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


TRAINER_DEFAULTS: dict[str, Any] = {
    "gradient_clip_val": 1.0,
    "gradient_clip_algorithm": "norm",
    "default_root_dir": "runs",
    "precision": default_precision(),
}


# Sizes and vocabularies the model takes from the instantiated data module: (data attribute, model argument).
DATA_TO_MODEL_LINKS: tuple[tuple[str, str], ...] = (
    ("n_features", "n_features"),
    ("n_classes", "n_classes"),
    ("classes", "class_names"),
    # Forecasting: horizon and season length come from the data.
    ("horizon", "horizon"),
    ("seasonality", "seasonality"),
    # Seq2seq vocabularies.
    ("source_tokens", "source_tokens"),
    ("target_tokens", "target_tokens"),
    # Language models: the tokenizer fitted on the training text, stored in the checkpoint as data.
    ("tokenizer_state", "tokenizer"),
)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines (GPU available, seeds, tips) and the CLI's in-Python `args` warning off, for
    the subcommands that print their own report (`demo`, `compare`, `doctor`, `audit`); the log levels
    come back afterwards, so a caller in the same process (a notebook, a test session) keeps its own."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a Lightning-internal deprecation
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class SeqlitCLI(LightningCLI):
    """LightningCLI for seqlit tasks: links data sizes, optionally tests the best checkpoint after fit,
    and writes predictions to CSV. A `--ckpt_path` of another model is refused in one line, and the model
    settings LightningCLI takes from a checkpoint over the config's are named."""

    test_verbose: bool = True  # print Lightning's test table after fit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.test_results: list[dict[str, float]] | None = None
        self.fit_metrics: dict[str, float] = {}
        self._config_model: dict[str, Any] | None = None  # the model as configured, before checkpoint settings
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Always-on training hygiene, each configurable under its own key (e.g. `grad_norm:`).
        parser.add_lightning_class_args(GradNormMonitor, "grad_norm")
        parser.add_lightning_class_args(PaddingRatioMonitor, "padding_ratio")
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite_guard")
        parser.add_lightning_class_args(LossScaleMonitor, "loss_scale")
        parser.add_lightning_class_args(RNGStateCheckpoint, "rng_state")
        # Atomic checkpoint writes; SIGTERM / Ctrl+C save a resumable `interrupted.ckpt`.
        parser.add_lightning_class_args(SafeCheckpointing, "safe_checkpointing")
        # jsonargparse skips a link whose source or target the chosen classes lack.
        for source, target in DATA_TO_MODEL_LINKS:
            parser.link_arguments(f"data.{source}", f"model.init_args.{target}", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, evaluate the best checkpoint on the test split (needs a ModelCheckpoint).",
        )
        parser.add_argument(
            "--predictions_path",
            type=str | None,
            default=None,
            help="Where `predict` writes its CSV (default: <log dir>/predictions.csv).",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        self._config_model = self._model_config()
        self._refuse_checkpoint_of_another_model()

    def before_instantiate_classes(self) -> None:
        self._report_settings_from_checkpoint()

    def _model_config(self) -> dict[str, Any] | None:
        """{"class_path": ..., "init_args": {...}} of the subcommand's model, as parsed (None without one)."""
        subcommand = self.config.get("subcommand")
        model = self.config.get(subcommand, {}).get("model") if subcommand else None
        if model is None or not hasattr(model, "class_path"):
            return None
        init_args = model.get("init_args")
        return {"class_path": model.class_path, "init_args": dict(vars(init_args)) if init_args else {}}

    def _checkpoint_file(self) -> Path | None:
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        return Path(path) if path and Path(path).is_file() else None

    def _refuse_checkpoint_of_another_model(self) -> None:
        """With `--ckpt_path <file>` LightningCLI rebuilds the model from the checkpoint's stored settings,
        class included: a checkpoint of another task would replace the config's model outright and fail later
        with a misleading message. Refuse it here, naming both models."""
        path, config = self._checkpoint_file(), self._config_model
        if path is None or config is None:
            return
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
        except pickle.UnpicklingError as error:
            first_line = str(error).strip().splitlines()[0]
            raise SeqlitError(
                f"the checkpoint {path} holds pickled Python objects and cannot be loaded safely "
                f"(torch.load with weights_only=True: {first_line}). seqlit writes plain-data checkpoints; load a "
                "file from elsewhere only if you trust it (torch.load(..., weights_only=False) in Python)."
            ) from None
        saved_class = saved.get("_class_path")
        if saved_class and saved_class != config["class_path"]:
            raise CheckpointMismatchError(
                f"the checkpoint {path} is for another model: {_other_class(saved_class, config['class_path'])}. "
                "Fix: use the config the checkpoint was trained with (the config.yaml saved in its run's log folder)."
            )

    def _report_settings_from_checkpoint(self) -> None:
        """One line naming the model settings LightningCLI took from the checkpoint over the config's (the
        checkpoint's architecture must win for its weights to fit; overrides given for other settings are lost
        too, which the line makes visible)."""
        before, after = self._config_model, self._model_config()
        if before is None or after is None or self._checkpoint_file() is None:
            return
        linked = {target for _, target in DATA_TO_MODEL_LINKS}  # set from the data at instantiation anyway
        replaced = [
            f"{key}={after['init_args'][key]!r} (config: {value!r})"
            for key, value in before["init_args"].items()
            if key not in linked and key in after["init_args"] and after["init_args"][key] != value
        ]
        if replaced:
            print(f"seqlit: model settings from the checkpoint replace the config's: {', '.join(replaced)}",
                  file=sys.stderr)

    def before_fit(self) -> None:
        self._resolve_last_checkpoint()

    def before_validate(self) -> None:
        self._resolve_last_checkpoint()

    def before_test(self) -> None:
        self._resolve_last_checkpoint()

    def after_fit(self) -> None:
        self.fit_metrics = {key: float(value) for key, value in self.trainer.callback_metrics.items()}
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        # The first ModelCheckpoint is the one that tracks the best validation score.
        best_path = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        self.test_results = self.trainer.test(
            self.model, datamodule=self.datamodule, ckpt_path=best_path, verbose=self.test_verbose
        )

    def before_predict(self) -> None:
        self._resolve_last_checkpoint()
        path = self.config["predict"].get("predictions_path")
        if path is None:
            path = str(Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.csv")
        self.trainer.callbacks.append(PredictionWriter(path))


    # The trainer's entry points, run by LightningCLI in place of `trainer.<subcommand>` when defined here.
    def fit(self, **kwargs: Any) -> Any:
        return self._explaining_checkpoint_mismatch(self.trainer.fit, kwargs)

    def validate(self, **kwargs: Any) -> Any:
        return self._explaining_checkpoint_mismatch(self.trainer.validate, kwargs)

    def test(self, **kwargs: Any) -> Any:
        return self._explaining_checkpoint_mismatch(self.trainer.test, kwargs)

    def predict(self, **kwargs: Any) -> Any:
        return self._explaining_checkpoint_mismatch(self.trainer.predict, kwargs)

    def _explaining_checkpoint_mismatch(self, run: Any, kwargs: dict[str, Any]) -> Any:
        """Runs `run(**kwargs)`; a checkpoint whose weights do not fit the model becomes a CheckpointMismatchError.

        The tasks and data modules refuse checkpoints with other classes or vocabularies themselves; what is left
        is a checkpoint of another model (another task, cell or size), which torch reports as a long
        "Error(s) in loading state_dict" traceback.
        """
        try:
            return run(**kwargs)
        except RuntimeError as error:
            if "Error(s) in loading state_dict" not in str(error) or not kwargs.get("ckpt_path"):
                raise
            raise CheckpointMismatchError(_describe_model_mismatch(str(kwargs["ckpt_path"]), self.model)) from None

    def _resolve_last_checkpoint(self) -> None:
        """`--ckpt_path last` means the newest `last*.ckpt` (or interruption checkpoint) of this run name,
        across versions.

        Lightning looks for "last" only in the *new* run's checkpoint folder, which with versioned
        log folders is always empty, so it would silently start from scratch.
        """
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        roots = [Path(logger.root_dir) for logger in self.trainer.loggers if getattr(logger, "root_dir", None)]
        roots.append(Path(self.trainer.default_root_dir))
        patterns = ["last*.ckpt"]
        patterns += [c.filename for c in self.trainer.callbacks if isinstance(c, SafeCheckpointing)]
        found = [
            path
            for root in roots if root.exists()
            for pattern in patterns
            for path in root.glob(f"**/checkpoints/{pattern}")
        ]
        if found:
            newest = max(found, key=lambda path: path.stat().st_mtime)
            print(f"seqlit: --ckpt_path last -> {newest}", file=sys.stderr)
            config["ckpt_path"] = str(newest)


def main(args: list[str] | None = None) -> None:
    """Console entry point; user errors print one clear message instead of a traceback.

    `seqlit compare ...`, `seqlit doctor ...` and `seqlit audit ...` are seqlit's own subcommands
    (`seqlit.compare`, `seqlit.doctor`, `seqlit.audit`); the rest are LightningCLI's. A fit stopped by
    SIGTERM exits with 143 (128 + SIGTERM, as if killed) rather than 0, so schedulers do not count it as done.
    """
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["compare"]:
            from seqlit.compare import main as compare

            raise SystemExit(compare(argv[1:]))
        if argv[:1] == ["doctor"]:
            from seqlit.doctor import main as doctor

            raise SystemExit(doctor(argv[1:]))
        if argv[:1] == ["audit"]:
            from seqlit.audit import main as audit

            raise SystemExit(audit(argv[1:]))
        SeqlitCLI(args=args, parser_kwargs={"exit_on_error": False})
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except ArgumentError as error:
        print(f"seqlit: error: {_explain_argument_error(str(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    except SeqlitError as error:
        print(f"seqlit: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError as error:
        print(f"seqlit: error: file not found: {error.filename or error}", file=sys.stderr)
        raise SystemExit(2) from None


def _other_class(saved_class: str, built_class: str) -> str:
    """"it holds a Forecaster (seqlit.tasks.forecaster.Forecaster) but this config builds a SequenceClassifier"."""
    return (f"it holds a {saved_class.rsplit('.', 1)[-1]} ({saved_class}) but this config builds a "
            f"{built_class.rsplit('.', 1)[-1]}")


def _describe_model_mismatch(checkpoint_path: str, model: torch.nn.Module) -> str:
    """What differs between a checkpoint and the model a config builds: class, settings, weights; and the fix."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    saved = dict(checkpoint.get("hyper_parameters") or {})
    current = dict(getattr(model, "hparams", {}))
    this_class = f"{type(model).__module__}.{type(model).__qualname__}"
    saved_class = saved.pop("_class_path", None)
    parts = []
    if saved_class and saved_class != this_class:
        parts.append(_other_class(saved_class, this_class))
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


def _explain_argument_error(message: str) -> str:
    """Turns jsonargparse's 'Option X is not accepted' into the closest valid option names."""
    match = re.search(r"class_path '([\w.]+)'.*?Option '(\w+)' is not accepted", message, flags=re.S)
    if match is None:
        return message.strip()
    class_path, option = match.groups()
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return message.strip()
    valid = sorted(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs"))
    close = difflib.get_close_matches(option, valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{class_name} has no option {option!r}.{hint} Valid options: {', '.join(valid)}."

if __name__ == "__main__":
    main()
