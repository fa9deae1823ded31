"""Checkpoints: the best and last models, written whole, and the training state that lets a run resume.

`AtomicCheckpointSaver` writes ``model.pt`` (the best by validation Dice) and ``model_last.pt`` atomically (MONAI's
saver does not: `pipeline.monai_workarounds`); `TrainingCheckpoint` keeps ``checkpoint.pt`` (network, optimiser,
schedule, scaler, epoch, best metric, random states) after every epoch and restores it with ``--resume true``.
With several processes only rank 0 writes.
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from pipeline.core.config import as_bool
from pipeline.core.distributed import is_main_process, process_group, rank, world_size
from pipeline.core.errors import UserError
from pipeline.core.files import remove_temporaries
from pipeline.model.weights import atomic_torch_save, read_state, unwrapped

logger = logging.getLogger(__name__)


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
        average: a `pipeline.training.averaging.WeightAverage`: ``"last"`` mode saves its average (``"best"`` mode
            saves what the evaluator validated, which is the average while it runs).

    With several processes every rank keeps the best value (the metric is gathered across ranks, so it is
    the same everywhere) and only rank 0 writes. ``state_dict()``/``load_state_dict()`` carry the best value
    through `TrainingCheckpoint`, so that after a resume a worse metric does not replace ``model.pt``.
    """

    def __init__(self, save_dir: str, network: torch.nn.Module, filename: str = "model.pt", *,
                 mode: str = "best", metric_name: str = "val_mean_dice", average: object = None) -> None:
        if mode not in ("best", "last"):
            raise ValueError(f"mode must be 'best' or 'last', got {mode!r}")
        self.path = Path(save_dir) / filename
        self.network = network
        self.mode = mode
        self.metric_name = metric_name
        self.best = -math.inf
        self.average = average

    def _state_dict(self) -> dict:
        if self.mode == "last" and self.average is not None:  # the evaluator already holds it in "best" mode
            return self.average.averaged_state_dict()
        net = unwrapped(self.network)
        return net.state_dict()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping) -> None:
        self.best = float(state["best"])

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:  # noqa: ANN001
        if self.mode == "last":
            if is_main_process():
                atomic_torch_save(self._state_dict(), self.path)
            return
        value = engine.state.metrics.get(self.metric_name)
        if value is None or (isinstance(value, float) and math.isnan(value)) or value <= self.best:
            return
        self.best = float(value)
        if is_main_process():
            atomic_torch_save(self._state_dict(), self.path)
            logger.info("saved best %s %.4f to %s", self.metric_name, self.best, self.path)


# ---- random states, as tensors (loadable with torch.load(..., weights_only=True)) ----------------------


def _numpy_state(rs: np.random.RandomState | None = None) -> dict:
    _, keys, pos, has_gauss, cached = rs.get_state() if rs is not None else np.random.get_state()
    return {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_tuple(state: Mapping) -> tuple:
    return ("MT19937", state["keys"].numpy().astype(np.uint32), int(state["pos"]), int(state["has_gauss"]),
            float(state["cached_gaussian"]))


def transform_random_states(root: object) -> list[np.random.RandomState]:
    """The ``numpy`` random generators of MONAI's random transforms in ``root`` (a ``Compose``), in a fixed order.

    With ``num_workers=0`` each random transform draws from its own ``RandomState`` (seeded once by MONAI's
    DataLoader), not from the global generators; these must be saved too for a resumed run to draw the
    same patches as an uninterrupted one.
    """
    found: list[np.random.RandomState] = []
    seen: set[int] = set()

    def walk(obj: object, depth: int) -> None:
        if depth > 10 or id(obj) in seen or isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray)):
            return
        seen.add(id(obj))
        if isinstance(obj, np.random.RandomState):
            found.append(obj)
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                walk(x, depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, depth + 1)
        elif hasattr(obj, "__dict__"):
            for x in vars(obj).values():
                walk(x, depth + 1)

    walk(root, 0)
    return found


def random_states(transforms: object = None) -> dict:
    """Python, numpy, torch (CPU and this process's CUDA device) and the random transforms' generator states.

    Only tensors, numbers and ``None``: loadable with ``torch.load(..., weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "transforms": [_numpy_state(rs) for rs in transform_random_states(transforms)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device only: no context on the other GPUs
    return state


def set_random_states(state: Mapping, transforms: object = None) -> None:
    """Restore what `random_states` returned."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    generators = transform_random_states(transforms)
    if len(generators) != len(state["transforms"]):
        logger.warning("the training transforms have %d random generators, the checkpoint %d: their states are "
                       "not restored (were the transforms changed?)", len(generators), len(state["transforms"]))
        return
    for rs, s in zip(generators, state["transforms"], strict=True):
        rs.set_state(_numpy_tuple(s))


