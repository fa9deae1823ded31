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
    UserError,
    install_cli_excepthook,
    register_hint,
    register_rewrite,
    repeated_cli_ids,
    running_monai_cli,
)
from pipeline.core.files import hold_until_exit
from pipeline.core.guard import EXPORT_COMMANDS
from pipeline.core.lazy import submodules
from pipeline.core.process import exit_on_sigterm


def _bundle_hint(exc: BaseException) -> str | None:
    """The one line for a stage config given without common.yaml (`pipeline.bundle.overlay_hint`), or for a config
    component given an argument it does not take (`pipeline.bundle.argument_hint`)."""
    from pipeline.bundle import argument_hint, overlay_hint  # only when such an error happens

    return overlay_hint(exc) or argument_hint(exc)


def _verb_spelling(line: str) -> str:
    """Under a verb of ``python -m pipeline`` (`pipeline.core.errors.VERB_ENV` names it), the bundle's ``--id value``
    advice as that verb takes it (`pipeline.commands.verb_spelling`)."""
    import os

    verb = os.environ.get(VERB_ENV)
    if not verb:
        return line
    from pipeline.commands import verb_spelling

    return verb_spelling(line, verb)


def _export_refusal(argv: list[str]) -> UserError | None:
    """`pipeline.data.layouts.export_refusal` of a MONAI export's command line (imported for an export alone)."""
    if not argv or argv[0] not in EXPORT_COMMANDS:
        return None
    from pipeline.data.layouts import export_refusal

    return export_refusal(argv)


def _unknown_ids(argv: list[str]) -> UserError | None:
    """`pipeline.bundle.unknown_cli_ids` of a ``run`` command line (imported for a run alone)."""
    if not argv or argv[0] != "run":
        return None
    from pipeline.bundle import unknown_cli_ids

    return unknown_cli_ids(argv)


def enter_bundle_cli(argv: list[str]) -> None:
    """What a ``monai.bundle`` process sets up, by either way in (``python -m monai.bundle``: at ``import pipeline``,
    which the configs do first; ``python -m pipeline.bundle run``, the verbs' way: before it runs MONAI's CLI): a
    refusal ends it with its one line, not a traceback (`install_cli_excepthook`); SIGTERM ends it as an exit
    (`exit_on_sigterm`); the output folders its steps hold (evaluate, then draw, then report) stay held until it
    ends (`hold_until_exit`); an id given twice in ``argv`` is refused before any work (`repeated_cli_ids`), and an
    export over the checkpoint it exports, a run's file or inside a dataset (`pipeline.data.layouts.export_refusal`),
    and a run id or an id its config files do not hold (`pipeline.bundle.unknown_cli_ids`)."""
    install_cli_excepthook()
    exit_on_sigterm()
    hold_until_exit()
    refusal = repeated_cli_ids(argv) or _export_refusal(argv) or _unknown_ids(argv)
    if refusal is not None:
        raise refusal


register_hint(_bundle_hint)
register_rewrite(_verb_spelling)
if running_monai_cli():
    enter_bundle_cli(sys.argv[1:])

__getattr__ = submodules(__name__)
