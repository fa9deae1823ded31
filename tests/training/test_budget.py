"""Training on a clock: the budget's minutes, the learning rate by the fraction of the budget used, validation
points, and the elapsed time carried through a resume."""

from __future__ import annotations

import math

import pytest
import torch
from monai.optimizers import WarmupCosineSchedule

from pipeline.core.errors import UserError
from pipeline.training import budget
from pipeline.training.budget import BUDGET_MAX_EPOCHS, Clock, ClockSchedule


class FakeTime:
    """``time.perf_counter`` under the test's control."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    t = FakeTime()
    monkeypatch.setattr(budget.time, "perf_counter", t)
    return t


@pytest.mark.parametrize(("value", "minutes"), [(45, 45.0), ("7.5", 7.5), (" 3 ", 3.0), (0, 0.0)])
def test_minutes_are_read_from_the_cli(value: object, minutes: float) -> None:
    assert budget.as_minutes(value, "time_budget_min") == minutes


@pytest.mark.parametrize("value", ["ten", "-1", float("nan"), float("inf"), True])
def test_a_bad_budget_is_refused_naming_the_option(value: object) -> None:
    with pytest.raises(UserError, match="--time_budget_min"):
        budget.as_minutes(value, "time_budget_min")


def test_no_budget_keeps_the_epoch_schedule() -> None:
    assert budget.clock(0) is None
    assert budget.max_epochs("7", None) == 7
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert isinstance(budget.lr_schedule(optimizer, 1, 10, None), WarmupCosineSchedule)


def test_a_budget_stops_the_trainer_by_the_clock(fake_time: FakeTime) -> None:
    clock = budget.clock("2", 0)
    assert budget.max_epochs(5, clock) == BUDGET_MAX_EPOCHS
    clock.start()
    fake_time.now += 119.0
    assert not clock.expired()
    fake_time.now += 1.0
    assert clock.expired() and clock.fraction() == 1.0


@pytest.mark.parametrize(("minutes", "every", "expected_s"), [(45, 0, 225.0), (6, 0, 60.0), (45, 5, 300.0)])
def test_validation_points_follow_the_clock(fake_time: FakeTime, minutes: float, every: float,
                                            expected_s: float) -> None:
    clock = Clock(minutes, every)
    assert clock.every == expected_s  # default: a twelfth of the budget, at least a minute
    clock.start()
    fake_time.now += expected_s - 1
    assert not clock.validation_due()
    fake_time.now += 1
    assert clock.validation_due()
    clock.validated()
    assert not clock.validation_due()


def test_learning_rate_warms_up_then_falls_to_zero_at_the_end_of_the_budget(fake_time: FakeTime) -> None:
    clock = Clock(10, warmup=0.1)
    clock.start()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = ClockSchedule(optimizer, clock, warmup_multiplier=0.1)
    rates = {}
    for fraction in (0.0, 0.05, 0.1, 0.55, 1.0):
        fake_time.now = 1000.0 + fraction * 600.0
        optimizer.step()
        schedule.step()
        rates[fraction] = optimizer.param_groups[0]["lr"]
    assert rates[0.0] == pytest.approx(0.2)
    assert rates[0.05] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert rates[0.1] == pytest.approx(2.0)
    assert rates[0.55] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert rates[1.0] == pytest.approx(0.0, abs=1e-12)


def test_a_resumed_run_continues_the_clock_where_it_stopped(fake_time: FakeTime) -> None:
    first = Clock(10)
    first.start()
    fake_time.now += 240.0
    first.validated()
    fake_time.now += 60.0
    state = first.state_dict()
    assert "clock" not in ClockSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0),
                                        first).state_dict()

    fake_time.now += 3600.0  # time between the runs does not count
    resumed = Clock(10)
    resumed.load_state_dict(state)
    assert resumed.elapsed() == pytest.approx(300.0)
    assert resumed.last_validation == pytest.approx(240.0)
    fake_time.now += 300.0
    assert resumed.expired()


@pytest.mark.parametrize("minutes", [0, 1], ids=["epochs", "budget"])
def test_with_validation_off_the_trainer_never_validates_and_a_budget_still_stops_it(fake_time: FakeTime,
                                                                                      minutes: float) -> None:
    from ignite.engine import Engine

    from pipeline.training.validation import FinalValidationHandler

    def step(engine: Engine, batch: int) -> None:
        fake_time.now += 10.0  # ten seconds an iteration

    trainer = Engine(step)
    clock = budget.clock(minutes, 0)
    # no validator at all: validating would raise MONAI's "please set validator"
    FinalValidationHandler(interval=1, validator=None, clock=clock, enabled=False).attach(trainer)
    trainer.run([0, 1, 2], max_epochs=budget.max_epochs(4, clock))
    if clock is None:
        assert trainer.state.epoch == 4
    else:  # 60 s of budget at 10 s an iteration: stopped in the second epoch's last iteration
        assert trainer.state.epoch == 2 and trainer.state.iteration == 6 and clock.expired()
