"""BraTS segmentation pipeline on MONAI: what the bundle configs call and MONAI lacks.

Flow: ``synthetic``/``datasets`` (data) -> ``transforms`` -> bundle network -> training -> ``inference``
-> ``metrics``/``evaluation`` (numbers) ; ``labels`` holds the one channel/label/region table.
"""

__version__ = "0.1.0"

import importlib as _importlib

_SUBMODULES = ("datasets", "demo", "engine", "evaluation", "inference", "labels", "metrics", "synthetic")


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: `import pipeline` then `pipeline.datasets` in bundle configs
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
