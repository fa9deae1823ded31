"""What ``bundle/configs/variants/fast.yaml`` calls for data loading and caching on the fast path.

``fast.yaml`` caches the preprocessed training volumes on the training device in float16 and draws the patches
there (`without_metadata`, `without_cache_copy`, a ``ThreadDataLoader`` with `loader_workers`);
see its header. Its precision settings (bf16 autocast on CUDA and on CPUs with native bf16, cuDNN autotuning) are
ids read by `pipeline.model.precision`. The benchmarks' clocks, which time these settings, are in
``bench/timing.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from monai.transforms import Compose

from pipeline.model.precision import on_cuda


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
    needs the affine). The previous setting is restored after each call. The setting is process-wide: while a
    ``ThreadDataLoader`` thread is inside this, the trainer's own thread creates no ``MetaTensor`` either, which
    it does not need; validation runs after the loader's thread has finished the epoch.

    Being a ``Compose`` subclass, it is not flattened into the dataset's ``Compose`` and counts as random, so
    ``CacheDataset`` caches everything before it.
    """

    def __call__(self, input_, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204 - as Compose.__call__
        from monai.data import get_track_meta, set_track_meta

        previous = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(input_, *args, **kwargs)
        finally:
            set_track_meta(previous)


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
