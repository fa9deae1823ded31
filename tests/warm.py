"""Commands of this repository's Python (``python -m monai.bundle ...``, ``python -m pipeline ...``) run in a
process forked from a warm one that has MONAI, torch and the package imported: the same separate process, exit
status and output as `subprocess.run`, without the ~5 s each start spends importing MONAI (its submodules, ignite,
mlflow). Tests that need a truly fresh interpreter (import-time warnings, environment read at import, signals)
keep `subprocess`.

The children such a command starts itself (a verb's stage, cv's folds, a benchmark's and the demo's stages:
``python -m monai.bundle`` or ``python -m pipeline.bundle``) are served warm too, by `serve_children` (the test
session's fixture): a stand-in of a few milliseconds hands the command to a server that forks it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def _enter(target: str, args: list[str], cwd: str, environ: dict, umask: int) -> None:
    """Make this forked process the one ``python -m target args`` (or ``python target.py args``) would start with:
    the caller's environment, umask, working folder, ``sys.path[0]`` and ``sys.argv``, and multiprocessing's
    default start method (a process of the fork server is told to start its own by the fork server: a DataLoader's
    workers would be spawned, their transforms copies, where a fresh process forks them)."""
    multiprocessing.set_start_method(None, force=True)
    os.environ.clear()
    os.environ.update(environ)  # the caller's now (the server's is the one of its start)
    os.umask(umask)
    os.chdir(cwd)
    script = target.endswith(".py")
    sys.path[0:0] = [str(Path(target).resolve().parent) if script else cwd]  # what python puts first
    sys.argv = [target, *args]


def _run(target: str) -> int:
    """Run ``target`` (a module, or a script ending in ``.py``) as ``__main__``; its exit status as the interpreter
    would give it (an uncaught exception goes to `sys.excepthook`: 1; a non-integer exit code is printed: 1), or
    ``-SIGINT`` for an uncaught KeyboardInterrupt, by which the interpreter ends (`_exit`)."""
    import runpy

    code: object = 0
    try:
        if target.endswith(".py"):
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: BLE001 - handed to sys.excepthook as the interpreter would, exit status 1
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    if code is None:
        return 0
    if not isinstance(code, int):
        print(code, file=sys.stderr, flush=True)
        return 1
    return code


def _as_main(target: str, args: list[str], cwd: str, environ: dict, umask: int) -> int:
    """Run ``target`` in this forked process as a fresh interpreter runs ``python -m target args``, to its end: a
    main process of its own (`_become_main_process`), the exit hooks of the interpreter's own modules and those the
    command registers (not the fork server's: their state is the server's), then, as the interpreter ends, its
    non-daemon threads waited for (a background writer finishing its files) before the exit hooks run. Returns the
    exit status (`_run`)."""
    import atexit
    import logging
    import multiprocessing.util as mp_util
    import threading

    _become_main_process()
    atexit._clear()
    mp_util._finalizer_registry.clear()  # the server's
    atexit.register(logging.shutdown)  # registered at import in a fresh interpreter, as these two are
    atexit.register(mp_util._exit_function)
    _enter(target, args, cwd, environ, umask)
    code = _run(target)
    threading._shutdown()  # what the interpreter does first at its end, then the exit hooks
    atexit._run_exitfuncs()
    if "pipeline.core.files" in sys.modules:  # (its hook, were the module imported before the fork)
        sys.modules["pipeline.core.files"].release_held_folders()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _child(target: str, args: list[str], cwd: str, out: str, err: str, environ: dict, umask: int) -> None:
    for fd, path in ((1, out), (2, err)):
        opened = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    _exit(_as_main(target, args, cwd, environ, umask))


def _exit(code: int) -> None:
    """End this process with ``code``, or by SIGINT for ``-SIGINT``, as the interpreter ends after an uncaught
    KeyboardInterrupt (so a parent, a shell loop, sees the interrupt)."""
    if code == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


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


def _serve_one(conn: socket.socket) -> None:
    """In a process forked for one connection: receive the stand-in's streams and command, fork the command's
    process, send its pid, and its wait status once it ends; if the stand-in goes first (killed), kill it."""
    import array
    import json
    import select
    import struct

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # (the server's SIG_IGN would reap it before waitpid)
    fds = array.array("i")
    head, ancillary, _, _ = conn.recvmsg(8, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    size, payload = struct.unpack("!Q", head)[0], b""
    while len(payload) < size:
        payload += conn.recv(size - len(payload))
    request = json.loads(payload)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _command(request, list(fds))  # never returns
    for fd in fds:
        os.close(fd)
    conn.sendall(struct.pack("!q", pid))
    done = os.pidfd_open(pid)
    while True:
        ready, _, _ = select.select([conn, done], [], [])
        if done in ready:
            _, status = os.waitpid(pid, 0)
            conn.sendall(struct.pack("!i", status))
            return
        try:
            gone = not conn.recv(1)
        except OSError:
            gone = True
        if gone:  # the stand-in is gone (SIGKILL): so is the command
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return


def _become_main_process() -> None:
    """multiprocessing's record of this process as a main process of its own (what ``multiprocessing.process``
    makes at import, its ``_MainProcess``, deleted there): its children are its own, not the server's."""
    import itertools
    import multiprocessing.process as mp_process

    main = mp_process.BaseProcess.__new__(mp_process.BaseProcess)
    main._identity, main._name, main._parent_pid, main._popen, main._closed = (), "MainProcess", None, None, False
    main._config = {"authkey": mp_process.AuthenticationString(os.urandom(32)), "semprefix": "/mp"}
    mp_process._current_process, mp_process._parent_process = main, None
    mp_process._process_counter, mp_process._children = itertools.count(1), set()


