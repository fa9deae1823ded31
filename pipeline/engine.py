"""Small pieces the training and validation engines of the bundle call (ignite handlers, output transforms).

MONAI's ``CheckpointSaver`` writes through ignite's ``DiskSaver(atomic=False)``, so a run killed while
saving can leave a truncated ``model.pt`` that looks like the best model. :class:`AtomicCheckpointSaver`
writes to a temporary file in the same folder, fsyncs it and renames it over the old one, so a checkpoint
on disk is always whole.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pipeline.labels import REGIONS

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that never leaves a half-written ``path``: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class AtomicCheckpointSaver:
    """Save the network's ``state_dict`` atomically: the best by a metric, or the last after every epoch.

    Args:
        save_dir: folder for the checkpoint.
        network: the module whose ``state_dict()`` is saved (a plain state dict, as model-zoo bundles do,
            loadable with ``torch.load(path, weights_only=True)``).
        filename: ``model.pt`` for the best, ``model_last.pt`` for the last, say.
        mode: ``"best"`` (attach to the evaluator: saves when ``engine.state.metrics[metric_name]`` beats the
            best so far, higher is better) or ``"last"`` (attach to the trainer: saves at each epoch end).
        metric_name: the evaluator metric compared in ``"best"`` mode.
    """

    def __init__(self, save_dir: str, network: torch.nn.Module, filename: str = "model.pt", *,
                 mode: str = "best", metric_name: str = "val_mean_dice") -> None:
        if mode not in ("best", "last"):
            raise ValueError(f"mode must be 'best' or 'last', got {mode!r}")
        self.path = Path(save_dir) / filename
        self.network = network
        self.mode = mode
        self.metric_name = metric_name
        self.best = -math.inf

    def _state_dict(self) -> dict:
        net = self.network.module if hasattr(self.network, "module") else self.network
        return net.state_dict()

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:  # noqa: ANN001
        if self.mode == "last":
            atomic_torch_save(self._state_dict(), self.path)
            return
        value = engine.state.metrics.get(self.metric_name)
        if value is None or (isinstance(value, float) and math.isnan(value)) or value <= self.best:
            return
        self.best = float(value)
        atomic_torch_save(self._state_dict(), self.path)
        logger.info("saved best %s %.4f to %s", self.metric_name, self.best, self.path)


def region_dice(region: str | None = None):  # noqa: ANN201 - a monai.handlers.IgniteMetricHandler
    """A validation Dice handler (``DiceMetric`` as an ignite metric) for one region, or all three with ``None``.

    ``region`` is ``"TC"``, ``"WT"`` or ``"ET"``.

    Expects decollated ``pred`` and ``label`` of shape ``(3, H, W, D)``, binary, channels TC, WT, ET.
    ``ignore_empty=False``: a case whose reference region is empty scores 1 if the prediction is empty too
    and 0 otherwise, the BraTS convention (MONAI's default would give NaN and drop the case).
    """
    from monai.handlers import IgniteMetricHandler, from_engine
    from monai.metrics import DiceMetric

    transform = from_engine(["pred", "label"]) if region is None else region_output_transform(region)
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    return IgniteMetricHandler(metric_fn=metric, output_transform=transform, save_details=False)


def region_output_transform(region: str) -> Callable[[Sequence[dict]], tuple[list, list]]:
    """An ignite ``output_transform`` picking one region channel of decollated ``pred``/``label``.

    ``pred`` and ``label`` are ``(3, H, W, D)`` binary tensors, channels TC, WT, ET
    (:data:`pipeline.labels.REGIONS`); the result feeds ``monai.handlers.MeanDice`` one region at a time.
    """
    try:
        c = REGIONS.index(region)
    except ValueError:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}") from None

    def transform(output: Sequence[dict]) -> tuple[list, list]:
        return [o["pred"][c : c + 1] for o in output], [o["label"][c : c + 1] for o in output]

    return transform
