"""BraTS segmentation pipeline on MONAI: what the bundle configs call and MONAI lacks.

Flow: ``synthetic``/``datasets`` (data) -> ``check`` -> ``transforms`` -> bundle network -> training
(``validation``, ``checkpoints``, ``distributed``, ``monitoring``) -> ``inference`` (``ensemble``,
``postprocessing``) -> ``metrics``/``evaluation`` (numbers); ``labels`` holds the one channel/label/region table,
``precision`` where the network computes in half precision, ``fast`` the fast path's caching and loading,
``monai_workarounds`` the list of every place we work around MONAI.
"""

__version__ = "0.1.0"

import importlib as _importlib

from pipeline.errors import install_cli_excepthook as _install_hook
from pipeline.errors import running_monai_cli as _running_monai_cli

if _running_monai_cli():  # a refusal ends MONAI's CLI with its one line, not a traceback (pipeline.errors)
    _install_hook()


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: `import pipeline` then `pipeline.datasets` in bundle configs
    """Import a submodule on first use, so that bundle configs need only ``$import pipeline``.

    MONAI 1.6.1 binds ``$import pipeline.datasets`` to the name ``"pipeline.datasets"``, so that
    ``$pipeline.datasets.f()`` would fail (:mod:`pipeline.monai_workarounds`).
    """
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return _importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":  # the submodule exists but one of its imports is missing
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
