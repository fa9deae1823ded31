"""Stopping well: a command stopped by SIGTERM ends as an exit, and a command that runs another stops it too.

SIGTERM (``docker stop``, ``timeout``, Slurm, torchrun stopping its workers) would end Python without its exit
hooks; `exit_on_sigterm` turns it into ``SystemExit(143)``, so the output folders' locks are released and no
temporary file is left (`pipeline.core.files`). `run_child` runs a stage's ``monai.bundle`` process and passes such
a stop on to it, waiting for it to release its own folders, where ``subprocess.run`` would kill it outright.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: How long a stopped child may take to end before it is killed (s).
CHILD_GRACE_S = 30.0


#: What a stopped command says last (`stopped_line`): what it leaves, and how to go on.
STOPPED_ADVICE = ("what it wrote is whole (a case or a checkpoint half written is not kept); run the same command "
                  "again to go on (training: with --resume)")


def stopped_line(how: str) -> str:
    """The last line of a command stopped by ``how`` (``Ctrl-C``, ``SIGTERM``)."""
    return f"stopped ({how}): {STOPPED_ADVICE}"


#: Set by `run_child` for the command it starts: the parent says the stop (`says_stop`), once, last.
PARENT_SAYS_STOP_ENV = "PIPELINE_PARENT_SAYS_STOP"


def says_stop() -> bool:
    """Whether this process says `stopped_line` when stopped: not when a command of this package started it with
    `run_child` (a verb's bundle process, the demo's and the benchmarks' stages), which says it itself."""
    return not os.environ.get(PARENT_SAYS_STOP_ENV)


def _say_stopped() -> None:
    if says_stop():
        print(stopped_line("SIGTERM"), file=sys.stderr, flush=True)


_STOPS: list[int] = []


def stopped() -> bool:
    """Whether this process was told to stop (SIGTERM, `exit_on_sigterm`): an error raised since is the stop's
    (a DataLoader worker stopped with it), not one to show (`pipeline.core.errors`' hook says nothing of it)."""
    return bool(_STOPS)


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signum, lambda *_: None)  # once: a second SIGTERM (to the process group, then from a parent
    _STOPS.append(signum)                   # passing it on) must not cut the exit's own clean-up short; said
    atexit.register(_say_stopped)           # at the very end, after whatever a library logs of the stop
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """From now on SIGTERM ends this process as ``SystemExit(128 + 15)`` (its exit hooks run). Both CLIs call it:
    ``python -m pipeline`` and ``brats-pipeline`` (`pipeline.__main__.cli`), ``monai.bundle`` at ``import pipeline``
    (`pipeline.enter_bundle_cli`). Only the main thread can set a handler; elsewhere nothing changes."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def run_main(main: Callable[[], int | None]) -> int | None:
    """A command's entry around ``main``: SIGTERM ends it as an exit (`exit_on_sigterm`); Ctrl-C ends it with one
    line (`stopped_line`, unless the command that started it says it) and no traceback, then by SIGINT, as Python
    ends on an interrupt (a shell loop around it stops too; a status of 130 would let it go on). The verbs' CLI
    (`pipeline.__main__.cli`) and the benchmarks that run stages."""
    exit_on_sigterm()
    try:
        return main()
    except KeyboardInterrupt:
        if says_stop():
            print(stopped_line("Ctrl-C"), file=sys.stderr, flush=True)
        sys.excepthook = lambda *_: None  # then Python runs the exit hooks and ends by SIGINT
        raise


def run_child(cmd: Sequence[str], env: Mapping[str, str] | None = None, **popen: Any) -> int:
    """Run ``cmd`` and return its exit status. If this process is stopped meanwhile, the child is stopped too and
    given up to `CHILD_GRACE_S` to end (release its folders, remove its temporary files) before it is killed, and
    the stop goes on up here: SIGTERM (as `exit_on_sigterm` makes it) is passed on to the child; Ctrl-C reached it
    from the terminal already. A second Ctrl-C during that grace kills the child at once (a second SIGTERM is
    ignored: `exit_on_sigterm` acts once). ``popen``: more arguments of `subprocess.Popen` (``stdout``, ``cwd``)."""
    env = {**(os.environ if env is None else env), PARENT_SAYS_STOP_ENV: "1"}  # this process says the stop
    child = subprocess.Popen(list(cmd), env=env, **popen)
    try:
        return child.wait()
    except BaseException as stop:
        try:
            if child.poll() is None and not isinstance(stop, KeyboardInterrupt):
                child.send_signal(signal.SIGTERM)
            child.wait(timeout=CHILD_GRACE_S)
        except BaseException:  # noqa: BLE001 - the grace ran out, or another stop came: the child goes now
            pass
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        raise
