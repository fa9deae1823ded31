"""User errors: one line that names the case, the file and what to do, printed last, also through MONAI's CLI.

Every refusal of user input (a dataset, a datalist, a run folder, an output location, a checkpoint) raises a
:class:`UserError` (or a subclass, e.g. :class:`pipeline.datasets.DatasetError`) whose message is that line.

Through ``python -m monai.bundle run ...`` the error surfaces inside MONAI's ``RuntimeError("Failed to evaluate
ConfigExpression ...")`` at the end of a long traceback. :func:`install_cli_excepthook` (installed when the
bundle configs ``import pipeline`` under MONAI's CLI) prints ``error: <the line>`` as the last thing instead,
and exits 1; ``PIPELINE_TRACEBACK=1`` prints the whole traceback above it. A full or read-only disk and a
missing optional package are turned into such a line too (:func:`user_message`).
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from types import TracebackType

#: Optional packages -> the ``pip install`` extra that brings them (pyproject.toml).
OPTIONAL_PACKAGES: dict[str, str] = {
    "mlflow": "tracking", "onnx": "export", "onnxruntime": "export", "onnxscript": "export", "jsonschema": "metadata",
    "brats_evaluation": "official", "panoptica": "official",
}


class UserError(ValueError):
    """Input the pipeline refuses; the message is one line naming the case or file and the fix."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def user_message(exc: BaseException) -> str | None:
    """The one line to show for ``exc`` (or any exception it was raised from), or None for a genuine bug.

    A :class:`UserError` gives its own message; an ``OSError`` of a full or read-only disk, or of a missing
    permission, names the file and the fix; a missing optional package names the extra to install.
    """
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, UserError):
            return str(e)
    for e in chain:
        missing = re.search(r"the referring item `@([^`#]+)[^`]*` is not defined in the config content", str(e))
        if isinstance(e, ValueError) and missing:
            message = _overlay_alone(missing.group(1))
            if message:
                return message
    for e in chain:
        if isinstance(e, ImportError):  # ModuleNotFoundError, and MONAI's OptionalImportError ("import mlflow ...")
            name = (e.name or "").split(".")[0] if isinstance(e, ModuleNotFoundError) else ""
            top = name if name in OPTIONAL_PACKAGES else next(
                (p for p in OPTIONAL_PACKAGES if re.search(rf"\b{p}\b", str(e))), None)
            if top:
                extra = OPTIONAL_PACKAGES[top]
                return (f"the optional package {top} is not installed; install it with: make extra-{extra} "
                        f"(or pip install -e '.[{extra}]')")
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
            what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                    errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}[e.errno]
            where = e.filename or "an output file"
            return (f"cannot write {where}: {what}; free space or choose a writable folder "
                    "(--run_dir, --output_dir, --eval_dir)")
    return None


def _overlay_alone(ref: str) -> str | None:
    """The fix when MONAI misses ``@ref`` because common.yaml is not in ``--config_file`` (a stage given alone)."""
    from pipeline.bundle import STAGES, common_ids, config_files, config_list

    if ref not in common_ids():
        return None
    from pipeline.runs import _config_files  # the --config_file list of this command line

    given = [os.path.basename(f) for f in _config_files(sys.argv)]
    if "common.yaml" in given:
        return None
    stage = next((s for s in given if s in STAGES.values()), "train.yaml")
    run_id = next(k for k, v in STAGES.items() if v == stage)
    files = [os.path.relpath(f) for f in config_files(run_id)]
    return (f"{stage} is an overlay on common.yaml (which defines @{ref}): pass --config_file "
            f"\"{config_list(files)}\"; python -m pipeline.bundle configs {run_id} [--fast] [--network N] [--demo] "
            "prints the list")


def _hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    message = user_message(exc)
    if message is None:
        sys.__excepthook__(exc_type, exc, tb)
        return
    if os.environ.get("PIPELINE_TRACEBACK"):
        traceback.print_exception(exc_type, exc, tb)
    sys.stderr.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)


def install_cli_excepthook() -> None:
    """Print user errors as one last line (see the module docstring); other exceptions are printed as usual."""
    if sys.excepthook is not _hook:
        sys.excepthook = _hook


def running_monai_cli() -> bool:
    """Whether this process is ``python -m monai.bundle ...`` (MONAI's CLI, also under torchrun)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return bool(spec is not None and spec.name.startswith("monai.bundle"))
