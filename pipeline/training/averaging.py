"""An exponential moving average (EMA) of the network's weights, validated and saved in place of the raw weights.

`WeightAverage` keeps ``shadow = decay * shadow + (1 - decay) * weights`` after every training step (the decay
warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` steps, as TensorFlow's averaging, so that early
validations do not see the random start), swaps the average into the network while the evaluator runs (so
``model.pt``, the best by validation Dice, holds averaged weights) and gives the savers of the last model the
average too. With ``decay`` 0 it does nothing. Its state travels in ``checkpoint.pt`` for ``--resume``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pipeline.core.config import as_fraction
from pipeline.core.errors import UserError
from pipeline.model.weights import unwrapped, with_average


class WeightAverage:
    """The EMA of ``network``'s floating-point parameters and buffers (other buffers follow the network).

    Args:
        network: the module trained (``@network``; the compiled trainer network shares its tensors).
        decay: the averaging factor per step, in [0, 1); 0 turns averaging off (the network's own weights are
            validated and saved, as without this handler).
        evaluator: the validation engine; while it runs the network holds the average.

    Attach to the trainer (``train#handlers``).
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.0, evaluator: object = None) -> None:
        self.decay = as_fraction(decay, "ema_decay")
        if self.decay == 1.0:
            raise UserError("--ema_decay 1 would never move the average: give a value below 1 (0.999 averages over "
                            "about the last 1,000 steps), or 0 to turn averaging off")
        self.network = network
        self.evaluator = evaluator
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}
        self._saved: dict[str, torch.Tensor] | None = None

    @property
    def enabled(self) -> bool:
        return self.decay > 0.0

    def tracked(self) -> WeightAverage | None:
        """Itself when averaging, else None (`TrainingCheckpoint` skips None: checkpoints without it still resume)."""
        return self if self.enabled else None

    def _averaged(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in unwrapped(self.network).state_dict().items() if torch.is_floating_point(v)}

    def update(self, engine: object = None) -> None:
        """One step of the average (``ITERATION_COMPLETED``)."""
        current = self._averaged()
        if not self.shadow:
            self.shadow = {k: v.detach().float().clone() for k, v in current.items()}
        else:
            rate = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
            names = list(self.shadow)
            torch._foreach_lerp_([self.shadow[k] for k in names], [current[k].detach().float() for k in names],
                                 rate)
        self.updates += 1

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's ``state_dict`` with the averaged tensors in place of its own (before any step: its own)."""
        state = unwrapped(self.network).state_dict()
        if not self.enabled or not self.shadow:
            return state
        return with_average(state, self.shadow)

    def swap_in(self, engine: object = None) -> None:
        """Put the average into the network, keeping its own weights aside (evaluator ``STARTED``)."""
        if not self.enabled or not self.shadow or self._saved is not None:
            return
        net = unwrapped(self.network)
        self._saved = {k: v.detach().clone() for k, v in self._averaged().items()}
        with torch.no_grad():
            state = net.state_dict()
            for k, v in self.shadow.items():
                state[k].copy_(v)

    def swap_out(self, engine: object = None) -> None:
        """Give the network its own weights back (evaluator ``COMPLETED`` or an exception)."""
        if self._saved is None:
            return
        state = unwrapped(self.network).state_dict()
        with torch.no_grad():
            for k, v in self._saved.items():
                state[k].copy_(v)
        self._saved = None

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore `state_dict`'s, each tensor on the device of the network's (checkpoints load on the CPU)."""
        current = self._averaged()
        self.updates = int(state["updates"])
        self.shadow = {k: v.float().to(current[k].device if k in current else v.device, copy=True)
                       for k, v in dict(state["shadow"]).items()}

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine (the trainer)
        from ignite.engine import Events

        if not self.enabled:
            return
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.STARTED, self.swap_in)
            self.evaluator.add_event_handler(Events.COMPLETED, self.swap_out)
            self.evaluator.add_event_handler(Events.EXCEPTION_RAISED, self._failed)

    def _failed(self, engine, error: BaseException) -> None:  # noqa: ANN001
        self.swap_out()
        raise error


def as_handler(average: WeightAverage) -> WeightAverage:
    """``average`` itself, as an entry of ``train#handlers``: MONAI 1.6.1's bundle property check
    (``ConfigWorkflow._check_optional_id``) reads ``_target_`` of every handler entry and fails on a bare
    ``@reference``, so train.yaml lists the one `WeightAverage` through this."""
    return average
