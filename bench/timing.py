"""The benchmarks' clocks, and where and how they ran.

:class:`StepTimer` and :class:`TimedTransform` time ``bench/bench_training.py``, ``bench/bench_inference.py`` and
``bench/bench_cost.py``: ignite handlers and a transform wrapper attached to the engines that the bundle configs
build, so that the benchmarks time what users run. :func:`synchronize` makes a clock reading include the GPU's
queued work; :func:`machine` says where a benchmark ran and :func:`amp_mode` in which precision its network ran.

Import it as ``bench.timing``: the scripts put the repository root on ``sys.path``, the tests run from there.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Hashable, Mapping

import torch

from pipeline.model import precision
from pipeline.model.precision import cpu_bf16_supported, on_cuda


def amp_mode(parser: object, engine_amp: bool) -> str:
    """How a built configuration runs its network, for the benchmarks' reports: ``"on (torch.bfloat16)"`` (MONAI's
    AMP on CUDA, with the engines' ``amp_kwargs`` dtype), ``"cpu bf16"`` (fast.yaml's
    :func:`pipeline.model.precision.cpu_autocast`) or ``"off"`` (float32). ``parser``: a ``ConfigParser``."""
    return precision.mode(engine_amp, parser.get_parsed_content("amp_kwargs")["dtype"],
                          parser.get_parsed_content("cpu_amp_enabled"))


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
