"""What ``bundle/configs/fast.yaml`` calls: precision, data loading and caching settings of the fast path.

``fast.yaml`` caches the preprocessed training volumes on the training device in float16 and draws the patches
there (:func:`without_metadata`, :func:`without_cache_copy`, a ``ThreadDataLoader`` with :func:`loader_workers`),
trains with channels-last-3d convolution weights on the CPU, and on CUDA trains and infers with bf16 autocast and
cuDNN autotuning; see its header. Two of those cannot be said with ids alone:
MONAI's engines take ``amp`` as a bool and the autocast dtype from ``amp_kwargs``, which one overlay cannot set on
both the trainer (train.yaml) and the inference evaluator (inference.yaml), so :func:`mixed_precision` sets them
for the process when the engines read the ``amp`` id; and MONAI's engines autocast on CUDA only, so on a CPU with
native bfloat16 :func:`cpu_autocast` wraps the network (common.yaml and ensemble.yaml build it through it). Both
are MONAI 1.6.1 workarounds, listed in :mod:`pipeline.monai_workarounds`.

The benchmarks' clocks, which time these settings, are in ``bench/timing.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from monai.transforms import Compose

from pipeline.config import as_bool


def on_cuda(device: str | torch.device) -> bool:
    """Whether ``device`` is a CUDA device and CUDA is available in this process."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def amp_dtype(device: str | torch.device) -> torch.dtype:
    """The autocast dtype for ``device``: ``bfloat16`` where the GPU supports it (Ampere and later), else ``float16``.

    bf16 has float32's exponent range, so losses and gradients cannot overflow; MONAI's ``GradScaler`` stays on
    and is harmless. On the CPU AMP is off (the ``amp`` id is false) and the dtype is not used.
    """
    if on_cuda(device) and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def mixed_precision(device: str | torch.device, dtype: torch.dtype | str | None = None, *,
                    cudnn_benchmark: bool = True) -> bool:
    """The ``amp`` id of fast.yaml: True on CUDA, where it also sets this process's autocast dtype and cuDNN autotuning.

    MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` enter ``torch.autocast("cuda", **amp_kwargs)``; with
    no ``dtype`` there, autocast takes the dtype set by ``torch.set_autocast_dtype`` (a per-thread setting, here
    the main thread's, the one the engines run in). ``cudnn.benchmark`` picks the fastest convolution algorithm
    for each input shape once, which pays off when shapes repeat: training patches and sliding windows.

    Args:
        device: the ``device`` id; on the CPU nothing is changed and the result is False (AMP off, as in common.yaml).
        dtype: ``torch.bfloat16`` / ``torch.float16`` or their names; None: :func:`amp_dtype`.
        cudnn_benchmark: the value for ``torch.backends.cudnn.benchmark`` (``true``/``false`` strings accepted).

    Raises:
        ValueError: ``dtype`` is not a half-precision floating type.
    """
    dtype = amp_dtype(device) if dtype is None else dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), dtype)
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"amp_dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
    if not on_cuda(device):
        return False
    torch.set_autocast_dtype("cuda", dtype)
    torch.backends.cudnn.benchmark = as_bool(cudnn_benchmark, "cudnn_benchmark")
    return True


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (Intel AMX or AVX-512 BF16), so that oneDNN's bf16
    convolutions beat float32; elsewhere bf16 is emulated and slower, and :func:`cpu_autocast` stays off."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(check()) for check in checks if callable(check))


def _to_float32(output: object) -> object:
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(o) for o in output)
    return output


#: (network class, dtype) -> its subclass whose forward runs under CPU autocast (see :func:`cpu_autocast`)
_AUTOCAST_CLASSES: dict[tuple[type, torch.dtype], type] = {}


def _autocast_class(base: type, dtype: torch.dtype) -> type:
    if (base, dtype) not in _AUTOCAST_CLASSES:
        def forward(self: torch.nn.Module, *args: object, **kwargs: object) -> object:
            with torch.autocast("cpu", dtype=dtype):
                output = base.forward(self, *args, **kwargs)
            return _to_float32(output)

        name = f"CPUAutocast{base.__name__}"
        _AUTOCAST_CLASSES[base, dtype] = type(name, (base,), {"forward": forward, "_autocast_base": base,
                                                                "__doc__": f"{base.__name__} under CPU autocast"})
    return _AUTOCAST_CLASSES[base, dtype]


def cpu_autocast(network: torch.nn.Module, enabled: bool | str = True,
                 dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """``network`` with its forward run under ``torch.autocast("cpu", dtype)`` when ``enabled``; returns it.

    MONAI's engines autocast on CUDA only (their ``amp``); on a CPU with native bfloat16 (:func:`cpu_bf16_supported`)
    fast.yaml turns this on for training and inference. The network becomes an instance of a subclass of its own
    class whose ``forward`` is the original one inside the autocast, so its parameters, ``state_dict`` keys and
    checkpoints are unchanged, a deep copy stays autocast, and ``torch.compile`` traces it. Floating outputs
    come back as float32 (the loss, the sigmoid and the sliding-window stitching stay in float32). Gradients
    flow back through the bf16 operations in bf16; the weights and the optimiser stay float32 (no loss scaling
    is needed: bf16 has float32's exponent range).
    """
    if not as_bool(enabled, "cpu_amp") or hasattr(type(network), "_autocast_base"):
        return network
    network.__class__ = _autocast_class(type(network), dtype)
    return network


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
    """:class:`WithoutMetadata` over ``transforms`` (the ``random_transforms`` list of train.yaml)."""
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
