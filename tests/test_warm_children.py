"""The tests' warm ``monai.bundle`` children (`tests.warm.serve_children`) end as a cold process would: the same
output, exit status, working folder, environment and signals, and none outlives the process that stands in for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.warm_site.sitecustomize import SOCKET_ENV

#: What the command sees, printed by ``python -m monai.bundle run probe --config_file probe.yaml`` (a served
#: module), a config file of ``$`` expressions.
PROBE = """\
imports: ["$import os", "$import sys", "$import multiprocessing as mp"]
probe:
  - "$print('cwd', os.getcwd(), flush=True)"
  - "$print('env', os.environ.get('PROBE_VALUE'), flush=True)"
  - "$print('stdin', sys.stdin.readline().strip(), flush=True)"
  - "$print('multiprocessing', mp.get_start_method(), mp.current_process().name, flush=True)"
  - "$print('pid', os.getpid(), flush=True)"
  - "$sys.exit(int(os.environ.get('PROBE_EXIT', '0')))"
"""


def _start(tmp_path: Path, **env: str) -> subprocess.Popen:
    config = tmp_path / "probe.yaml"
    config.write_text(PROBE)
    return subprocess.Popen([sys.executable, "-m", "monai.bundle", "run", "probe", "--config_file", str(config)],
                            cwd=tmp_path, env={**os.environ, **env}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _seen(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.split(" ")[0] in ("cwd", "env", "stdin", "multiprocessing")]


def test_a_served_child_sees_what_a_cold_one_does_and_ends_with_its_status(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder, environment, stdin, multiprocessing's start method and process name, the exit status."""
    assert os.environ.get(SOCKET_ENV)  # the session's server
    seen = {}
    for served in (True, False):
        if not served:
            monkeypatch.delenv(SOCKET_ENV)
        proc = _start(tmp_path, PROBE_VALUE="x y", PROBE_EXIT="3")
        out, err = proc.communicate("typed\n", timeout=120)
        assert proc.returncode == 3, err
        assert (f"pid {proc.pid}\n" not in out) == served  # served: the command ran in a process of the server's
        seen[served] = _seen(out)
    assert seen[True] == seen[False]
    assert f"cwd {tmp_path}" in seen[True] and "env x y" in seen[True] and "stdin typed" in seen[True]
    assert "multiprocessing fork MainProcess" in seen[True]


def _sleeper(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A ``monai.bundle`` command that prints its pid and sleeps; returns it and the pid it printed."""
    config = tmp_path / "sleep.yaml"
    config.write_text('sleep:\n  - "$print(\'pid\', __import__(\'os\').getpid(), flush=True)"\n'
                      '  - "$__import__(\'time\').sleep(60)"\n')
    proc = subprocess.Popen([sys.executable, "-m", "monai.bundle", "run", "sleep", "--config_file", str(config)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # (MONAI logs to stdout first)
        if line.startswith("pid "):
            return proc, int(line.split()[1])
    raise AssertionError(proc.communicate()[1])


@pytest.mark.parametrize("served", [True, False], ids=["served", "cold"])
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)],
                         ids=["SIGTERM", "SIGINT_KeyboardInterrupt_then_SIGINT"])
def test_a_signal_to_the_stand_in_reaches_the_command_and_it_ends_as_a_cold_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: bool, signum: int, status: int) -> None:
    if not served:
        monkeypatch.delenv(SOCKET_ENV)
    proc, pid = _sleeper(tmp_path)
    assert (pid != proc.pid) == served
    time.sleep(1)  # in its sleep (a KeyboardInterrupt raised in MONAI's evaluation of the next line can be lost)
    for _ in range(3):  # (and again if it was lost all the same, on a busy machine: cold ones lost it too)
        proc.send_signal(signum)
        try:
            proc.wait(timeout=15)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.communicate(timeout=60)
    assert proc.returncode == status


def test_a_killed_stand_in_takes_its_command_with_it(tmp_path: Path) -> None:
    proc, pid = _sleeper(tmp_path)
    assert pid != proc.pid  # served: the command runs in a process of the server's
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"the command {pid} outlived its stand-in")


@pytest.mark.parametrize("how", ["served", "cold", "run_module"])
def test_a_command_ends_after_its_threads_and_exit_hooks_as_a_cold_one(tmp_path: Path, how: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-daemon thread (a background writer) finishes before the process ends, then the exit hooks run: the
    served command, a cold one and one forked by `tests.warm.run_module` alike (review: the served one killed it)."""
    from tests.warm import run_module

    done, hooked = tmp_path / "thread_done", tmp_path / "hook_ran"
    config = tmp_path / "thread.yaml"
    config.write_text(
        'imports: ["$import atexit", "$import threading", "$import time"]\n'
        f'go:\n  - "$atexit.register(lambda: open({str(hooked)!r}, \'w\').write(str(__import__(\'os\').path'
        f'.exists({str(done)!r}))))"\n'
        f'  - "$threading.Thread(target=lambda: (time.sleep(1), open({str(done)!r}, \'w\').close())).start()"\n')
    if how == "cold":
        monkeypatch.delenv(SOCKET_ENV)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "go", "--config_file", str(config)]
    if how == "run_module":
        result = run_module(cmd, cwd=tmp_path, timeout=120)
    else:
        result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert done.exists() and hooked.read_text() == "True"  # the thread first, then the hook
