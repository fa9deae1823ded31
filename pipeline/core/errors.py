"""User errors: one line that names the case, the file and what to do, printed last, through both CLIs.

Every refusal of user input raises a `UserError` (or a subclass) whose message is that line. A full or read-only
disk and a missing optional package are turned into such a line too (`user_message`); other modules add hints for
other exceptions with `register_hint`. Under `python -m monai.bundle` the hook installed by `import pipeline`
prints `error: <the line>` as the last thing and exits 1 (`PIPELINE_TRACEBACK=1` shows the traceback)."""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from collections.abc import Callable
from types import TracebackType

#: Optional packages -> the ``pip install`` extra that brings them (pyproject.toml).
OPTIONAL_PACKAGES: dict[str, str] = {
    "mlflow": "tracking", "onnx": "export", "onnxruntime": "export", "onnxscript": "export", "jsonschema": "metadata",
    "brats_evaluation": "official", "panoptica": "official",
}


class UserError(ValueError):
    """Input the pipeline refuses; the message is one line naming the case or file and the fix."""


#: Functions that turn an exception other than a UserError into the one line to show (None: not theirs).
_HINTS: list[Callable[[BaseException], str | None]] = []


#: Set by the verbs of ``python -m pipeline`` (`pipeline.commands`) to the verb's name (train, infer, cv) for the
#: bundle runs they start: the run's ``next:`` line and its refusals name the verbs' options.
VERB_ENV = "PIPELINE_VERB"

#: Functions applied, in order, to the one line before it is printed (the verbs' spelling of the bundle's ids).
_REWRITES: list[Callable[[str], str]] = []


def register_rewrite(rewrite: Callable[[str], str]) -> None:
    """Add ``rewrite(line) -> line`` to what the CLI hook applies to the one line it prints."""
    if rewrite not in _REWRITES:
        _REWRITES.append(rewrite)


def register_hint(hint: Callable[[BaseException], str | None]) -> None:
    """Add ``hint(exc) -> line or None`` to what `user_message` asks for an exception that is not a UserError."""
    if hint not in _HINTS:
        _HINTS.append(hint)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def user_message(exc: BaseException) -> str | None:
    """The one line to show for ``exc`` (or any exception it was raised from), or None for a genuine bug.

    A `UserError` gives its own message; an ``OSError`` of a full or read-only disk, or of a missing
    permission, names the file and the fix; a missing optional package names the extra to install.
    """
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, UserError):
            return str(e)
    for hint in _HINTS:
        message = hint(exc)
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
        if isinstance(e, OSError) and e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR) and e.filename:
            what = {errno.ENOTDIR: "a file lies where a folder is needed on its path",
                    errno.EEXIST: "a file of that name is in the way",
                    errno.EISDIR: "it is a folder, not a file"}[e.errno]
            return f"cannot write {e.filename}: {what}; choose another output path (--out, --output_dir, --run_dir)"
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
            what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                    errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}[e.errno]
            where = e.filename or "an output file"
            return (f"cannot write {where}: {what}; free space or choose a writable folder "
                    "(--run_dir, --output_dir, --eval_dir)")
    return None


def _hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    from pipeline.core.process import says_stop, stopped, stopped_line

    if issubclass(exc_type, KeyboardInterrupt):  # Ctrl-C: one line, no traceback (said by the parent, if any)
        if says_stop():
            print(stopped_line("Ctrl-C"), file=sys.stderr, flush=True)
        return

    if stopped():  # after a SIGTERM: an error of the stop (a DataLoader worker stopped with the process) in one
        if os.environ.get("PIPELINE_TRACEBACK"):  # line, before the stop's own line at exit (`pipeline.core.process`)
            traceback.print_exception(exc_type, exc, tb)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"while stopping: {exc_type.__name__}: {first}", file=sys.stderr, flush=True)
        return
    message = user_message(exc)
    if message is None:
        sys.__excepthook__(exc_type, exc, tb)
        return
    if os.environ.get("PIPELINE_TRACEBACK"):
        traceback.print_exception(exc_type, exc, tb)
    for rewrite in _REWRITES:
        try:
            message = rewrite(message)
        except Exception:  # noqa: BLE001 - a rewrite that fails (the package half imported) leaves the line as it is
            pass
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


def _cli_flag(token: str) -> bool:
    """Whether Fire (MONAI's CLI parser) reads ``token`` as a flag: dashes, then a letter (``-1`` is a value)."""
    name = token.lstrip("-")
    return token.startswith("-") and bool(name) and (name[0].isalpha() or name[0] == "_")


def cli_ids(argv: list[str]) -> list[tuple[str, str, str]]:
    """``(id, as given, value)`` for each id of a ``monai.bundle`` command line, read as MONAI's CLI (1.6, through
    Fire) reads them: any number of leading dashes, ``-`` in a name as ``_``, ``--id=value`` as ``--id value``, a
    bare ``--noid`` as ``id`` False (after ``id``), ``a::b`` as ``a#b``, nothing after ``--``."""
    found: list[tuple[str, str, str]] = []
    args = list(argv)
    for i, token in enumerate(args):
        if token == "--":
            break
        if not _cli_flag(token):
            continue
        given, eq, value = token.partition("=")
        if not eq:
            bare = i + 1 >= len(args) or _cli_flag(args[i + 1]) or args[i + 1] == "--"
            value = "True" if bare else args[i + 1]
        key = given.lstrip("-").replace("-", "_").replace("::", "#")
        if not eq and value == "True" and key.startswith("no") and any(k == key[2:] for k, _, _ in found):
            key, value = key[2:], "False"
        found.append((key, given, value))
    return found


def repeated_cli_ids(argv: list[str]) -> UserError | None:
    """The refusal of an id given twice with different values in a ``monai.bundle run`` command line
    (``--fold 0 ... --fold 1``; `cli_ids`), or None. MONAI silently keeps the last, so ``make cv ARGS="--fold 1"``
    would train fold 1 into every fold's folder."""
    seen: dict[str, tuple[str, str]] = {}  # id -> (as given, value)
    for key, given, value in cli_ids(argv):
        if key in seen and seen[key][1] != value:
            first, earlier = seen[key]
            return UserError(f"{given} is given twice on the command line ({first} {earlier!r}, then {value!r}); "
                             "MONAI's CLI would silently take the last: give each id once (with make: not again in "
                             "ARGS)")
        seen.setdefault(key, (given, value))
    return None
