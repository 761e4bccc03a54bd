"""`seqlit.validation`: one-line SettingErrors naming the setting, the value and the valid range."""

from __future__ import annotations

import pytest

from seqlit.errors import SeqlitError, SettingError
from seqlit.validation import require_fraction, require_int_at_least


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "big", None])
def test_require_int_at_least_refuses_what_is_not_a_count(value: object) -> None:
    with pytest.raises(SettingError, match=rf"^RNNEncoder hidden_size must be an integer >= 1, got {value!r}\.$"):
        require_int_at_least("RNNEncoder hidden_size", value, 1)


def test_require_int_at_least_accepts_the_minimum_and_above() -> None:
    require_int_at_least("data.fold", 0, 0)
    require_int_at_least("num_layers", 3, 1)


@pytest.mark.parametrize(("value", "low_open", "high_open", "message"), [
    (1.5, False, True, r"data\.val_fraction must be in \[0, 1\), got 1\.5\."),
    (-0.1, False, True, r"data\.val_fraction must be in \[0, 1\), got -0\.1\."),
    (0.0, True, True, r"data\.val_fraction must be in \(0, 1\), got 0\.0\."),
    (1.0, False, True, r"data\.val_fraction must be in \[0, 1\), got 1\.0\."),
    ("half", False, False, r"data\.val_fraction must be a number in \[0, 1\], got 'half'\."),
])
def test_require_fraction_names_the_interval(value: object, low_open: bool, high_open: bool, message: str) -> None:
    with pytest.raises(SettingError, match=message) as caught:
        require_fraction("data.val_fraction", value, low_open=low_open, high_open=high_open)
    assert isinstance(caught.value, (SeqlitError, ValueError))  # the CLI's one line; callers catching ValueError


def test_require_fraction_accepts_the_closed_ends_it_allows() -> None:
    require_fraction("p", 0.0)
    require_fraction("p", 1.0, high_open=False)
