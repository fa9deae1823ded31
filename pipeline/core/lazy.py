"""Submodules loaded on first use, so that bundle configs need only ``$import pipeline``.

MONAI 1.6.1 binds ``$import pipeline.data.source`` to the name "pipeline.data.source", so ``$pipeline.data.source.f()``
would fail (`pipeline.monai_workarounds`); with `submodules` as a package's ``__getattr__`` (PEP 562),
``pipeline.data.source`` imports ``pipeline.data`` and then ``source`` when first named.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType


def submodules(package: str) -> Callable[[str], ModuleType]:
    """A module ``__getattr__`` for ``package`` that imports ``package.<name>`` when ``name`` is first used."""

    def __getattr__(name: str) -> ModuleType:
        if name.startswith("_"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":  # the submodule exists but one of its imports is missing
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