# ---- resuming a training run -------------------------------------------------------------------------


class TrainingCheckpoint:
    """Save everything a run needs to continue after each epoch, and restore it at the start with ``resume``.

    ``<save_dir>/checkpoint.pt`` holds the ``state_dict()`` of each of ``objects`` (network, optimiser, LR
    scheduler, the best-model saver's best metric), the trainer's AMP ``GradScaler`` when AMP is on, the
    trainer's ``epoch``/``iteration``, and the random states of every rank (see `random_states`). It is
    written atomically (`atomic_torch_save`) by rank 0 and loads with ``torch.load(..., weights_only=True)``.

    Attach it to the trainer (``train#handlers``). On ``STARTED`` it restores the checkpoint when ``resume`` is
    true and the file exists (ignite then continues with the next epoch; a finished run does nothing), and it
    registers the end-of-epoch save then, after every handler given to the trainer, so that the saved state
    includes that epoch's LR step, validation and best metric.

    Args:
        save_dir: folder of the checkpoint (on storage every node can read, for several machines).
        objects: name -> object with ``state_dict()``/``load_state_dict()``; ``None`` values are skipped.
        filename: ``checkpoint.pt``.
        resume: continue from the checkpoint if it exists (``true``/``false`` strings accepted).
    """

    RESERVED = ("trainer", "scaler", "rng", "world_size")

    def __init__(self, save_dir: str, objects: Mapping[str, object], *, filename: str = "checkpoint.pt",
                 resume: bool | str = False) -> None:
        clash = [k for k in objects if k in self.RESERVED]
        if clash:
            raise ValueError(f"objects may not be named {clash}: those names are taken by TrainingCheckpoint")
        self.path = Path(save_dir) / filename
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.resume = as_bool(resume, "resume")

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine (the trainer)
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.started)

    @staticmethod
    def _transforms(engine) -> object:  # noqa: ANN001
        loader = getattr(engine, "data_loader", None)
        return getattr(getattr(loader, "dataset", None), "transform", None)

    def started(self, engine) -> None:  # noqa: ANN001
        from ignite.engine import Events

        if is_main_process():
            remove_temporaries(self.path.parent)  # left by a process killed while saving
        if self.resume and self.path.is_file():
            self.load(engine)
        elif self.resume:
            logger.info("resume: no %s yet, starting at epoch 1", self.path)
        elif self.path.is_file() and is_main_process():
            logger.warning("%s exists and will be overwritten: this run starts at epoch 1 (pass --resume true to "
                           "continue it instead)", self.path)
        self._check_ranks_agree(int(engine.state.epoch))
        if not engine.has_event_handler(self.save, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _check_ranks_agree(self, epoch: int) -> None:
        """Every rank must start from the same epoch: a node that cannot see ``save_dir`` would train on alone."""
        dist = process_group()
        if not dist or dist.get_world_size() == 1:
            return
        epochs: list = [None] * dist.get_world_size()
        dist.all_gather_object(epochs, epoch)
        if len(set(epochs)) > 1:
            raise RuntimeError(
                f"the processes resumed from different epochs {epochs} (one per rank): {self.path} must be on "
                "storage that every machine reads (a shared file system), or copied to each machine first"
            )

    def save(self, engine) -> None:  # noqa: ANN001
        """Write the checkpoint (rank 0); every rank takes part, to hand over its random states."""
        states = [random_states(self._transforms(engine))]
        dist = process_group()
        if dist and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states[0])
            states = gathered
        if not is_main_process():
            return
        s = engine.state
        checkpoint = {
            "trainer": {"epoch": int(s.epoch), "iteration": int(s.iteration), "epoch_length": int(s.epoch_length),
                        "max_epochs": int(s.max_epochs)},
            "world_size": len(states),
            "rng": states,
            **{name: unwrapped(obj).state_dict() for name, obj in self.objects.items()},
        }
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            checkpoint["scaler"] = scaler.state_dict()
        atomic_torch_save(checkpoint, self.path)
        logger.debug("epoch %d: saved the training state to %s", s.epoch, self.path)

    def _stretch_schedules(self, first_plan: int, planned: int, done: int) -> None:
        """Make restored schedules with a length (MONAI's ``WarmupCosineSchedule.t_total``) end at ``planned``.

        Restored as saved, a cosine schedule of the first start's length would rise again past its end (the
        cosine beyond pi), so a run resumed with a larger ``--epochs`` would train its extra epochs at growing
        rates. The rest of the schedule is stretched (or shrunk) instead: the rate jumps once, at the restart.
        """
        for name, obj in self.objects.items():
            scheduler = unwrapped(obj)
            if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler) or not hasattr(scheduler, "t_total"):
                continue
            before = scheduler.get_last_lr()[0]
            scheduler.t_total = planned
            with warnings.catch_warnings():  # get_lr() outside step(): the rate at last_epoch, which is wanted
                warnings.simplefilter("ignore", UserWarning)
                rates = scheduler.get_lr()
            for group, lr in zip(scheduler.optimizer.param_groups, rates, strict=True):
                group["lr"] = lr
            after = rates[0]
            scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
            if is_main_process():
                logger.warning("%s: the first start planned %d epochs, this run %d: the %s now ends at epoch %d "
                               "(learning rate after epoch %d: %.3g instead of %.3g)", self.path, first_plan,
                               planned, name, planned, done, after, before)

    def load(self, engine) -> None:  # noqa: ANN001
        """Restore the checkpoint into the objects, the trainer state and the random generators.

        A run resumed with another ``--epochs`` than its first start's keeps training to the new number, with
        the learning-rate schedule stretched to end there (`_stretch_schedules`).

        Raises:
            ValueError: the checkpoint is beyond the planned epochs, or lacks one of ``objects``.
        """
        ckpt = read_state(self.path, fix="it was cut short (a killed run, a full disk): pass --overwrite true to start "
                                         "this run afresh, or train into another --run_dir")
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("trainer"), dict):
            raise UserError(f"{self.path} is not a training state (a model.pt copied in its place?): pass --overwrite "
                            "true to start afresh, or another --run_dir")
        on_clock, was_on_clock = self.objects.get("clock") is not None, "clock" in ckpt
        if on_clock != was_on_clock:  # the schedules' states differ in kind: torch raises a KeyError on loading
            raise UserError(f"{self.path} was trained {'on a time budget' if was_on_clock else 'by epochs'}; this "
                            f"resume runs {'on a time budget' if on_clock else 'by epochs'}: resume with the recipe it "
                            "started with (python -m pipeline train "
                            f"{'--minutes N' if was_on_clock else 'without --minutes'}; bundle: "
                            f"{'with' if was_on_clock else 'without'} budget.yaml), or pass another "
                            "--run_dir to start afresh")
        done, planned = int(ckpt["trainer"]["epoch"]), int(engine.state.max_epochs)
        if done > planned:
            raise UserError(f"{self.path} has {done} epochs done, more than --epochs {planned}: pass --epochs "
                             f"{done} or more to continue it, or another --run_dir to start afresh")
        dropped = [name for name in ckpt if name not in self.objects and name not in self.RESERVED]
        if dropped:  # e.g. a moving average of the weights (ema_decay) that this run would silently drop
            raise UserError(f"{self.path} holds a {dropped} state that this run does not take: it was started with "
                            "another configuration (e.g. --ema_decay); resume with the ids it started with, or pass "
                            "another --run_dir to start afresh")
        missing = [name for name in self.objects if name not in ckpt]
        if missing:
            raise UserError(f"{self.path} has no {missing} state: it was written by another configuration; "
                             "pass another --run_dir (or --resume false) to start afresh")
        for name, obj in self.objects.items():
            unwrapped(obj).load_state_dict(ckpt[name])
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        first_plan = int(ckpt["trainer"].get("max_epochs", planned))
        if first_plan != planned:
            self._stretch_schedules(first_plan, planned, done)
        engine.state.epoch = done
        if int(ckpt["trainer"]["epoch_length"]) == engine.state.epoch_length:
            engine.state.iteration = int(ckpt["trainer"]["iteration"])
        else:  # another number of processes or cases: whole epochs still line up
            engine.state.iteration = done * engine.state.epoch_length
        states = ckpt["rng"]
        if len(states) == world_size():
            set_random_states(states[rank()], self._transforms(engine))
        else:
            logger.warning("%s was written by %d process(es), this run has %d: the random states are not "
                           "restored, so patches and augmentations differ from an uninterrupted run",
                           self.path, len(states), world_size())
        if is_main_process():
            logger.info("resumed from %s: %d of %d epochs done", self.path, done, planned)
