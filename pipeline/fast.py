"""What ``bundle/configs/fast.yaml`` calls, and the clocks of its benchmarks.

``fast.yaml`` caches the preprocessed training volumes on the training device in float16 and draws the patches
there (:func:`without_metadata`, :func:`without_cache_copy`, a ``ThreadDataLoader``), trains with channels-last-3d
convolution weights on the CPU, and on CUDA trains and infers with bf16 autocast and cuDNN autotuning; see its
header. Two of those cannot be said with ids alone:
MONAI's engines take ``amp`` as a bool and the autocast dtype from ``amp_kwargs``, which one overlay cannot set on
both the trainer (train.yaml) and the inference evaluator (inference.yaml), so :func:`mixed_precision` sets them
for the process when the engines read the ``amp`` id.

:class:`StepTimer` and :class:`TimedTransform` are the clocks of ``bench/bench_training.py`` and
``bench/bench_inference.py``: ignite handlers and a transform wrapper attached to the engines that the bundle
configs build, so that the benchmarks time what users run; :func:`machine` says where they ran.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence

import torch
from monai.transforms import Compose


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
    from pipeline.engine import as_bool

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
    from pipeline.engine import as_bool

    if not as_bool(enabled, "cpu_amp") or hasattr(type(network), "_autocast_base"):
        return network
    network.__class__ = _autocast_class(type(network), dtype)
    return network


def amp_mode(parser: object, engine_amp: bool) -> str:
    """How a built configuration runs its network, for the benchmarks' reports: ``"on"`` (MONAI's AMP, CUDA),
    ``"cpu bf16"`` (fast.yaml's :func:`cpu_autocast`) or ``"off"`` (float32). ``parser``: a ``ConfigParser``."""
    if engine_amp:
        return "on"
    if parser.get("cpu_amp") is not None and parser.get_parsed_content("cpu_amp"):
        return "cpu bf16"
    return "off"


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


def machine(device: str | torch.device = "cpu") -> str:
    """The machine a benchmark ran on, in a few lines: CPU model and threads, GPU, Python, torch, MONAI."""
    import monai

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    bf16 = "native bf16 (AMX / AVX-512 BF16)" if cpu_bf16_supported() else "no native bf16"
    lines = [f"CPU: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {bf16}",
             f"python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}"]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
                     f"{props.major}.{props.minor}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        lines.append("GPU: none")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append(f"device used: {device}; load average {load:.2f} at the start (other jobs share the CPU if > 0.5)")
    return "\n".join(lines)


def synchronize(device: str | torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU): a clock read after it includes that work."""
    if on_cuda(device):
        torch.cuda.synchronize(torch.device(device))


class StepTimer:
    """Times whole iterations of an ignite engine (data, forward, backward, optimiser; or one inference case).

    A step is the time from one ``ITERATION_COMPLETED`` to the next, so it includes fetching the batch.
    Steps across an epoch boundary or a restart of the data iterator (``epoch_length`` longer than the loader)
    are not recorded: they include the epoch-end handlers and the loader's start-up, which a real epoch of
    hundreds of steps pays once. ``data`` is the part of each step spent waiting for the batch
    (``GET_BATCH_STARTED`` to ``GET_BATCH_COMPLETED``). On CUDA the GPU is synchronised before each reading.

    Args:
        device: the engine's device.
        batch_size: a callable ``engine -> int`` (items of the step), e.g. patches of the batch; default 1.
        forward: also time the network (``ITERATION_STARTED`` to MONAI's ``FORWARD_COMPLETED``, the inferer's
            call, with the GPU synchronised at both ends); leave off for training, where the extra
            synchronisation would stall the step.
    """

    def __init__(self, device: str | torch.device, batch_size: Callable[[object], int] | None = None, *,
                 forward: bool = False) -> None:
        self.device = device
        self.batch_size = batch_size or (lambda engine: 1)
        self.forward = forward
        self.steps: list[float] = []
        self.data: list[float] = []
        self.network: list[float] = []
        self.items: list[int] = []
        self._last: float | None = None
        self._fetch: float = 0.0
        self._fetch_started: float = 0.0
        self._started: float = 0.0
        self._network: float = 0.0

    def attach(self, engine) -> None:  # noqa: ANN001 - an ignite Engine
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._restart)
        engine.add_event_handler(Events.DATALOADER_STOP_ITERATION, self._restart)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._get_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._get_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._completed)
        if self.forward:
            from monai.engines.utils import IterationEvents

            engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
            engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._forward_completed)

    def _iteration_started(self, engine) -> None:  # noqa: ANN001
        synchronize(self.device)
        self._started = time.perf_counter()

    def _forward_completed(self, engine) -> None:  # noqa: ANN001
        synchronize(self.device)
        self._network = time.perf_counter() - self._started

    def _restart(self, engine) -> None:  # noqa: ANN001
        self._last = None

    def _get_started(self, engine) -> None:  # noqa: ANN001
        self._fetch_started = time.perf_counter()

    def _get_completed(self, engine) -> None:  # noqa: ANN001
        self._fetch = time.perf_counter() - self._fetch_started

    def _completed(self, engine) -> None:  # noqa: ANN001
        synchronize(self.device)
        now = time.perf_counter()
        if self._last is not None:
            self.steps.append(now - self._last)
            self.data.append(self._fetch)
            self.network.append(self._network)
            self.items.append(int(self.batch_size(engine)))
        self._last = now

    def drop(self, warmup: int) -> StepTimer:
        """Forget the first ``warmup`` steps (cuDNN autotuning, allocator growth, first touches); returns self."""
        del self.steps[:warmup], self.data[:warmup], self.network[:warmup], self.items[:warmup]
        return self

    def extend(self, other: StepTimer) -> StepTimer:
        """Add the steps of ``other`` (another run of the same configuration); returns self."""
        self.steps += other.steps
        self.data += other.data
        self.network += other.network
        self.items += other.items
        return self

    def summary(self) -> dict[str, float]:
        """Median step, data-wait (and network) seconds, items per second at the median step and on average.

        Raises:
            ValueError: no step was timed.
        """
        if not self.steps:
            raise ValueError("no step timed: run more steps than the warm-up")
        step, items = statistics.median(self.steps), statistics.median(self.items)
        out = {"steps": len(self.steps), "step_s": step, "data_s": statistics.median(self.data),
               "items_per_step": items, "items_per_s": items / step, "min_s": min(self.steps),
               "max_s": max(self.steps), "mean_items_per_s": sum(self.items) / sum(self.steps)}
        if self.forward:
            out["network_s"] = statistics.median(self.network)
        return out


class TimedTransform:
    """Wrap a transform and time each call, e.g. writing NIfTI files; ``seconds`` holds one entry per call.

    ``Compose`` calls it like the wrapped transform. The GPU is synchronised before and after, so queued work
    of earlier transforms is not charged to this one and this one's is.
    """

    def __init__(self, transform: Callable, device: str | torch.device = "cpu") -> None:
        self.transform = transform
        self.device = device
        self.seconds: list[float] = []

    def __call__(self, data: Mapping[Hashable, object]) -> object:
        synchronize(self.device)  # GPU work queued before this transform is not charged to it
        t = time.perf_counter()
        out = self.transform(data)
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - t)
        return out
