"""`seqlit fit|validate|test|predict --config ...`: LightningCLI with data-derived sizes linked in.

Sizes that come from the data (features, classes, class names, vocabularies) are linked from the instantiated
data module into the model, so configs never repeat them and can never disagree with the data.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.callbacks.loss_scale import LossScaleMonitor
from seqlit.callbacks.nonfinite_guard import NonFiniteGuard
from seqlit.callbacks.padding_ratio import PaddingRatioMonitor
from seqlit.callbacks.prediction_writer import PredictionWriter
from seqlit.callbacks.rng_state import RNGStateCheckpoint
from seqlit.errors import SeqlitError



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


class SeqlitCLI(LightningCLI):
    """LightningCLI for seqlit tasks: links data sizes, optionally tests the best checkpoint after fit,
    and writes predictions to CSV."""

    test_verbose: bool = True  # print Lightning's test table after fit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.test_results: list[dict[str, float]] | None = None
        self.fit_metrics: dict[str, float] = {}
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
        parser.link_arguments("data.n_features", "model.init_args.n_features", apply_on="instantiate")
        parser.link_arguments("data.n_classes", "model.init_args.n_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.init_args.class_names", apply_on="instantiate")
        # Forecasting: horizon and season length come from the data.
        parser.link_arguments("data.horizon", "model.init_args.horizon", apply_on="instantiate")
        parser.link_arguments("data.seasonality", "model.init_args.seasonality", apply_on="instantiate")
        # Seq2seq vocabularies; jsonargparse skips a link whose source or target the chosen classes lack.
        parser.link_arguments("data.source_tokens", "model.init_args.source_tokens", apply_on="instantiate")
        parser.link_arguments("data.target_tokens", "model.init_args.target_tokens", apply_on="instantiate")
        # Language models: the tokenizer fitted on the training text, stored in the checkpoint as data.
        parser.link_arguments("data.tokenizer_state", "model.init_args.tokenizer", apply_on="instantiate")
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


    def _resolve_last_checkpoint(self) -> None:
        """`--ckpt_path last` means the newest `last*.ckpt` of this run name, across versions.

        Lightning looks for "last" only in the *new* run's checkpoint folder, which with versioned
        log folders is always empty, so it would silently start from scratch.
        """
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        roots = [Path(logger.root_dir) for logger in self.trainer.loggers if getattr(logger, "root_dir", None)]
        roots.append(Path(self.trainer.default_root_dir))
        found = [path for root in roots if root.exists() for path in root.glob("**/checkpoints/last*.ckpt")]
        if found:
            newest = max(found, key=lambda path: path.stat().st_mtime)
            print(f"seqlit: --ckpt_path last -> {newest}", file=sys.stderr)
            config["ckpt_path"] = str(newest)


def main(args: list[str] | None = None) -> None:
    """Console entry point; user errors print one clear message instead of a traceback.

    `seqlit compare ...` and `seqlit doctor ...` are seqlit's own subcommands (`seqlit.compare`,
    `seqlit.doctor`); the rest are LightningCLI's.
    """
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["compare"]:
            from seqlit.compare import main as compare

            raise SystemExit(compare(argv[1:]))
        if argv[:1] == ["doctor"]:
            from seqlit.doctor import main as doctor

            raise SystemExit(doctor(argv[1:]))
        SeqlitCLI(args=args, parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        print(f"seqlit: error: {_explain_argument_error(str(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    except SeqlitError as error:
        print(f"seqlit: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError as error:
        print(f"seqlit: error: file not found: {error.filename or error}", file=sys.stderr)
        raise SystemExit(2) from None


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
