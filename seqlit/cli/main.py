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
    try:
        with quiet_lightning() if reporting else _nothing():
            cli = SeqlitCLI(args=args, parser_kwargs={"exit_on_error": False})
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
    if cli.exit_code:
        raise SystemExit(cli.exit_code)


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


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _explain_argument_error(message: str) -> str:
    """Turns jsonargparse's 'Option X is not accepted' into the class that lacks it, the closest valid names and,
    for a setting that belongs to one of a task's parts (e.g. `hidden_size` of its encoder), the full key."""
    option_match = re.search(r"Option '(\w+)' is not accepted", message)
    if option_match is None:
        return message.strip()
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
