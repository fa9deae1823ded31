"""BraTS segmentation pipeline on MONAI: what the bundle configs call and MONAI lacks.

The layout is the flow: `core` (errors, files, NIfTI, config values) -> `data` (layouts, datalists, the check,
label schemes, one `DataSource` per stage) -> `model` (run record, network, weights, precision) -> `training` |
`inference` | `evaluation`; at the top `bundle` (the config lists), `demo` and the command line. The places where
we work around MONAI are listed in `monai_workarounds`.
"""

__version__ = "0.1.0"

import sys

from pipeline.core.errors import (
    VERB_ENV,
    install_cli_excepthook,
    register_hint,
    register_rewrite,
    repeated_cli_ids,
    running_monai_cli,
)
from pipeline.core.lazy import submodules


def _bundle_hint(exc: BaseException) -> str | None:
    """The one line for a stage config given without common.yaml (`pipeline.bundle.overlay_hint`)."""
    from pipeline.bundle import overlay_hint  # only when such an error happens: bundle imports the model's record

    return overlay_hint(exc)


def _verb_spelling(line: str) -> str:
    """Under a verb of ``python -m pipeline`` (`pipeline.core.errors.VERB_ENV` names it), the bundle's ``--id value``
    advice as that verb takes it (`pipeline.commands.verb_spelling`)."""
    import os

    verb = os.environ.get(VERB_ENV)
    if not verb:
        return line
    from pipeline.commands import verb_spelling

    return verb_spelling(line, verb)


register_hint(_bundle_hint)
register_rewrite(_verb_spelling)
if running_monai_cli():  # a refusal ends MONAI's CLI with its one line, not a traceback (pipeline.core.errors)
    install_cli_excepthook()
    _repeated = repeated_cli_ids(sys.argv[1:])  # imported by the configs before any stage works
    if _repeated is not None:
        raise _repeated

__getattr__ = submodules(__name__)
