"""`seqlit <subcommand>`: the console entry point. User errors print one `seqlit: error:` line, not a traceback."""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import re
import signal
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch.utilities.exceptions import SIGTERMException

from seqlit.cli import init
from seqlit.cli.app import SEQLIT_SUBCOMMANDS, SeqlitCLI
from seqlit.errors import SeqlitError


def main(args: list[str] | None = None) -> None:
    """Runs `seqlit` with `args` (default: the command line).

    Exit codes: 0 done; 1 a failed `audit`; 2 a user error (config, data, checkpoint), printed as one line;
    143 a fit stopped by SIGTERM (128 + SIGTERM, as if killed), so schedulers do not count it as done.
    """
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["report"]:  # reads a finished run's folder: no config, model or data to parse
        from seqlit.report import main as report_main

        report_main(argv[1:])
        return
    # Parts named in a config (`cell: my_cells.IndRNNCell`) import from the folder the command runs in, as
    # with `python -m`; the console script alone would only see installed packages.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    reporting = bool(argv) and argv[0] in SEQLIT_SUBCOMMANDS  # these print their own report
    # A failed audit (a leak, unusable data) exits with 1, so `seqlit audit` can gate a CI job.
    prefix, data_error_code = ("audit failed: ", 1) if argv[:1] == ["audit"] else ("", 2)
    if argv[:1] == ["init"]:  # writes a config from a data file: no config parser, no trainer
        try:
            init.main(argv[1:])
        except SeqlitError as error:
            print(f"seqlit: error: {_one_line(str(error))}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    try:
        with quiet_lightning() if reporting else quiet_console():
            cli = SeqlitCLI(args=args, parser_kwargs={"exit_on_error": False, "prog": "seqlit"})
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except ArgumentError as error:
        print(f"seqlit: error: {_explain_argument_error(str(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    except SeqlitError as error:
        print(f"seqlit: error: {prefix}{_one_line(str(error))}", file=sys.stderr)
        raise SystemExit(data_error_code) from None
    except FileNotFoundError as error:
        print(f"seqlit: error: {prefix}file not found: {error.filename or error}", file=sys.stderr)
        raise SystemExit(data_error_code) from None
    except (ValueError, TypeError, RuntimeError) as error:
        # jsonargparse reports a constructor's error inside its own multi-line "Does not validate" message;
        # the user's error is the one it was raised from.
        cause = seqlit_error_in_chain(error)
        if cause is None:
            raise
        print(f"seqlit: error: {prefix}{_one_line(str(cause))}", file=sys.stderr)
        raise SystemExit(data_error_code) from None
    if cli.exit_code:
        raise SystemExit(cli.exit_code)


# Third-party console lines that tell a seqlit user nothing (or nothing they can act on), each matched by its own
# message so every other warning, seqlit's own included, still shows.
NOISE_WARNINGS: tuple[str, ...] = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning 2.6 calling a torch >= 2.10 deprecation
    # small data: the step-level train/ curves are sparse; the epoch-level metrics are logged regardless
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # resuming (--ckpt_path) writes into the new run's version folder by design; best_model_path still reloads
    r"The dirpath has changed from",
    r"LightningCLI's args parameter is intended to run from within Python",
)
# Lightning's info lines that seqlit's own lines replace: the device and seed (`seqlit: fit on ...`), the checkpoint
# a test loads (`seqlit: testing the best checkpoint ...`), and advertisements.
NOISE_LOG_LINES = re.compile(
    r"^(\[rank: \d+\] )?(Seed set to |GPU available: |TPU available: |HPU available: |💡 Tip: "
    r"|Loading `train_dataloader` to estimate number of stepping batches"
    r"|Restoring states from the checkpoint path at |Loaded model weights from the checkpoint at )"
)
_NOISY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed",
                  "lightning.pytorch.trainer.connectors.checkpoint_connector")


@contextmanager
def quiet_console() -> Iterator[None]:
    """Drops the known third-party noise (`NOISE_WARNINGS`, `NOISE_LOG_LINES`) for the duration of a command; the
    filters come off afterwards, so a caller in the same process keeps its own."""
    log_filter = _DropLines(NOISE_LOG_LINES)
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        with warnings.catch_warnings():
            for message in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=f"(?s).*{message}")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)