def _command(request: dict, fds: list[int]) -> None:
    """The command's process: the stand-in's streams as 0, 1, 2, the signal handlers of a fresh interpreter, then
    the command run to its end (`_as_main`)."""
    try:
        for fd, stream in zip(fds, (0, 1, 2), strict=True):
            os.dup2(fd, stream)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin, for its life
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=stream.isatty() or stream is sys.stderr)
        for name, handler in (("SIGINT", signal.default_int_handler), ("SIGTERM", signal.SIG_DFL),
                              ("SIGHUP", signal.SIG_DFL), ("SIGCHLD", signal.SIG_DFL)):
            signal.signal(getattr(signal, name), handler)
        sys.executable, sys.orig_argv = request["executable"], request["orig_argv"]
        code = _as_main(request["module"], request["args"], request["cwd"], request["environ"], request["umask"])
    except BaseException:  # noqa: BLE001 - a fault of the serving itself: said, status 70 (EX_SOFTWARE)
        import traceback

        traceback.print_exc()
        code = 70
    _exit(code)


def _serve(path: str) -> None:
    """The server: accepts stand-ins on the unix socket ``path`` and forks one process per connection."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its connection processes reap themselves
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            try:
                _serve_one(conn)
            finally:
                os._exit(0)
        conn.close()


def serve_children(folder: Path) -> tuple[dict[str, str], multiprocessing.process.BaseProcess]:
    """Start the server of warm ``python -m monai.bundle`` (and ``pipeline.bundle``) children
    (`tests/warm_site/sitecustomize.py`), forked from the warm fork server, its socket in ``folder``. Returns the
    environment that sends a command's children there (the socket, and the stand-in on ``PYTHONPATH``) and the
    server's process (terminate it at the end)."""
    from tests.warm_site.sitecustomize import SOCKET_ENV

    path = str(folder / "children.sock")
    process = _context().Process(target=_serve, args=(path,), daemon=True)
    process.start()
    for _ in range(600):  # bound once the server runs (a stand-in finding none would run cold)
        if os.path.exists(path) or not process.is_alive():
            break
        time.sleep(0.05)
    site = str(Path(__file__).parent / "warm_site")
    python_path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    return {SOCKET_ENV: path, "PYTHONPATH": python_path}, process
