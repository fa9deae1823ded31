"""What ``bundle/configs/variants/fast.yaml`` calls for data loading and caching on the fast path.

``fast.yaml`` caches the preprocessed training volumes on the training device in float16 and draws the patches
there (`without_metadata`, `without_cache_copy`, a ``ThreadDataLoader`` with `loader_workers`), on CUDA as many
patches per step as the GPU's memory holds (`samples_per_volume`); see its header. Its precision settings (bf16
autocast on CUDA and on CPUs with native bf16, cuDNN autotuning) are ids read by `pipeline.model.precision`. The
benchmarks' clocks, which time these settings, are in ``bench/timing.py``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from monai.transforms import Compose

from pipeline.core.config import as_int
from pipeline.data.transforms import parse_spacing
from pipeline.model.precision import on_cuda

logger = logging.getLogger(__name__)


def label_cache_dtype(spacing: object) -> torch.dtype:
    """The dtype of the cached label regions ``(R, H, W, D)``: uint8 (0/1) at the data's own voxels; float16 when
    ``spacing`` resamples them, since area averaging makes them soft targets (a fraction per voxel) that uint8
    would truncate to 0 wherever a region does not fill the voxel (a thin enhancing rim)."""
    return torch.uint8 if parse_spacing(spacing) is None else torch.float16


def loader_workers(device: str | torch.device) -> int:
    """DataLoader worker processes for ``device``: on CUDA half the CPU cores, 2 to 8; on the CPU 2, as common.yaml.

    Loading and preprocessing a BraTS-size case (four gzip NIfTI files, orientation, crop, normalisation) takes a
    core a good fraction of a second, so at the target of 0.15 s per volume several workers must work while the
    GPU segments. On the CPU the network needs the cores and the best number depends on the volumes and the
    machine (bench/RESULTS.md), so fast.yaml keeps common.yaml's 2, and demo.yaml, merged after it, its 0.
    """
    if on_cuda(device):
        return max(2, min(8, (os.cpu_count() or 2) // 2))
    return 2


class WithoutMetadata(Compose):
    """``Compose`` of random transforms that runs them with MONAI's metadata tracking off (``set_track_meta(False)``).

    MONAI's transforms wrap every output in a ``MetaTensor`` and record each operation for inversion, which costs
    about a millisecond of Python per patch (bench/RESULTS.md): next to a GPU step of 4 patches in about 10 ms,
    half the budget.
    The random training transforms need neither (nothing inverts them), so fast.yaml runs them through this, on
    the plain tensors of its cache; the deterministic preprocessing before it keeps its metadata (orientation
    needs the affine). The setting is process-wide: it is off while any thread is inside this and back to what the
    first caller found when the last one leaves (`_tracking_off`). While a ``ThreadDataLoader`` thread is inside,
    the trainer's own thread creates no ``MetaTensor`` either, which it does not need; validation runs after the
    loader's thread has finished the epoch.

    Being a ``Compose`` subclass, it is not flattened into the dataset's ``Compose`` and counts as random, so
    ``CacheDataset`` caches everything before it.
    """

    def __call__(self, input_, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204 - as Compose.__call__
        with _tracking_off():
            return super().__call__(input_, *args, **kwargs)


#: Callers inside `WithoutMetadata` now, and the tracking setting the first of them found (under `_TRACKING_LOCK`).
_TRACKING_LOCK = threading.Lock()
_tracking_state: dict = {"inside": 0, "previous": True}


@contextmanager
def _tracking_off() -> Iterator[None]:
    """MONAI's metadata tracking off while any thread is inside; the first caller's setting back when the last leaves.

    ``set_track_meta`` is process-wide. Each caller saving and restoring it alone goes wrong with two threads
    (several ``ThreadDataLoader`` workers, or two loaders): A saves on and switches off, B saves off, A restores
    on while B runs, B restores off, and tracking stays off for the rest of the process. Counting the callers
    restores the setting once, when the last one leaves.
    """
    from monai.data import get_track_meta, set_track_meta

    with _TRACKING_LOCK:
        if _tracking_state["inside"] == 0:
            _tracking_state["previous"] = get_track_meta()
            set_track_meta(False)
        _tracking_state["inside"] += 1
    try:
        yield
    finally:
        with _TRACKING_LOCK:
            _tracking_state["inside"] -= 1
            if _tracking_state["inside"] == 0:
                set_track_meta(_tracking_state["previous"])


def without_metadata(transforms: Sequence[Callable]) -> WithoutMetadata:
    """`WithoutMetadata` over ``transforms`` (the ``random_transforms`` list of train.yaml)."""
    return WithoutMetadata(list(transforms))


def without_cache_copy(dataset: object) -> object:
    """``dataset`` with ``CacheDataset.copy_cache`` off: its random transforms read the cached volume without a copy.

    By default each ``dataset[i]`` deep-copies the cached item (a BraTS-size case: about 100 MB of float32
    image, regions and crop centres; 65 MB in fast.yaml's float16) in case a random transform changes it in
    place. train.yaml's do not: the patch crop makes new dicts and views, flips and intensity changes make new
    tensors, and the label cast makes a new tensor, so the copy is pure cost. A ``PersistentDataset``
    (``cache_dir``) reads a fresh copy from disk anyway and is returned unchanged. Returns the same object.
    """
    if hasattr(dataset, "copy_cache"):
        dataset.copy_cache = False
    return dataset


#: At most this many patches per step when chosen from the GPU's memory (16 of 128^3 measured fastest on an H200
#: with the default UNet, bench/RESULTS.md; more gives no more patches/s and fewer steps per budget).
MAX_PATCHES_PER_STEP = 16


def patch_memory(network: torch.nn.Module, in_channels: int, roi_size: Sequence[int], device: str | torch.device,
                 amp_dtype: torch.dtype | None = None) -> int:
    """Bytes of GPU memory one training patch takes beyond the network's own: the peak of a forward and
    backward pass of one zero patch (under autocast in ``amp_dtype``), less the memory held before it. The
    gradients it leaves are cleared; no random number is drawn, so seeded runs are unchanged."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.zeros(1, in_channels, *[int(s) for s in roi_size], device=device)
    with torch.autocast("cuda", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        out = network(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        loss = out.float().mean()
    loss.backward()
    network.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del x, out, loss
    torch.cuda.empty_cache()
    return int(peak)


def patches_for_memory(free_bytes: int, per_patch: int, batch_size: int, minimum: int,
                       fraction: float = 0.5, maximum: int = MAX_PATCHES_PER_STEP) -> int:
    """Patches per step for ``free_bytes`` of memory at ``per_patch`` bytes each, using ``fraction`` of it (the
    rest for the cache growth and the allocator): a multiple of ``batch_size``, from ``minimum`` to ``maximum``."""
    fits = int(free_bytes * fraction) // max(1, per_patch)
    patches = min(max(fits, minimum), max(maximum, minimum))
    return max(batch_size, patches - patches % batch_size)


def samples_per_volume(num_samples: object, batch_size: object, patches_per_step: object, device: str | torch.device,
                       network: torch.nn.Module | Callable[[], torch.nn.Module] | None = None, in_channels: int = 4,
                       roi_size: Sequence[int] = (128, 128, 128), amp_dtype: torch.dtype | None = None) -> int:
    """fast.yaml's patches per volume (``train_num_samples``): ``num_samples``, or on CUDA with
    ``patches_per_step`` ``auto`` as many as half the free GPU memory holds (`patch_memory`,
    `patches_for_memory`), divided by ``batch_size``; a number sets the patches per step outright.

    ``network``: the network, or its factory (fast.yaml passes ``@network_factory``): a factory is called only
    when memory is measured, with the random state restored afterwards, so that the training network is built
    where and as it would be without fast.yaml (referring to ``@network`` here built it earlier, which moved
    its seeded initial weights: the demo's Dice changed from 0.875 to 0.892)."""
    samples, batch = as_int(num_samples, "num_samples", minimum=1), as_int(batch_size, "batch_size", minimum=1)
    choice = str(patches_per_step).strip().lower()
    if choice in ("off", "none", "") or (choice == "auto" and (not on_cuda(device) or network is None)):
        return samples
    if choice != "auto":
        return max(1, as_int(patches_per_step, "patches_per_step", minimum=1) // batch)
    if not isinstance(network, torch.nn.Module):
        with torch.random.fork_rng(devices=[torch.device(device)]):
            network = network().to(device)
    free, _ = torch.cuda.mem_get_info(device)
    per_patch = patch_memory(network, in_channels, roi_size, device, amp_dtype)
    patches = patches_for_memory(free, per_patch, batch, minimum=samples * batch)
    logger.info(
        "patches per step from the GPU's memory: %d (%.2f GiB a patch of %s, %.1f GiB free)", patches,
        per_patch / 2**30, list(roi_size), free / 2**30)
    return patches // batch