class _DropLines(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.search(record.getMessage()) is None


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines off, and `quiet_console`'s filters on, for the subcommands that print their own
    report (`demo`, `compare`, `doctor`, `audit`); the log levels come back afterwards, so a caller in the same
    process (a notebook, a test session) keeps its own."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with quiet_console():
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def seqlit_error_in_chain(error: BaseException) -> SeqlitError | None:
    """The first SeqlitError among `error` and the exceptions it was raised from (cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, SeqlitError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _explain_argument_error(message: str) -> str:
    """Turns jsonargparse's 'Option X is not accepted' into the class that lacks it, the closest valid names and,
    for a setting that belongs to one of a task's parts (e.g. `hidden_size` of its encoder), the full key."""
    if re.search(r"the following arguments are required: \w+\.model\b", message):
        return ("the config names no model, and no data module whose task seqlit could use: add a `data:` section "
                "(e.g. class_path: seqlit.data.datamodules.SequenceClassificationDataModule) or `model: <task>` with "
                "a task from seqlit.tasks (SequenceClassifier, Forecaster, LanguageModel, Seq2SeqModel). `seqlit init "
                "--data my.csv --task classify` writes a config for a data file.")
    option_match = re.search(r"Option '(\w+)' is not accepted", message)
    if option_match is None:
        return _explain_invalid_value(message) or _one_line(message)
    option = option_match.group(1)
    inner = re.search(r"Got value: Namespace\(class_path='([\w.]+)'", message)
    outer = re.findall(r"class_path '([\w.]+)'", message)
    part = re.search(r'Parser key "(\w+)":\s+Type', message)
    class_path = inner.group(1) if inner else (outer[-1] if outer else None)
    cls = _import_class(class_path) if class_path else None
    if cls is None:
        return message.strip()
    valid = _options(cls)
    where = f" ({part.group(1)})" if inner and part else ""
    close = difflib.get_close_matches(option, valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if not inner:
        owner = _part_with_option(cls, option)
        if owner is not None:
            return (f"{cls.__name__} has no option {option!r}: it is a setting of its {owner}; use "
                    f"--model.init_args.{owner}.init_args.{option} (in YAML: model: init_args: {owner}: init_args: "
                    f"{option}: ...).")
    return f"{cls.__name__}{where} has no option {option!r}.{hint} Valid options: {', '.join(valid)}."


def _explain_invalid_value(message: str) -> str | None:
    """jsonargparse's nested 'Parser key "model": Does not validate against any of the Union subtypes ...' for a
    value of the wrong type or outside a Literal, as one line naming the full key, the value and what is valid:
    `model.init_args.encoder.init_args.hidden_size must be an integer, got 'big'`."""
    keys = re.findall(r'Parser key "([\w.]+)"', message)
    expected = [(kind, value) for kind, value in re.findall(r"Expected an? (.+?)(?:\. Got value: (.*?))?(?:\. Got value:|$)",
                                                           message, re.M) if "NoneType" not in kind]
    if not keys or not expected:
        return None
    kind, value = expected[-1]
    if not value:
        given = re.search(r"^\s*Given value: (.*)$", message, re.M)
        value = given.group(1) if given else "?"
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", kind)
    what = f"one of {literal.group(1)}" if literal else _TYPE_WORDS.get(kind, kind)
    return (f"{'.init_args.'.join(keys)} must be {what}, got {value!r}. Fix: correct that value in the config file "
            "or on the command line.")


_TYPE_WORDS = {"<class 'int'>": "an integer", "<class 'float'>": "a number", "<class 'bool'>": "true or false",
               "<class 'str'>": "a string"}


def _import_class(class_path: str) -> type | None:
    module_name, _, class_name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def _options(cls: type) -> list[str]:
    return sorted(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs"))


def _part_with_option(cls: type, option: str) -> str | None:
    """The name of a part of `cls` (a parameter whose default is a `{class_path, ...}` spec) taking `option`."""
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        default = parameter.default
        if isinstance(default, dict) and "class_path" in default:
            part_class = _import_class(str(default["class_path"]))
            if part_class is not None and option in _options(part_class):
                return name
    return None
