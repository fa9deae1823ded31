"""Training on a time budget: the learning rate, the validation points and the stop follow the clock.

``--time_budget_min 45`` (train.yaml) makes a `Clock` that starts with the trainer (and carries its elapsed time
through a resume); `ClockSchedule` sets the learning rate from the fraction of the budget used (linear warm-up,
then cosine to zero at the end of the budget), `pipeline.training.validation.FinalValidationHandler` validates every
``val_every_min`` minutes and once more when the budget is spent, then stops the trainer. ``time_budget_min: 0``
keeps the epoch schedule (``epochs``, ``val_interval``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import torch
from monai.optimizers import WarmupCosineSchedule

from pipeline.core.config import as_int
from pipeline.core.distributed import agreed, world_size
from pipeline.core.errors import UserError

#: The trainer's ``max_epochs`` on a budget: the clock stops it first.
BUDGET_MAX_EPOCHS = 1_000_000


def as_minutes(value: object, name: str) -> float:
    """A number of minutes as the CLI hands it over (``45``, ``"7.5"``), at least 0.

    Raises:
        UserError: not a number, or negative (naming ``--name``).
    """
    try:
        minutes = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise UserError(f"--{name} must be a number of minutes, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(minutes) or minutes < 0:
        raise UserError(f"--{name} must be a number of minutes >= 0, got {value!r}")
    return minutes


class Clock:
    """The training time against a budget of ``minutes``: from the trainer's start, resumed runs included.

    Args:
        minutes: the budget (> 0).
        val_every_min: minutes between validations; 0: a twelfth of the budget, at least one minute.
        warmup: the fraction of the budget that warms the learning rate up.

    Attach it to the trainer (``train#handlers``): it starts on ``STARTED``, and `state_dict` carries the elapsed
    time through `pipeline.training.checkpoints.TrainingCheckpoint`. Its decisions (the learning rate's fraction,
    `expired`, `validation_due`) read the clock; in a run of several processes they read the time `tick` took at
    the end of the last iteration, rank 0's (`pipeline.core.distributed.agreed`): every rank validates and stops
    at the same iteration, with the same learning rate.
    """

    def __init__(self, minutes: float, val_every_min: float = 0.0, warmup: float = 0.03) -> None:
        self.budget = as_minutes(minutes, "time_budget_min") * 60.0
        if self.budget <= 0:
            raise UserError("--time_budget_min must be > 0 for a clock (0 trains --epochs epochs instead)")
        every = as_minutes(val_every_min, "val_every_min") * 60.0
        self.every = every if every > 0 else max(60.0, self.budget / 12)
        self.warmup = float(warmup)
        self.before = 0.0            # elapsed seconds of earlier starts (a resumed run)
        self.last_validation = 0.0   # elapsed seconds at the last validation
        self._start: float | None = None
        self._ticked: float | None = None   # the elapsed time every rank agreed on at the last tick

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.start())
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: self.tick())  # before the handlers' checks

    def tick(self) -> float:
        """Read the clock for the decisions after this iteration: rank 0's elapsed seconds, on every rank (a
        collective)."""
        self._ticked = agreed(self.elapsed())
        return self._ticked

    def _now(self) -> float:
        """The elapsed time decisions read: the clock itself in one process; the last `tick` in several."""
        return self._ticked if self._ticked is not None and world_size() > 1 else self.elapsed()

    def start(self) -> None:
        """Start (or restart) the clock now."""
        self._start = time.perf_counter()
        self._ticked = self.before  # what every rank reads until the first tick: the same on all

    def elapsed(self) -> float:
        """Seconds of training so far, earlier starts included."""
        running = time.perf_counter() - self._start if self._start is not None else 0.0
        return self.before + running

    def fraction(self) -> float:
        """The fraction of the budget used at the last `tick`, in [0, 1]."""
        return min(1.0, self._now() / self.budget)

    def expired(self) -> bool:
        """Whether the budget was spent at the last `tick`."""
        return self._now() >= self.budget

    def validation_due(self) -> bool:
        """Whether ``val_every_min`` has passed since the last validation, or the budget is spent (at the last
        `tick`)."""
        return self.expired() or self._now() - self.last_validation >= self.every

    def validated(self) -> None:
        """After a validation (every rank): the next one is due ``val_every_min`` from now."""
        self.last_validation = self.tick()

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed(), "last_validation": self.last_validation}

    def load_state_dict(self, state: Mapping) -> None:
        self.before = float(state["elapsed"])
        self.last_validation = float(state["last_validation"])
        self._start = time.perf_counter()
        self._ticked = self.before


def clock(minutes: object, val_every_min: object = 0, warmup: float = 0.03) -> Clock | None:
    """The ``clock`` id: a `Clock` for ``minutes`` > 0, None for 0 (train ``epochs`` epochs)."""
    return Clock(as_minutes(minutes, "time_budget_min"), as_minutes(val_every_min, "val_every_min"),
                 warmup) if as_minutes(minutes, "time_budget_min") > 0 else None


def max_epochs(epochs: object, clock: Clock | None) -> int:
    """The trainer's ``max_epochs``: ``epochs`` (at least 1), or `BUDGET_MAX_EPOCHS` on a budget."""
    return BUDGET_MAX_EPOCHS if clock is not None else as_int(epochs, "epochs", minimum=1)


class ClockSchedule(torch.optim.lr_scheduler.LRScheduler):
    """The learning rate by the fraction ``f`` of the budget used: ``warmup_multiplier`` to 1 linearly while
    ``f < clock.warmup``, then ``0.5 * (1 + cos(pi * (f - w) / (1 - w)))``: zero when the budget ends.

    Stepped every iteration (``LrScheduleHandler(epoch_level=False)``); its state (``last_epoch``, base rates) is
    saved with the training state, the clock with its own.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, clock: Clock, warmup_multiplier: float = 0.1) -> None:
        self.clock = clock
        self.warmup_multiplier = float(warmup_multiplier)
        super().__init__(optimizer)

    def factor(self) -> float:
        f, w = self.clock.fraction(), self.clock.warmup
        if f < w:
            return self.warmup_multiplier + (1 - self.warmup_multiplier) * f / w
        return 0.5 * (1 + math.cos(math.pi * (f - w) / max(1e-9, 1 - w)))

    def get_lr(self) -> list[float]:
        return [base * self.factor() for base in self.base_lrs]

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "clock"}


def lr_schedule(optimizer: torch.optim.Optimizer, warmup_epochs: object, epochs: object, clock: Clock | None,
                warmup_multiplier: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler:
    """``train#lr_scheduler``: `ClockSchedule` on a budget, else MONAI's epoch ``WarmupCosineSchedule``."""
    if clock is not None:
        return ClockSchedule(optimizer, clock, warmup_multiplier)
    return WarmupCosineSchedule(optimizer, warmup_steps=as_int(warmup_epochs, "warmup_epochs", minimum=0),
                                t_total=as_int(epochs, "epochs", minimum=1), warmup_multiplier=warmup_multiplier)
