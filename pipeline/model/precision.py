"""Runtime precision: where the network computes in half precision, on CUDA and on the CPU.

``amp`` (`on_cuda`) and ``amp_dtype`` give MONAI's engines their autocast on CUDA (`autocast_kwargs`); cuDNN
autotuning is an explicit ``initialize`` step (`set_cudnn_benchmark`); on a CPU with native bfloat16 `cpu_autocast`
wraps the network (MONAI's engines autocast on CUDA only: `pipeline.monai_workarounds`).
"""

from __future__ import annotations

import torch

from pipeline.core.config import as_bool
from pipeline.core.errors import UserError


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a `torch.device`, refused before any work when this process cannot compute on it: a name torch
    does not know (``gpu``), CUDA on a machine or torch build without it, a GPU index past the last.

    Raises:
        UserError: naming the device, what this machine has and what to pass.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device {device}: not a device torch knows; pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: this machine has no CUDA GPU that torch {torch.__version__} can use; "
                            "pass --device cpu (or leave --device out: a GPU when there is one)")
        if dev.index is not None and dev.index >= count:
            raise UserError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return dev


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


def autocast_kwargs(dtype: torch.dtype | str) -> dict[str, torch.dtype]:
    """The engines' ``amp_kwargs`` for the ``amp_dtype`` id: ``{"dtype": dtype}``, passed to MONAI's
    ``torch.autocast("cuda", **amp_kwargs)`` by the trainer and the evaluators alike.

    Args:
        dtype: ``torch.bfloat16`` / ``torch.float16`` or their names (``"bfloat16"``, ``"torch.float16"``).

    Raises:
        ValueError: ``dtype`` is not a half-precision floating type.
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), dtype)
    if dtype not in (torch.bfloat16, torch.float16):
        raise UserError(f"amp_dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
    return {"dtype": dtype}


def mode(engine_amp: bool, amp_dtype: torch.dtype, cpu_amp: bool) -> str:
    """How a network computes, for reports: ``"on (torch.bfloat16)"`` (the engines' AMP on CUDA, with its dtype),
    ``"cpu bf16"`` (`cpu_autocast`) or ``"off"`` (float32)."""
    if engine_amp:
        return f"on ({amp_dtype})"
    return "cpu bf16" if cpu_amp else "off"


def set_cudnn_benchmark(enabled: bool | str) -> None:
    """Set ``torch.backends.cudnn.benchmark`` for this process: the ``cudnn_benchmark`` id, an ``initialize`` step
    of training and inference. Autotuning picks the fastest convolution algorithm for each input shape once,
    which pays off when shapes repeat (training patches, sliding windows); it is off by default and only fast.yaml
    turns it on, on CUDA. ``true``/``false`` strings from the command line are accepted."""
    torch.backends.cudnn.benchmark = as_bool(enabled, "cudnn_benchmark")


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (Intel AMX or AVX-512 BF16), so that oneDNN's bf16
    convolutions beat float32; elsewhere bf16 is emulated and slower, and `cpu_autocast` stays off."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(check()) for check in checks if callable(check))


def _to_float32(output: object) -> object:
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(o) for o in output)
    return output


#: (network class, dtype) -> its subclass whose forward runs under CPU autocast (see `cpu_autocast`)
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

    MONAI's engines autocast on CUDA only (their ``amp``); on a CPU with native bfloat16 (`cpu_bf16_supported`)
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
