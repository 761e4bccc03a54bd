"""Range checks for config settings, shared by the constructors of tasks, network parts and data modules:
each raises a one-line SettingError naming the setting, the value given and the valid range, so a bad
setting is refused when the config is instantiated, before a log folder exists."""

from __future__ import annotations

from numbers import Integral, Real

from seqlit.errors import SettingError


def require_int_at_least(name: str, value: object, minimum: int = 1) -> None:
    """`value` must be an integer >= `minimum` (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise SettingError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def require_fraction(name: str, value: object, *, low_open: bool = False, high_open: bool = True) -> None:
    """`value` must lie in [0, 1) by default; `low_open` excludes 0, `high_open=False` allows 1."""
    low, high = ("(" if low_open else "["), (")" if high_open else "]")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SettingError(f"{name} must be a number in {low}0, 1{high}, got {value!r}.")
    above_low = value > 0 if low_open else value >= 0
    below_high = value < 1 if high_open else value <= 1
    if not (above_low and below_high):
        raise SettingError(f"{name} must be in {low}0, 1{high}, got {value!r}.")

