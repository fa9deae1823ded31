"""Small pieces the training and validation engines of the bundle call (ignite handlers, output transforms).

MONAI's ``CheckpointSaver`` writes through ignite's ``DiskSaver(atomic=False)``, so a run killed while
saving can leave a truncated ``model.pt`` that looks like the best model. :class:`AtomicCheckpointSaver`
writes to a temporary file in the same folder, fsyncs it and renames it over the old one, so a checkpoint
on disk is always whole.

Resuming (:class:`TrainingCheckpoint`): after every epoch the whole training state (network, optimiser,
LR schedule, AMP scaler, epoch and iteration, best metric, random states) goes to ``checkpoint.pt``; with
``--resume true`` a new run restores it and continues with the next epoch.

Several processes (``torchrun``, :func:`init_distributed`): one process per GPU (``nccl``), or several on the
CPU (``gloo``), each training on its shard of the cases (:func:`shard`) through ``DistributedDataParallel``;
checkpoints are written by rank 0 only.
"""

from __future__ import annotations

import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.files import atomic_write, remove_temporaries
from pipeline.labels import REGIONS

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that never leaves a half-written ``path`` (:func:`pipeline.files.atomic_write`)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


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

    With several processes every rank keeps the best value (the metric is gathered across ranks, so it is
    the same everywhere) and only rank 0 writes. ``state_dict()``/``load_state_dict()`` carry the best value
    through :class:`TrainingCheckpoint`, so that after a resume a worse metric does not replace ``model.pt``.
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


class FinalValidationHandler:
    """MONAI's ``ValidationHandler`` that also validates after the last epoch, whatever ``interval`` is.

    With MONAI's own, a run whose length is not a multiple of ``val_interval`` ends with unvalidated epochs, and
    one shorter than ``val_interval`` (``--epochs 5`` with the default 5 is fine, ``--epochs 3`` is not) never
    validates: no ``model.pt`` is written and inference has no model. Epoch level only.

    Args:
        interval: validate every ``interval`` epochs, and after the last one.
        validator: the validation engine (``validate#evaluator``).
    """

    def __init__(self, interval: int, validator: object) -> None:
        from monai.handlers import ValidationHandler

        self._handler = ValidationHandler(interval=int(interval), validator=validator, epoch_level=True)

    def _due(self, engine, epoch: int) -> bool:  # noqa: ANN001 - an ignite Engine
        return epoch % self._handler.interval == 0 or epoch == engine.state.max_epochs

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=self._due), self._handler)


def region_dice(region: str | None = None, regions: Sequence[str] = REGIONS):  # noqa: ANN201 - an IgniteMetricHandler
    """A validation Dice handler (``DiceMetric`` as an ignite metric) for one region, or all of them with ``None``.

    ``region`` is one of ``regions``, the network's output channels (``TC``, ``WT``, ``ET`` for the BraTS
    schemes; :attr:`pipeline.labels.Description.regions`).

    Expects decollated ``pred`` and ``label`` of shape ``(R, H, W, D)``, binary, channels ``regions``.
    ``ignore_empty=False``: a case whose reference region is empty scores 1 if the prediction is empty too
    and 0 otherwise, the BraTS convention (MONAI's default would give NaN and drop the case).
    """
    from monai.handlers import IgniteMetricHandler, from_engine
    from monai.metrics import DiceMetric

    transform = from_engine(["pred", "label"]) if region is None else region_output_transform(region, regions)
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    return IgniteMetricHandler(metric_fn=metric, output_transform=transform, save_details=False)


def region_metrics(regions: Sequence[str]) -> dict:
    """``{"val_dice_<region>": handler}`` for each region (lower case), the validation's additional metrics."""
    return {dice_name(r): region_dice(r, regions) for r in regions}


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


def as_bool(value: object, name: str = "flag") -> bool:
    """A config flag given as a bool or, from the command line, as ``true``/``false`` (``yes``/``no``, ``1``/``0``).

    ``--resume true`` reaches the bundle as the string ``"true"``, and ``bool("false")`` would be True.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0", "none", ""):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


# ---- several processes (torchrun + torch.distributed) --------------------------------------------------


def _process_group():  # noqa: ANN202 - torch.distributed, or None without a process group
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """The number of processes of the run; 1 without a process group (a plain ``python -m monai.bundle``)."""
    dist = _process_group()
    return dist.get_world_size() if dist else 1


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``; 0 without a process group."""
    dist = _process_group()
    return dist.get_rank() if dist else 0


def is_main_process() -> bool:
    """True on rank 0, and in a run of one process: where logs, TensorBoard files and checkpoints are written."""
    return rank() == 0


