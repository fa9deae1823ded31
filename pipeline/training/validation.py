"""Validation during training: when the evaluator runs, and the Dice it reports per region.

- `FinalValidationHandler`: validate every ``val_interval`` epochs and after the last one (or by the clock).
- `region_dice` / `region_metrics`: the evaluator's ``val_mean_dice`` and one ``val_dice_<region>``
  per network output channel (`dice_name`), BraTS's empty-region convention included.

Both replace MONAI 1.6.1 handlers that cannot be told what is needed here (`pipeline.monai_workarounds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from ignite.engine import Events
from monai.handlers import IgniteMetricHandler, ValidationHandler, from_engine
from monai.metrics import DiceMetric
from monai.transforms import MapTransform

from pipeline.core.config import as_int
from pipeline.core.errors import UserError
from pipeline.data.labels import REGIONS
from pipeline.training.budget import Clock


class FinalValidationHandler:
    """MONAI's ``ValidationHandler`` that also validates after the last epoch, whatever ``interval`` is.

    With MONAI's own, a run whose length is not a multiple of ``val_interval`` ends with unvalidated epochs, and
    one shorter than ``val_interval`` (``--epochs 5`` with the default 5 is fine, ``--epochs 3`` is not) never
    validates: no ``model.pt`` is written and inference has no model. Epoch level only.

    On a time budget (``clock``, `pipeline.training.budget.Clock`) it validates by the clock instead: every
    ``val_every_min`` minutes and once more when the budget is spent; then it stops the trainer. An epoch that
    overruns the budget ends after its current iteration.

    With ``enabled`` false (``--fold all``: no case is held out) it never validates; on a budget it still stops
    the trainer when the clock is spent.

    Args:
        interval: validate every ``interval`` epochs, and after the last one.
        validator: the validation engine (``validate#evaluator``).
        clock: the training budget, or None (epochs).
        enabled: validate at all.
    """

    def __init__(self, interval: int, validator: object, clock: Clock | None = None, enabled: bool = True) -> None:
        self._handler = ValidationHandler(interval=as_int(interval, "val_interval", minimum=1), validator=validator,
                                          epoch_level=True)
        self.clock = clock
        self.enabled = bool(enabled)

    def _due(self, engine, epoch: int) -> bool:  # noqa: ANN001 - an ignite Engine
        return epoch % self._handler.interval == 0 or epoch == engine.state.max_epochs

    def _by_clock(self, engine) -> None:  # noqa: ANN001
        if self.enabled and self.clock.validation_due():
            self._handler(engine)
            self.clock.validated()
        if self.clock.expired():
            engine.terminate()

    def _budget_spent(self, engine) -> None:  # noqa: ANN001
        if self.clock.expired():
            engine.terminate_epoch()  # the epoch ends here; EPOCH_COMPLETED validates and stops

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        if self.clock is None:
            if self.enabled:
                engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=self._due), self._handler)
            return
        self.clock.attach(engine)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._budget_spent)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._by_clock)


class IgnoreMaskd(MapTransform):
    """Where the label (the last key) is nnU-Net's ``ignore`` (a target above 1), set every key to 0, so that the
    validation Dice leaves those voxels out (`pipeline.data.labels.IGNORE_TARGET`)."""

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        ignored = d[self.keys[-1]] > 1
        if bool(ignored.any()):
            for key in self.key_iterator(d):
                d[key] = torch.where(ignored, torch.zeros_like(d[key]), d[key])
        return d


def region_dice(region: str | None = None, regions: Sequence[str] = REGIONS):  # noqa: ANN201 - an IgniteMetricHandler
    """A validation Dice handler (``DiceMetric`` as an ignite metric) for one region, or all of them with ``None``.

    ``region`` is one of ``regions``, the network's output channels (``TC``, ``WT``, ``ET`` for the BraTS
    schemes; `pipeline.data.labels.Description.regions`).

    Expects decollated ``pred`` and ``label`` of shape ``(R, H, W, D)``, binary, channels ``regions``.
    ``ignore_empty=False``: a case whose reference region is empty scores 1 if the prediction is empty too
    and 0 otherwise, the BraTS convention (MONAI's default would give NaN and drop the case).
    """
    transform = from_engine(["pred", "label"]) if region is None else region_output_transform(region, regions)
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    return IgniteMetricHandler(metric_fn=metric, output_transform=transform, save_details=False)


def region_metrics(regions: Sequence[str]) -> dict:
    """``{"val_dice_<region>": handler}`` for each region (lower case), the validation's additional metrics.

    Raises:
        UserError: two regions whose names give one column (``Tumor Core`` and ``tumor_core``): one would be lost.
    """
    names = [dice_name(r) for r in regions]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        same = [r for r in regions if dice_name(r) in clash]
        raise UserError(f"the regions {same} all become the validation column {clash[0]}: rename one of them in the "
                        "dataset.json \"labels\" (names that differ in more than case and punctuation)")
    return dict(zip(names, (region_dice(r, regions) for r in regions), strict=True))


def dice_name(region: str) -> str:
    """The metric (and ``history.csv`` column) name of a region's validation Dice: ``val_dice_tc``."""
    return "val_dice_" + "".join(ch if ch.isalnum() else "_" for ch in region.lower())


def region_output_transform(region: str, regions: Sequence[str] = REGIONS
                            ) -> Callable[[Sequence[dict]], tuple[list, list]]:
    """An ignite ``output_transform`` picking one region channel of decollated ``pred``/``label``.

    ``pred`` and ``label`` are ``(R, H, W, D)`` binary tensors, channels ``regions``; the result feeds
    ``monai.handlers.MeanDice`` one region at a time.
    """
    try:
        c = list(regions).index(region)
    except ValueError:
        raise ValueError(f"unknown region {region!r}; expected one of {tuple(regions)}") from None

    def transform(output: Sequence[dict]) -> tuple[list, list]:
        return [o["pred"][c : c + 1] for o in output], [o["label"][c : c + 1] for o in output]

    return transform
