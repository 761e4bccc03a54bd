"""`SeqlitCLI`: LightningCLI with seqlit's shared base config, data sizes linked into the model, parts and
optimisers by `class_path`, and the subcommands `audit`, `doctor` and `compare` beside Lightning's four."""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from seqlit.audit import run_audit
from seqlit.callbacks.prediction_writer import PredictionWriter
from seqlit.cli import init
from seqlit.cli.arguments import rewrite_shorthands, sets_model, with_default_model
from seqlit.cli.checkpoints import (
    check_checkpoint_file,
    describe_model_mismatch,
    newest_last_checkpoint,
    refuse_checkpoint_of_another_model,
    settings_replaced_by_checkpoint,
)
from seqlit.cli.save_config import SaveConfigToLoggers
from seqlit.cli.trainer_setup import (
    drop_unset_wandb_anonymous,
    remove_set_up_only_folders,
    say_weights_only_on_every_save,
    share_version_folder,
)
from seqlit.compare import add_compare_arguments, run_compare
from seqlit.doctor import diagnose
from seqlit.errors import CheckpointMismatchError, SeqlitError

# Imported before any parser is built: jsonargparse's "known subclasses" (in `seqlit fit --help`) lists the
# subclasses Python has seen, so seqlit's tasks and data modules must be imported to be listed.
import seqlit.data.datamodules  # noqa: E402, F401  isort: skip
import seqlit.tasks  # noqa: E402, F401  isort: skip

BASE_CONFIG = Path(__file__).with_name("base.yaml")

# Sizes and vocabularies the model takes from the instantiated data module: (data attribute, model argument).
DATA_TO_MODEL_LINKS: tuple[tuple[str, str], ...] = (
    ("n_features", "n_features"),
    ("n_classes", "n_classes"),
    ("classes", "class_names"),
    ("longest_sequence", "longest_sequence"),  # classification: sizes a front-end's stride
    # Forecasting: horizon and season length come from the data.
    ("horizon", "horizon"),
    ("seasonality", "seasonality"),
    # Seq2seq vocabularies and how texts split into symbols.
    ("source_tokens", "source_tokens"),
    ("target_tokens", "target_tokens"),
    ("source_unit", "source_unit"),
    ("target_unit", "target_unit"),
    ("stress_marked", "stress_marked"),
    # Language models: the tokenizer fitted on the training text, stored in the checkpoint as data.
    ("tokenizer_state", "tokenizer"),
)

REPORT_DESCRIPTION = "Write one self-contained HTML page for a finished run (seqlit report RUN_DIR)."

# seqlit's own subcommands: name -> one-line description (shown by `seqlit --help`).
SEQLIT_SUBCOMMANDS: dict[str, str] = {
    "audit": "Check a config's data splits for leakage and summarise them, without training.",
    "doctor": "Show the kernels, padding, precision and batch a run would use, without training.",
    "compare": "Compare GRU/LSTM (uni/bidirectional) variants at a matched parameter count over several seeds.",
}


def default_precision(accelerator: Any = None) -> str:
    """bf16 autocast on GPUs that support it (compute capability 8+), fp16 + loss scaling on older GPUs,
    fp32 on CPU. Called when the trainer is built, never at import: asking CUDA anything creates a context,
    and this asks only about this process's own device (LOCAL_RANK), never device 0 by default."""
    if str(accelerator) == "cpu" or not torch.cuda.is_available():
        return "32-true"
    device = int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count())
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16-mixed" if major >= 8 else "16-mixed"


