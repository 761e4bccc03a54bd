"""User-facing error types: the CLI prints these as one clear message instead of a traceback."""

from __future__ import annotations


class SeqlitError(Exception):
    """Base class for problems the user can fix (config, data, checkpoint)."""


class DataError(SeqlitError, ValueError):
    """A data file or data set is missing, malformed or inconsistent with the config."""


class CheckpointMismatchError(SeqlitError, ValueError):
    """A checkpoint was made with another data layout (classes, features, vocabulary)."""


class NonFiniteLossError(SeqlitError, RuntimeError):
    """Training produced NaN/Inf losses for too many steps in a row."""
