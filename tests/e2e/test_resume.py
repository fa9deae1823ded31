"""End to end through the MONAI CLI (or the scripts a user runs): resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from pipeline.bundle import command
from tests.helpers import REPO, cli_args, write_uneven_datalist
from tests.helpers import TINY_IDS as TINY_NET

#: A training killed with SIGKILL, its threads set by the environment at import: its children start cold.
pytestmark = pytest.mark.usefixtures("cold_children")

#: fold 1 of the uneven datalist validates on 1 case; fold 0's 3 cases train: 3 steps per epoch with batch 1
TRAIN = {"fold": 1, "batch_size": 1, "num_samples": 1, "warmup_epochs": 0, **TINY_NET}


@pytest.fixture(scope="module")
def uneven_datalist(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_uneven_datalist(tiny_dataset, tmp_path_factory.mktemp("datalist") / "datalist.json")


def _epoch_in(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, weights_only=True)["trainer"]["epoch"])


def test_training_killed_mid_epoch_resumes_and_completes_its_epochs(uneven_datalist: Path, tmp_path: Path) -> None:
    run, epochs = tmp_path / "run", 4
    checkpoint = run / "models" / "checkpoint.pt"
    cmd = [*command("training"),
           *cli_args({"datalist": uneven_datalist, "run_dir": run, "epochs": epochs, "val_interval": 2,
                       **TRAIN, "num_samples": 4})]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, seen = time.monotonic() + 300, None  # (the suite runs in two workers: the cores are shared)
        while time.monotonic() < deadline and proc.poll() is None:
            stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
            if stamp != seen and stamp is not None:
                seen = stamp
                if _epoch_in(checkpoint) >= 2:  # epoch 3 has just begun
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = _epoch_in(checkpoint)  # the file is whole: it loads
    assert 2 <= killed_at < epochs

    result = subprocess.run([*cmd, "--resume", "true"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert f"resumed from {checkpoint}: {killed_at} of {epochs} epochs done" in log
    state = torch.load(checkpoint, weights_only=True)
    assert state["trainer"]["epoch"] == epochs
    assert state["trainer"]["iteration"] == epochs * state["trainer"]["epoch_length"]
    for name in ("model.pt", "model_last.pt"):
        torch.load(run / "models" / name, weights_only=True)
    assert sorted(p.name for p in (run / "models").iterdir()) == ["checkpoint.pt", "model.pt", "model_last.pt"]
