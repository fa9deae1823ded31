"""The network as a record: its class and arguments (`network_spec`), built back from them for inference without
its training-only parts (`inference_spec`), and the patch sizes it can take (`check_roi_size`)."""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import re
import sys
from collections.abc import Mapping, Sequence

import torch

from pipeline.core.config import differing
from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)


class NetworkError(UserError):
    """A network description or patch size that cannot be used; the message names the ids and the fix."""


def plain_value(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    raise NetworkError(f"the network argument {value!r} ({type(value).__name__}) cannot be recorded in run.json; "
                   "give network_factory plain values (numbers, strings, lists)")


def network_spec(factory: functools.partial) -> dict:
    """``{"_target_": "module.Class", **keyword arguments}`` of a ``network_factory`` (``_mode_: callable``)."""
    if not isinstance(factory, functools.partial):
        raise NetworkError(f"network_factory must be a partial (_mode_: callable), got {type(factory).__name__}")
    target = factory.func
    return {"_target_": f"{target.__module__}.{target.__qualname__}",
            **{k: plain_value(v) for k, v in sorted(factory.keywords.items())}}


#: A module's class, as a run's record names its network: ``monai.networks.nets.unet.UNet``.
_DOTTED = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+"

#: The packages a recorded network's module may be imported from; any other module must be imported already (by
#: the config's own network), so that reading a record never runs the top level of a module it names.
NETWORK_PACKAGES = ("monai", "torch", "pipeline")


def _network_module(module: str) -> object | None:
    """The module a record names, imported only from `NETWORK_PACKAGES` or when already imported; else None."""
    if module in sys.modules:
        return sys.modules[module]
    return importlib.import_module(module) if module.split(".", 1)[0] in NETWORK_PACKAGES else None


def build_from_spec(spec: Mapping) -> torch.nn.Module:
    """The network a `network_spec` describes (a run's record: data, not code, so its ``_target_`` must name a
    network class, a ``torch.nn.Module``, and nothing else is called).

    Raises:
        NetworkError: the description names no network class, or the class refuses its arguments.
    """
    target = str(spec.get("_target_", ""))
    module, _, name = target.rpartition(".")
    outside = module not in sys.modules and module.split(".", 1)[0] not in NETWORK_PACKAGES
    try:  # a dotted name of a module's class (no relative import, nothing else evaluated)
        cls = getattr(_network_module(module), name, None) if re.fullmatch(_DOTTED, target) else None
    except Exception:  # noqa: BLE001 - whatever importing it raises, it is no network class here
        cls = None
    if outside and re.fullmatch(_DOTTED, target):
        raise NetworkError(f"the recorded network {target!r} (run.json's network._target_) is outside "
                           f"{', '.join(NETWORK_PACKAGES)}, and a record does not import other modules: give the "
                           f"same network in the config too (--set network_factory#_target_ {target}), or restore "
                           "the run's run.json")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise NetworkError(f"the recorded network {target!r} is no network class that can be imported here (run.json's "
                           "network._target_): restore the run's run.json, or install the package that defines it")
    try:
        return cls(**{k: v for k, v in spec.items() if k != "_target_"})
    except (TypeError, ValueError, AssertionError) as e:
        raise NetworkError(f"the recorded network {target} cannot be built from its arguments in run.json ({e}): "
                           "restore the run's run.json") from None


#: Modules that only training uses: a checkpoint's tensors below them are not needed by an inference network
#: (MONAI's DynUNet builds its deep-supervision heads only with ``deep_supervision``, registered twice: in
#: ``deep_supervision_heads`` and as each skip layer's ``super_head``; in evaluation mode it returns the
#: full-resolution output alone).
TRAINING_ONLY_MODULES = ("deep_supervision_heads", "super_head")


def inference_spec(spec: Mapping) -> dict:
    """``spec`` as inference builds it: without training-only parts (DynUNet's ``deep_supervision`` off, which
    gives the same evaluation-mode output, computes no heads, and scripts with TorchScript)."""
    return {**spec, "deep_supervision": False} if spec.get("deep_supervision") else dict(spec)


def is_training_only(key: str) -> bool:
    """Whether a ``state_dict`` key lies below a `TRAINING_ONLY_MODULES` module (``networks.0.`` prefixes too)."""
    return any(part in TRAINING_ONLY_MODULES for part in key.split("."))


def recorded_network(network_factory: functools.partial, record: Mapping | None) -> torch.nn.Module:
    """The inference network: the one of a run's record (``run.json``, read once per stage) when it has one
    (logging the ids that differ from the config's), else the config's ``network_factory``; built by
    `inference_spec` (no deep-supervision heads)."""
    if record is None or "network" not in record:
        current = network_spec(network_factory)
        return build_from_spec(inference_spec(current)) if current.get("deep_supervision") else network_factory()
    spec, current = record["network"], network_spec(network_factory)
    diffs = differing(spec, current)
    if diffs:
        logger.info("network from the run's record (not the config's: %s)", "; ".join(diffs))
    return build_from_spec(inference_spec(spec))


def _divisor(spec: Mapping) -> tuple[int, int, int] | None:
    """How much a network of ``spec`` down-samples along each axis (roi_size must be a multiple), or None."""
    name = str(spec.get("_target_", "")).rsplit(".", 1)[-1]
    if name in ("UNet", "DynUNet"):
        per_axis = [s if isinstance(s, (list, tuple)) else [s] * 3 for s in spec.get("strides") or []]
    elif name == "SegResNet":
        per_axis = [[2, 2, 2]] * (len(spec.get("blocks_down") or [1, 2, 2, 4]) - 1)
    else:
        return None
    out = [1, 1, 1]
    for s in per_axis:
        out = [o * int(v) for o, v in zip(out, s, strict=True)]
    return (out[0], out[1], out[2])


def roi_sizes(roi_size: object) -> list[int]:
    """``roi_size`` as three whole numbers (``--roi_size "[32,32]"`` is refused in one line)."""
    if isinstance(roi_size, str):
        try:
            roi_size = ast.literal_eval(roi_size)
        except (ValueError, SyntaxError):
            pass
    ok = isinstance(roi_size, (list, tuple)) and len(roi_size) == 3
    try:
        sizes = [int(s) for s in roi_size] if ok else []
    except (TypeError, ValueError):
        sizes = []
    if len(sizes) != 3 or min(sizes) < 1:
        raise NetworkError(f"--roi_size must be three positive whole numbers (x, y, z), e.g. \"[128,128,128]\"; got "
                           f"{roi_size!r}")
    return sizes


def _size_option(sizes: Sequence[int]) -> str:
    return "--roi_size [" + ",".join(str(s) for s in sizes) + "]"


def check_roi_size(network_factory: functools.partial, roi_size: Sequence[int],
                   record: Mapping | None = None) -> list[int]:
    """Refuse a patch size the network cannot take, before anything runs; returns ``roi_size``.

    The network is ``network_factory``'s, or the one of the run's ``record`` when there is one. Each
    axis must be a multiple of the network's total down-sampling (16 for the default UNet, 8 for SegResNet, 32 for
    the DynUNet overlay) and at least twice it (instance norm needs more than one voxel at the bottom).

    Raises:
        NetworkError: naming the network, its down-sampling and the nearest valid sizes.
    """
    spec = (record or {}).get("network") or network_spec(network_factory)
    divisor = _divisor(spec)
    sizes = roi_sizes(roi_size)
    if divisor is None:
        return sizes
    if any(s % d or s < 2 * d for s, d in zip(sizes, divisor, strict=True)):
        lower = tuple(max(2 * d, (s // d) * d) for s, d in zip(sizes, divisor, strict=True))
        upper = tuple(max(2 * d, -(-s // d) * d) for s, d in zip(sizes, divisor, strict=True))
        options = " or ".join(_size_option(o) for o in dict.fromkeys((lower, upper)))
        name = str(spec["_target_"]).rsplit(".", 1)[-1]
        raise NetworkError(f"roi_size {sizes} does not fit {name}: each axis must be a multiple of its down-sampling "
                       f"{list(divisor)} and at least twice it; nearest valid: {options}")
    return sizes
