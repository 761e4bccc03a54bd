"""User-facing error types: the CLI prints these as one clear message instead of a traceback."""

from __future__ import annotations


class SeqlitError(Exception):
    """Base class for problems the user can fix (config, data, checkpoint)."""


class DataError(SeqlitError, ValueError):
    """A data file or data set is missing, malformed or inconsistent with the config."""


class SettingError(SeqlitError, ValueError):
    """A config setting is out of its valid range (a size of 0, a dropout of 1.5, an unknown name)."""


class CheckpointMismatchError(SeqlitError, ValueError):
    """A checkpoint was made with another data layout (classes, features, vocabulary)."""


class NonFiniteLossError(SeqlitError, RuntimeError):
    """Training produced NaN/Inf losses for too many steps in a row."""


class NonFiniteMetricError(SeqlitError, RuntimeError):
    """A validation or test metric came out NaN/Inf: the numbers (data or model) overflowed."""


def check_checkpoint_matches(what: str, saved: object, current: object, *, fix: str) -> None:
    """The one checkpoint-compatibility check: raises when the checkpoint's `what` differs from this run's.

    `what` names the setting ("classes", "feature columns", "tokenizer"); `fix` says what to do. Long
    values are cut in the message, so a 10k-token vocabulary still gives one readable line.
    """
    if saved is None or current is None or _comparable(saved) == _comparable(current):
        return
    raise CheckpointMismatchError(
        f"the checkpoint was trained with {what} {_short(saved)} but this run has {_short(current)}; {fix}"
    )


def _comparable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _short(value: object, limit: int = 12) -> str:
    if isinstance(value, (list, tuple)) and len(value) > limit:
        return f"{list(value)[:limit]!r} ... ({len(value)} in all)"
    return repr(list(value) if isinstance(value, tuple) else value)
