"""``torch.compile`` with a clean fallback: the network compiled on its first call, the build time logged, and the
eager network used instead when compilation fails (one warning naming the error).

`compiled` is the ``train#trainer#network`` of train.yaml: ``compile: true`` (fast.yaml's default on CUDA) wraps the
network; the checkpoints keep saving the network itself (``@network``: the same parameters, its own key names).
MONAI's ``SupervisedTrainer(compile=True)`` compiles too, but without a fallback and with a warning at every
iteration for MetaTensor inputs (`pipeline.monai_workarounds`); here a MetaTensor is passed as a plain tensor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from monai.data import MetaTensor

from pipeline.core.config import as_bool
from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)

#: ``compile_mode`` values: torch.compile's modes (``reduce-overhead`` replays CUDA graphs of the step's forward
#: and backward passes; the patch shape is static in training)
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledNetwork(torch.nn.Module):
    """``network`` run through ``torch.compile(network, mode=mode, backend=backend)`` from its first call.

    If that first call raises (no compiler, an unsupported operator), the error is logged once and the eager
    network runs from then on. ``build_seconds`` holds the first call's time (the forward graph's build; the backward
    graph is built during the first backward pass). The wrapped network is ``self.network``: ``train()``,
    ``eval()`` and ``parameters()`` reach it.
    """

    def __init__(self, network: torch.nn.Module, mode: str = "default", backend: str | Callable = "inductor",
                 dynamic: bool | None = False) -> None:
        super().__init__()
        if mode not in MODES:
            raise UserError(f"compile_mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.network = network
        self.mode = mode
        self.backend = backend if isinstance(backend, str) else getattr(backend, "__name__", "custom")
        options = {"backend": backend, "dynamic": dynamic}
        if backend == "inductor":
            options["mode"] = mode
        self._compiled = torch.compile(network, **options)
        self.build_seconds: float | None = None
        self.failed: str | None = None

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        args = tuple(a.as_tensor() if isinstance(a, MetaTensor) else a for a in args)
        if self._compiled is None:
            return self.network(*args, **kwargs)
        if self.build_seconds is not None:
            return self._compiled(*args, **kwargs)
        start = time.perf_counter()
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure falls back to the eager network
            self._compiled = None
            self.failed = _root_cause(e)
            logger.warning("torch.compile (%s, mode %s) failed after %.1f s, so the network runs uncompiled: %s",
                           self.backend, self.mode, time.perf_counter() - start, self.failed)
            torch._dynamo.reset()
            return self.network(*args, **kwargs)
        self.build_seconds = time.perf_counter() - start
        logger.info("torch.compile (%s, mode %s): the network's forward pass built in %.1f s", self.backend,
                    self.mode, self.build_seconds)
        return out


def _root_cause(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause of a compiler error (dynamo wraps the backend's own)."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None and inner is not error:
        error = inner
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def compiled(network: torch.nn.Module, enabled: object = False, mode: str = "default",
             backend: str | Callable = "inductor") -> torch.nn.Module:
    """The ``train#trainer#network``: ``network`` itself, or with ``enabled`` a `CompiledNetwork` of it."""
    if not as_bool(enabled, "compile"):
        return network
    return CompiledNetwork(network, mode=str(mode), backend=backend)
