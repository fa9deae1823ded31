"""A command stopped by SIGTERM (docker stop, a time limit, Slurm) ends as an exit through every way in: it releases
the output folder it holds, so that the next command into that folder is not refused, and leaves no empty folder it
made; a verb passes the stop on to the ``monai.bundle`` process it runs, which releases its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core.files import FolderLock
from tests.helpers import REPO

#: Signals sent to the commands and their process groups: their children start cold, as a user's do.
pytestmark = pytest.mark.usefixtures("cold_children")


def _holding_config(tmp_path: Path, out: Path) -> Path:
    config = tmp_path / "hold.json"  # a stage that holds its output folder and then works for a while
    config.write_text(
        '{"imports": ["$import time", "$import pipeline"], "run": ['
        f'"$pipeline.core.files.hold_folder(\'{out}\', what=\'evaluation\')", "$time.sleep(120)"]}}')
    return config


def _command(cli: str, tmp_path: Path, tiny_dataset: Path) -> tuple[list[str], Path]:
    out = tmp_path / "out"
    if cli == "python_m_pipeline":  # synth holds its folder while it writes 200 cases
        return [sys.executable, "-m", "pipeline", "synth", str(out), "--cases", "200", "--shape", "96", "96", "64"], out
    if cli == "verb_train":  # python -m pipeline train runs the bundle in a child, which holds the run folder
        return [sys.executable, "-m", "pipeline", "train", str(tiny_dataset), "--run", str(out), "--set", "folds", "2",
                "--set", "epochs", "500"], out
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(_holding_config(tmp_path, out))], out


#: ``python -m pipeline.bundle run`` (the verbs' way into MONAI's CLI) is the child that ``verb_train`` stops.
@pytest.mark.parametrize("cli", ["python_m_pipeline", "monai_bundle_run", "verb_train"])
def test_a_command_stopped_by_sigterm_releases_its_output_folder(cli: str, tmp_path: Path,
                                                                 tiny_dataset: Path) -> None:
    cmd, out = _command(cli, tmp_path, tiny_dataset)
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # (a file, not a pipe nobody reads while it runs)
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / FolderLock.NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and (out / FolderLock.NAME).exists(), log.read_text()[-3000:]
        time.sleep(0.5)  # (the handler is set before the lock is taken; the lock file is written whole)
        proc.send_signal(signal.SIGTERM)  # to the command only, as docker stop does: a verb passes it on
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None or cli == "verb_train":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its process group (a failed test)
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert not (out / FolderLock.NAME).exists(), f"the stopped command left its lock: {log.read_text()[-3000:]}"
    said = log.read_text()  # one line, last, once (a verb's bundle process leaves it to the verb)
    assert said.strip().splitlines()[-1].startswith("stopped (SIGTERM): ") and said.count("stopped (") == 1, said
    assert "Traceback" not in said, said[-3000:]
    if cli == "monai_bundle_run":
        assert not out.exists()  # made by the command, nothing written: removed with the lock
