import math

import pytest
import torch

from seqlit.schedules import WarmupCosine, warmup_cosine_scheduler


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
    scheduler = warmup_cosine_scheduler(optimizer, total_steps=50, warmup_fraction=0.1)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.SGD([param], lr=1.0)
    fresh = warmup_cosine_scheduler(fresh_optimizer, total_steps=50, warmup_fraction=0.1)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 7
    assert fresh.get_last_lr() == scheduler.get_last_lr()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(total_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="warmup_fraction"):
        warmup_cosine_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 10, 1.5)