def computed_on_main_process(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """``fn(*args, **kwargs)`` computed by rank 0 alone and sent to every rank; in one process, just the call.

    For work every rank needs the result of but only one should do, such as the data check before training
    (minutes for a whole BraTS release, with ``check_jobs`` processes: 8 ranks doing it at once would compete
    for the same cores and disks). The result must be picklable. If ``fn`` raises on rank 0, rank 0 raises
    that exception and every other rank a ``RuntimeError`` carrying its type and message, so that all ranks
    stop together instead of waiting for each other. Every rank must call this at the same point (a collective).
    """
    dist = _process_group()
    if dist is None or dist.get_world_size() == 1:
        return fn(*args, **kwargs)
    payload: list[object] = [None]
    error: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            payload[0] = ("ok", fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - sent to the other ranks, then re-raised here
            error = e
            payload[0] = ("error", f"{type(e).__name__} on rank 0: {e}")
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(str(value))
    return value


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` (torchrun sets LOCAL_RANK, one GPU per process) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_distributed(device: str | torch.device, *, seed: int | None = None, backend: str | None = None) -> int:
    """Join the process group that ``torchrun`` describes in the environment; return this process's rank.

    Args:
        device: this process's device; ``cuda:<LOCAL_RANK>`` becomes the current CUDA device.
        seed: when given, seeds this process with ``seed + rank`` (``monai.utils.set_determinism``), so each rank
            draws its own patches and augmentations; the weights start equal on every rank anyway, because
            ``DistributedDataParallel`` copies rank 0's at construction.
        backend: ``None`` picks ``nccl`` on CUDA and ``gloo`` on the CPU.

    Raises:
        RuntimeError: the process was not started by ``torchrun`` (RANK, WORLD_SIZE, MASTER_ADDR or MASTER_PORT
            missing from the environment).
    """
    import torch.distributed as dist

    device = torch.device(device)
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"multi_gpu_train.yaml runs one process per device under torchrun, but {', '.join(missing)} "
                "is not set: launch it as `torchrun --nproc_per_node=N -m monai.bundle run training ...`, or drop "
                "multi_gpu_train.yaml from --config_file to train in one process"
            )
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"))
    if seed is not None:
        from monai.utils import set_determinism

        set_determinism(seed=int(seed) + dist.get_rank())
    logger.info("process %d of %d on %s (backend %s)", dist.get_rank(), dist.get_world_size(), device,
                dist.get_backend())
    return dist.get_rank()


def finalize_distributed() -> None:
    """Leave the process group at the end of a run (``finalize`` of multi_gpu_train.yaml)."""
    dist = _process_group()
    if dist:
        dist.destroy_process_group()


def shard(items: Sequence, *, even_divisible: bool, shuffle: bool = False, seed: int = 0) -> list:
    """This rank's share of ``items``; all of them in a run of one process.

    Each rank then caches only its own share (``CacheDataset``). ``even_divisible=True`` (training) pads with
    repeated items so that every rank runs the same number of steps, as DDP requires; ``False`` (validation)
    gives every item to exactly one rank (5 items on 2 ranks: 3 and 2), and the metrics, gathered across
    ranks, equal a one-process evaluation. ``shuffle`` with ``seed`` mixes the items the same way on every
    rank before dealing them (``monai.data.partition_dataset``).

    Raises:
        ValueError: no item, or (``even_divisible=False``) fewer items than processes.
        RuntimeError: torchrun started several processes but this one has not joined the group yet.
    """
    from monai.data import partition_dataset

    n, items = world_size(), list(items)
    if n == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("the data were sharded before init_distributed joined the process group: keep "
                           "`$pipeline.engine.init_distributed(...)` ahead of anything that builds a dataset")
    if n == 1:
        return items
    if even_divisible and 0 < len(items) < n:
        items = (items * n)[:n]  # fewer training cases than processes: some ranks repeat a case
    if len(items) < n:
        raise ValueError(
            f"{len(items)} validation case(s) cannot be shared by {n} processes, each needs at least one: start "
            "fewer processes (--nproc_per_node) or validate on more cases (--folds)"
        )
    return partition_dataset(items, num_partitions=n, shuffle=shuffle, seed=seed, even_divisible=even_divisible)[rank()]


def wrap_ddp(network: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(network)`` for the trainer: gradients are averaged across ranks each step.

    The evaluator and the checkpoint savers keep the plain ``network`` (its parameters are the same tensors),
    so ``model.pt`` has no ``module.`` prefix and validation needs no collective call per forward pass.
    """
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    return DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)


def _unwrap(obj: object) -> object:
    return obj.module if isinstance(obj, torch.nn.Module) and hasattr(obj, "module") else obj


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
    """Restore what :func:`random_states` returned."""
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
    trainer's ``epoch``/``iteration``, and the random states of every rank (see :func:`random_states`). It is
    written atomically (:func:`atomic_torch_save`) by rank 0 and loads with ``torch.load(..., weights_only=True)``.

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
        dist = _process_group()
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
        dist = _process_group()
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
            **{name: _unwrap(obj).state_dict() for name, obj in self.objects.items()},
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
            scheduler = _unwrap(obj)
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
        the learning-rate schedule stretched to end there (:meth:`_stretch_schedules`).

        Raises:
            ValueError: the checkpoint is beyond the planned epochs, or lacks one of ``objects``.
        """
        ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        done, planned = int(ckpt["trainer"]["epoch"]), int(engine.state.max_epochs)
        if done > planned:
            raise ValueError(f"{self.path} has {done} epochs done, more than --epochs {planned}: pass --epochs "
                             f"{done} or more to continue it, or another --run_dir to start afresh")
        missing = [name for name in self.objects if name not in ckpt]
        if missing:
            raise ValueError(f"{self.path} has no {missing} state: it was written by another configuration; "
                             "pass another --run_dir (or --resume false) to start afresh")
        for name, obj in self.objects.items():
            _unwrap(obj).load_state_dict(ckpt[name])
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