class SeqlitCLI(LightningCLI):
    """LightningCLI for seqlit tasks.

    Every run starts from `seqlit/cli/base.yaml` (trainer defaults, checkpoints, early stopping, loggers and
    seqlit's callbacks as ordinary `trainer.callbacks`); data-derived sizes are linked into the model;
    `--optimizer`/`--lr_scheduler` set the task's own optimizer and schedule (its parameter groups and
    total-steps schedule stay); `fit` can test its best checkpoint and `predict` writes CSV. A `--ckpt_path`
    of another model is refused in one line.
    """

    test_verbose: bool = True  # print Lightning's test table after fit
    announce: bool = True  # print seqlit's own lines: where a fit runs and logs, which checkpoint it tests

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.test_results: list[dict[str, float]] | None = None
        self.fit_metrics: dict[str, float] = {}
        self.exit_code = 0
        self._config_model: dict[str, Any] | None = None  # the model as configured, before checkpoint settings
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", SaveConfigToLoggers)  # config.yaml, and the W&B run's config
        kwargs.setdefault("auto_configure_optimizers", False)  # tasks take optimizer factories themselves
        kwargs["parser_kwargs"] = _with_base_config(kwargs.get("parser_kwargs"), run=kwargs.get("run", True))
        super().__init__(*args, **kwargs)

    # ---- parser ------------------------------------------------------------------------------------
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), **{name: set() for name in SEQLIT_SUBCOMMANDS}}

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's four subcommands (with their Trainer method's arguments), then seqlit's own, each with the
        full config parser and its own `--help`."""
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        subcommands_action = parser.add_subcommands()
        trainer_class = self.trainer_class if isinstance(self.trainer_class, type) else Trainer
        for name in LightningCLI.subcommands():
            description = _short_description(getattr(trainer_class, name))
            subparser = self._prepare_subcommand_parser(
                trainer_class, name, **{"description": description, **kwargs.get(name, {})}
            )
            # Loading a --ckpt_path (and Lightning's SLURM requeue checkpoint) says weights_only explicitly:
            # seqlit's checkpoints are plain data; `--weights_only false` opens a trusted file of another kind.
            if any(action.dest == "weights_only" for action in subparser._actions):  # Lightning >= 2.6
                subparser.set_defaults(weights_only=True)
            self._subcommand_parsers[name] = subparser
            subcommands_action.add_subcommand(name, subparser, help=description)
        for name, description in SEQLIT_SUBCOMMANDS.items():
            subparser = self.init_parser(**{"description": description, **kwargs.get(name, {})})
            self._add_arguments(subparser)
            if name == "compare":
                add_compare_arguments(subparser)
            self._subcommand_method_arguments[name] = []
            self._subcommand_parsers[name] = subparser
            subcommands_action.add_subcommand(name, subparser, help=description)
        # `seqlit init` is run by `seqlit.cli.main` before this parser exists; it is listed here for `seqlit --help`.
        subcommands_action.add_subcommand("init", LightningArgumentParser(description=init.DESCRIPTION),
                                          help=init.DESCRIPTION)
        # `seqlit report RUN_DIR` too: it reads a finished run's folder (seqlit.report), listed here only.
        subcommands_action.add_subcommand("report", LightningArgumentParser(description=REPORT_DESCRIPTION),
                                          help=REPORT_DESCRIPTION)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # jsonargparse skips a link whose source or target the chosen classes lack.
        for source, target in DATA_TO_MODEL_LINKS:
            parser.link_arguments(f"data.{source}", f"model.init_args.{target}", apply_on="instantiate")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="Log folder name under runs/ (default: the name of the last --config file that sets the model).")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="After `fit`, evaluate the best checkpoint on the test split (needs a ModelCheckpoint).")
        parser.add_argument("--predictions_path", type=str | None, default=None,
                            help="Where `predict` writes its CSV (default: <log dir>/predictions.csv).")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """LightningCLI's parsing, with `--optimizer`/`--lr_scheduler` pointed at the model's own settings."""
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
        else:
            argv = rewrite_shorthands(sys.argv[1:] if args is None else list(args))
            self.config = parser.parse_args(with_default_model(argv, self.subcommands()))
        self._config_model = self._model_config()
        check_checkpoint_file(self._subconfig().get("ckpt_path"))
        refuse_checkpoint_of_another_model(self._checkpoint_file(), self._config_model)

    # ---- instantiation -----------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        replaced = settings_replaced_by_checkpoint(
            self._config_model, self._model_config(), self._checkpoint_file(), {t for _, t in DATA_TO_MODEL_LINKS}
        )
        if replaced:
            print(f"seqlit: model settings from the checkpoint replace the config's: {', '.join(replaced)}",
                  file=sys.stderr)
        self._name_loggers()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("precision") is None and "precision" not in kwargs:
            kwargs["precision"] = default_precision(trainer_config.get("accelerator"))
        trainer = super().instantiate_trainer(**kwargs)
        share_version_folder(trainer)
        drop_unset_wandb_anonymous(trainer)
        say_weights_only_on_every_save(trainer)
        return trainer

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        """Reconciles the base's callbacks with the trainer's own switches (`logger: false`,
        `enable_progress_bar: false`), which Lightning would otherwise refuse."""
        listed = list(config.get("callbacks") or [])
        if config.get("logger") is False:
            # Lightning refuses a LearningRateMonitor without a logger; with logging off it has nothing to do.
            listed = [c for c in listed if not isinstance(c, LearningRateMonitor)]
        if config.get("enable_progress_bar") is False:
            # ... and a progress bar callback with the bar switched off: the switch wins.
            listed = [c for c in listed if not isinstance(c, ProgressBar)]
        config["callbacks"] = listed
        return super()._instantiate_trainer(config, callbacks)

    def _name_loggers(self) -> None:
        """Loggers configured with `name: null` get the run's name and `save_dir: null` the trainer's root."""
        config = self._subconfig()
        loggers = config.get("trainer", {}).get("logger")
        if not isinstance(loggers, list):
            return
        run_name = config.get("run_name") or self._default_run_name(config)
        root = config.get("trainer", {}).get("default_root_dir") or "runs"
        for logger in loggers:
            init_args = getattr(logger, "init_args", None)
            if init_args is None:
                continue
            if "name" in init_args and init_args.get("name") is None:
                init_args["name"] = run_name
            if "save_dir" in init_args and init_args.get("save_dir") is None:
                init_args["save_dir"] = str(root)
            if str(getattr(logger, "class_path", "")).endswith("WandbLogger") and init_args.get("save_dir"):
                # wandb's service process outlives a run and resolves a relative folder against its own working
                # directory, the one of the first run in this process: a later run from another folder (a
                # notebook, a test session) would write its .wandb file there.
                init_args["save_dir"] = str(Path(init_args["save_dir"]).resolve())

    def _default_run_name(self, config: Any) -> str:
        """The name of the last --config file that sets the model (overlays such as a logger or cluster file
        do not name the run); without one, the task's name in snake case."""
        paths = [Path(str(path)) for path in (config.get("config") or []) if path is not None]
        recipes = [path for path in paths if sets_model(path)]
        if recipes or paths:
            return (recipes or paths)[-1].stem
        model = self._model_config()
        class_name = model["class_path"].rsplit(".", 1)[-1] if model else "seqlit"
        return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()

    # ---- checkpoints -------------------------------------------------------------------------------
    def _subconfig(self) -> Any:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def _model_config(self) -> dict[str, Any] | None:
        """{"class_path": ..., "init_args": {...}} of the model, as parsed (None without one)."""
        model = self._subconfig().get("model")
        if model is None or not hasattr(model, "class_path"):
            return None
        init_args = model.get("init_args")
        return {"class_path": model.class_path, "init_args": dict(vars(init_args)) if init_args else {}}

    def _checkpoint_file(self) -> Path | None:
        path = self._subconfig().get("ckpt_path")
        return Path(path) if path and Path(path).is_file() else None

    def _set_up_data(self, stage: str) -> None:
        """Sets the data up (reading, splitting, auditing) before the trainer starts: Lightning creates the
        loggers' folders and files first, so data that is refused would otherwise leave an empty run behind.
        seqlit's data modules build each split once, so the trainer's own `setup` call costs nothing."""
        if self.datamodule is not None:
            self.datamodule.setup(stage)

    def _resolve_last_checkpoint(self) -> None:
        """`--ckpt_path last` means the newest `last*.ckpt` (or interruption checkpoint) of this config's own
        experiment (`runs/<name>/version_*/checkpoints/`), across versions: Lightning looks for "last" only in
        the *new* run's (empty) checkpoint folder. No such checkpoint is an error, not a fresh start."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        newest = newest_last_checkpoint(self.trainer)
        print(f"seqlit: --ckpt_path last -> {newest}", file=sys.stderr)
        check_checkpoint_file(newest)
        config["ckpt_path"] = str(newest)

    # ---- subcommands -------------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._resolve_last_checkpoint()
        self._set_up_data("fit")
        if self.announce and self.trainer.is_global_zero:
            trainer = self.trainer
            devices = f"{trainer.num_devices} x {trainer.strategy.root_device.type}" if trainer.num_devices > 1 \
                else trainer.strategy.root_device.type
            seed = self.config["fit"].get("seed_everything")
            print(f"seqlit: fit on {devices}, precision {trainer.precision}, seed {seed}; logs and checkpoints in "
                  f"{trainer.log_dir or trainer.default_root_dir}", file=sys.stderr, flush=True)

    def before_validate(self) -> None:
        self._resolve_last_checkpoint()
        self._set_up_data("validate")

    def before_test(self) -> None:
        self._resolve_last_checkpoint()
        self._set_up_data("test")

    def before_predict(self) -> None:
        self._resolve_last_checkpoint()
        self._set_up_data("predict")
        path = self.config["predict"].get("predictions_path")
        if path is None:
            path = str(Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.csv")
        self.trainer.callbacks.append(PredictionWriter(path))

    def after_fit(self) -> None:
        self.fit_metrics = {key: float(value) for key, value in self.trainer.callback_metrics.items()}
        stopper = self.trainer.early_stopping_callback
        if self.announce and self.trainer.is_global_zero and stopper is not None and stopper.stopped_epoch > 0:
            print(f"seqlit: stopped early after epoch {stopper.stopped_epoch}: {stopper.monitor} did not improve for "
                  f"{stopper.patience} validations (best {float(stopper.best_score):.4f})", file=sys.stderr, flush=True)
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        # The first ModelCheckpoint is the one that tracks the best validation score.
        best_path = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        last_path = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or None
        if self.announce and self.trainer.is_global_zero:
            tested = f"the best checkpoint {best_path}" if best_path else "the model as trained (no best checkpoint)"
            last = f" (last: {last_path})" if last_path else ""
            print(f"seqlit: testing {tested}{last}", file=sys.stderr, flush=True)
        self.test_results = self.trainer.test(
            self.model, datamodule=self.datamodule, ckpt_path=best_path, verbose=self.test_verbose,
            **_weights_only(self.trainer.test),  # seqlit's checkpoints are plain data
        )

    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand == "audit":
            self.exit_code = run_audit(self.datamodule)
        elif subcommand == "doctor":
            print(diagnose(self.model, self.datamodule, self.trainer).render())
        elif subcommand == "compare":
            self.exit_code = run_compare(self, TimedFitCLI)
        else:
            super()._run_subcommand(subcommand)

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
        """Runs `run(**kwargs)`; a checkpoint whose weights do not fit the model becomes a CheckpointMismatchError
        (torch reports it as a long "Error(s) in loading state_dict" traceback). A run refused during setup
        (a SeqlitError before anything was logged) leaves no log folder behind."""
        new_folders: list[Path] = []
        if self.trainer.is_global_zero:  # the rank that writes the logs (and names the version folder)
            log_dir = self.trainer.log_dir  # None without a logger
            if log_dir:
                new_folders = [path for path in (Path(log_dir), Path(log_dir).parent) if not path.exists()]
        try:
            try:
                return run(**kwargs)
            except RuntimeError as error:
                if "Error(s) in loading state_dict" not in str(error) or not kwargs.get("ckpt_path"):
                    raise
                raise CheckpointMismatchError(describe_model_mismatch(str(kwargs["ckpt_path"]), self.model)) from None
        except SeqlitError:
            remove_set_up_only_folders(new_folders)
            raise


class TimedFitCLI(SeqlitCLI):
    """`seqlit fit` that times its training loop (validation included, setup and test not); used by compare."""

    test_verbose = False  # compare prints its own lines
    announce = False

    def before_fit(self) -> None:
        from lightning.pytorch.callbacks import Timer

        super().before_fit()
        self.timer = Timer()
        self.trainer.callbacks.append(self.timer)

    def after_fit(self) -> None:
        # Read before testing: restoring the best checkpoint loads the timer's saved elapsed time as an offset.
        self.train_seconds = self.timer.time_elapsed("train")
        super().after_fit()


def _with_base_config(parser_kwargs: dict[str, Any] | None, run: bool) -> dict[str, Any]:
    """Parser settings with seqlit's base config as the default config file of every subcommand (or of the
    main parser when there are no subcommands)."""
    kwargs = dict(parser_kwargs or {})
    base = [str(BASE_CONFIG)]
    if not run:
        kwargs.setdefault("default_config_files", base)
        return kwargs
    for name in SeqlitCLI.subcommands():
        kwargs[name] = {"default_config_files": base, **kwargs.get(name, {})}
    return kwargs


def _weights_only(method: Any) -> dict[str, bool]:
    """`{"weights_only": True}` where Lightning's `method` takes it (Lightning >= 2.6), else nothing."""
    return {"weights_only": True} if "weights_only" in inspect.signature(method).parameters else {}


def _short_description(method: Any) -> str:
    """The first line of a Trainer method's docstring, as Lightning shows it in `seqlit --help`."""
    return (method.__doc__ or "").strip().split("\n")[0].strip()


__all__ = ["BASE_CONFIG", "DATA_TO_MODEL_LINKS", "SeqlitCLI", "TimedFitCLI", "default_precision"]
