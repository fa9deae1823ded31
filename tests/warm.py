"""Commands of this repository's Python (``python -m monai.bundle ...``, ``python -m pipeline ...``) run in a
process forked from a warm one that has MONAI, torch and the package imported: the same separate process, exit
status and output as `subprocess.run`, without the ~5 s each start spends importing MONAI (its submodules, ignite,
mlflow). Tests that need a truly fresh interpreter (import-time warnings, environment read at import, signals)
keep `subprocess`.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

_CONTEXT: multiprocessing.context.ForkServerContext | None = None

#: Imported once in the fork server; every command forked from it starts with them.
PRELOAD = ["tests._preload"]


def _context() -> multiprocessing.context.ForkServerContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _child(target: str, args: list[str], cwd: str, out: str, err: str, environ: dict, umask: int) -> None:
    import runpy

    os.environ.clear()
    os.environ.update(environ)  # the caller's now (the server's is the one of its start)
    os.umask(umask)
    for fd, path in ((1, out), (2, err)):
        opened = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(cwd)
    script = target.endswith(".py")
    sys.path[0:0] = [str(Path(target).resolve().parent) if script else cwd]  # what python puts first
    sys.argv = [target, *args]
    code: object = 0
    try:
        if script:
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    except BaseException:  # noqa: BLE001 - handed to sys.excepthook as the interpreter would, exit status 1
        sys.excepthook(*sys.exc_info())
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr, flush=True)
        code = 1
    from pipeline.core.files import release_held_folders

    release_held_folders()  # what the command's exit hooks do: its folders' locks go (and empty folders it made)
    os._exit(code)  # no atexit of the fork server's modules, as a fresh process would end


def run_module(cmd: Sequence[str | os.PathLike], *, cwd: str | os.PathLike | None = None,
               timeout: float | None = None, **kwargs: object) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)`` run in a warm fork (module
    docstring) when ``cmd`` is ``[sys.executable, "-m", module, *args]`` or ``[sys.executable, "script.py", *args]``
    and nothing else is asked (another environment, a shell, input): otherwise `subprocess.run` itself."""
    cmd = [str(c) for c in cmd]
    plain = kwargs.pop("capture_output", True) is True and kwargs.pop("text", True) is True and not kwargs
    if not plain or len(cmd) < 2 or cmd[0] != sys.executable:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, **kwargs)
    if cmd[1] == "-m":
        target, args = cmd[2], cmd[3:]
    elif cmd[1].endswith(".py"):
        target, args = str(Path(cwd or os.getcwd(), cmd[1])), cmd[2:]
    else:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        out.touch()
        err.touch()
        umask = os.umask(0o22)
        os.umask(umask)
        process = _context().Process(target=_child, args=(target, args, str(cwd or os.getcwd()), str(out),
                                                          str(err), dict(os.environ), umask))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(cmd, timeout or 0, out.read_text(), err.read_text())
        return subprocess.CompletedProcess(cmd, process.exitcode, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))
