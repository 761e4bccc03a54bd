import math

import pytest
import torch

from seqlit.schedules import WarmupCosine, WarmupCosineLR


def test_warmup_is_linear_then_cosine_reaches_floor() -> None:
    schedule = WarmupCosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    warmup = [schedule(step) for step in range(10)]
    assert all(b > a for a, b in zip(warmup, warmup[1:]))
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule(100) == pytest.approx(0.1)
    assert schedule(1000) == pytest.approx(0.1)


def test_scheduler_state_round_trips_for_resume() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = WarmupCosineLR(optimizer, total_steps=50, warmup_fraction=0.1)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.SGD([param], lr=1.0)
    fresh = WarmupCosineLR(fresh_optimizer, total_steps=50, warmup_fraction=0.1)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 7
    assert fresh.get_last_lr() == scheduler.get_last_lr()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(total_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="warmup_fraction"):
        WarmupCosineLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 10, 1.5)
    with pytest.raises(ValueError, match="needs total_steps"):
        WarmupCosineLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))


# --- TeacherForcingSchedule -------------------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqlit.schedules import TEACHER_FORCING_KINDS, TeacherForcingSchedule  # noqa: E402


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (TeacherForcingSchedule("constant"), {0: 1.0, 10: 1.0, 10**9: 1.0}),
        (TeacherForcingSchedule("linear", k=1.0, c=0.1), {0: 1.0, 3: 0.7, 10: 0.0, 20: 0.0}),
        (TeacherForcingSchedule("linear", k=0.8, c=0.1, minimum=0.25), {0: 0.8, 5: 0.3, 6: 0.25, 50: 0.25}),
        (TeacherForcingSchedule("exponential", k=0.5), {0: 1.0, 1: 0.5, 3: 0.125, 10: 0.0009765625}),
        (TeacherForcingSchedule("exponential", k=0.5, minimum=0.2), {2: 0.25, 3: 0.2, 100: 0.2}),
        (TeacherForcingSchedule("inverse_sigmoid", k=1.0), {0: 0.5}),
        (
            TeacherForcingSchedule("inverse_sigmoid", k=10.0),
            {0: 0.9090909090909091, 10: 0.7862697284804238, 100: 0.00045379327579637003},
        ),
        (TeacherForcingSchedule("inverse_sigmoid", k=10.0, minimum=0.1), {100: 0.1}),
    ],
    ids=[
        "constant",
        "linear",
        "linear-floor",
        "exponential",
        "exponential-floor",
        "sigmoid-k1",
        "sigmoid",
        "sigmoid-floor",
    ],
)
def test_teacher_forcing_matches_formula(schedule: TeacherForcingSchedule, expected: dict[int, float]) -> None:
    for step, probability in expected.items():
        assert schedule(step) == pytest.approx(probability, rel=1e-9, abs=1e-12), f"step {step}"


def test_teacher_forcing_defaults_are_documented_values() -> None:
    assert TeacherForcingSchedule("linear")(5000) == pytest.approx(0.5)
    assert TeacherForcingSchedule("exponential")(1) == pytest.approx(0.9999)
    default = TeacherForcingSchedule()
    assert default.kind == "inverse_sigmoid" and default.k == 1000.0
    assert default(int(1000 * math.log(1000))) == pytest.approx(0.5, abs=1e-3)


def test_inverse_sigmoid_does_not_overflow_at_huge_steps() -> None:
    assert TeacherForcingSchedule("inverse_sigmoid", k=1.0)(10**7) == 0.0
    assert TeacherForcingSchedule("inverse_sigmoid", k=1000.0)(100_000) == pytest.approx(3.7200759760208357e-41)


@given(
    kind=st.sampled_from(TEACHER_FORCING_KINDS),
    minimum=st.floats(0.0, 1.0),
    steps=st.lists(st.integers(0, 10**6), min_size=2, max_size=20),
)
def test_teacher_forcing_is_monotone_and_bounded(kind: str, minimum: float, steps: list[int]) -> None:
    schedule = TeacherForcingSchedule(kind, minimum=minimum)  # type: ignore[arg-type]
    probabilities = [schedule(step) for step in sorted(steps)]
    assert all(later <= earlier for earlier, later in zip(probabilities, probabilities[1:]))
    assert all(minimum <= probability <= 1.0 for probability in probabilities)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "cosine"}, "'constant', 'linear', 'exponential', 'inverse_sigmoid'"),
        ({"kind": "exponential", "k": 1.0}, "0 < k < 1"),
        ({"kind": "exponential", "k": 0.0}, "0 < k < 1"),
        ({"kind": "inverse_sigmoid", "k": 0.5}, "k >= 1"),
        ({"kind": "linear", "k": 1.5}, "0 < k <= 1"),
        ({"kind": "linear", "c": -0.1}, "c >= 0"),
        ({"kind": "exponential", "c": 0.1}, "c is only used by kind='linear'"),
        ({"kind": "constant", "k": 0.5}, "takes no k or c"),
        ({"kind": "linear", "minimum": 1.5}, r"minimum must be in \[0, 1\]"),
        ({"kind": "linear", "minimum": -0.1}, r"minimum must be in \[0, 1\]"),
    ],
)
def test_teacher_forcing_bad_arguments_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TeacherForcingSchedule(**kwargs)


def test_teacher_forcing_rejects_negative_step() -> None:
    with pytest.raises(ValueError, match="step must be >= 0"):
        TeacherForcingSchedule("linear")(-1)
