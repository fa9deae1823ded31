"""The tests' ``python -m monai.bundle ...`` children, served warm (`tests.warm.serve_children`).

On ``PYTHONPATH`` during the tests only. A process started as exactly ``python -m monai.bundle ...`` (or
``-m pipeline.bundle``) while `SOCKET_ENV` names a server hands its standard streams, arguments, working folder,
environment and umask to that server, which forks a process with MONAI and torch imported to run the command; this
one stays as its stand-in for the caller: it passes on the signals it gets (SIGINT, SIGTERM, SIGHUP) and ends as
the command ended (its exit status, or the signal that killed it). A server that cannot be reached: the command
runs here, cold. Imports nothing heavy: it runs at every start of a Python process of the tests.
"""

from __future__ import annotations

import os
import sys

#: The environment variable naming the server's socket.
SOCKET_ENV = "PIPELINE_TESTS_WARM_SOCKET"
#: The modules served warm: the bundle's CLI, and the verbs' way into it (the children that the verbs, cv, the
#: benchmarks and the demo start).
SERVED = ("monai.bundle", "pipeline.bundle")
#: The signals passed on to the command.
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")


def _stand_in(path: str) -> None:
    import array
    import json
    import signal
    import socket
    import struct

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return  # no server: run cold
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:  # a closed stream: the command gets /dev/null, as Python gives a closed one
            fds.append(os.open(os.devnull, os.O_RDWR))
    umask = os.umask(0o22)
    os.umask(umask)
    payload = json.dumps({"module": sys.orig_argv[2], "args": sys.orig_argv[3:], "cwd": os.getcwd(),
                          "environ": dict(os.environ), "umask": umask, "executable": sys.executable,
                          "orig_argv": sys.orig_argv}).encode()
    conn.sendmsg([struct.pack("!Q", len(payload))],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
    conn.sendall(payload)

    def receive(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                os._exit(70)  # the server went away: EX_SOFTWARE
            data += chunk
        return data

    pid = struct.unpack("!q", receive(8))[0]
    for name in FORWARDED:
        signal.signal(getattr(signal, name), lambda signum, frame: os.kill(pid, signum))
    status = struct.unpack("!i", receive(4))[0]
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def _main() -> None:
    path = os.environ.get(SOCKET_ENV)
    if path and len(sys.orig_argv) > 2 and sys.orig_argv[1] == "-m" and sys.orig_argv[2] in SERVED:
        _stand_in(path)


_main()
