"""Several processes (``torchrun`` + ``torch.distributed``): who is who, and what each process trains on.

``multi_gpu_train.yaml`` runs one process per GPU (``nccl``), or several on the CPU (``gloo``). Each joins the
process group (`init_distributed`), trains on its shard of the cases (`shard`) through
``DistributedDataParallel`` (`wrap_ddp`), and leaves the group at the end (`finalize_distributed`).
Logs, TensorBoard files, run records and checkpoints are written by rank 0 only (`is_main_process`); work
every rank needs but only one should do (the data check) runs there too (`computed_on_main_process`).

Without a process group (a plain ``python -m monai.bundle run``) every function here acts as for one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import torch

logger = logging.getLogger(__name__)


def process_group():  # noqa: ANN201 - torch.distributed, or None without a process group
    """``torch.distributed`` when this process has joined a process group; None otherwise."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """The number of processes of the run; 1 without a process group (a plain ``python -m monai.bundle``)."""
    dist = process_group()
    return dist.get_world_size() if dist else 1


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``; 0 without a process group."""
    dist = process_group()
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
    dist = process_group()
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


def agreed(value: float) -> float:
    """Rank 0's ``value`` on every rank (a broadcast; every rank must call it at the same point); ``value`` itself
    in one process. For decisions every rank must take alike, such as a time budget's: each process's own clock
    differs by how long its start took, and ranks that stop at different iterations wait in different collectives
    (`pipeline.training.budget.Clock`)."""
    dist = process_group()
    if dist is None or dist.get_world_size() == 1:
        return float(value)
    device = local_device() if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


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
    dist = process_group()
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
        ValueError: (``even_divisible=False``) fewer items than processes, none excepted (``--fold all``
            validates no case).
        RuntimeError: torchrun started several processes but this one has not joined the group yet.
    """
    from monai.data import partition_dataset

    n, items = world_size(), list(items)
    if n == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("the data were sharded before init_distributed joined the process group: keep "
                           "`$pipeline.core.distributed.init_distributed(...)` ahead of anything that builds a dataset")
    if n == 1 or (not items and not even_divisible):  # no validation case (--fold all): nothing to share
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
