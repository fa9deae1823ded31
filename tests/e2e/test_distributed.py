"""End to end through the MONAI CLI (or the scripts a user runs): distributed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bundle import command
from tests.helpers import REPO, TINY_IDS, cli_args, parse_bundle, write_uneven_datalist

TINY_NET = TINY_IDS




@pytest.fixture(scope="module")
def uneven_datalist(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_uneven_datalist(tiny_dataset, tmp_path_factory.mktemp("datalist") / "datalist.json")




def _one_process_dice(datalist: Path, run_dir: Path, checkpoint: Path) -> tuple[float, torch.Tensor]:
    """val_mean_dice of ``checkpoint`` on fold 0, evaluated by train.yaml's evaluator in this process."""
    parser = parse_bundle("training", {"datalist": str(datalist), "run_dir": str(run_dir), "fold": 0, **TINY_NET})
    parser.get_parsed_content("network").load_state_dict(torch.load(checkpoint, weights_only=True))
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    per_case = parser.get_parsed_content("validate#key_metric")["val_mean_dice"].metric_fn.get_buffer()
    return float(evaluator.state.metrics["val_mean_dice"]), per_case


def test_two_gloo_processes_train_validate_and_equal_the_one_process_dice(uneven_datalist: Path,
                                                                          tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *command("training", multi_gpu=True)[1:],  # python -m monai.bundle run ... under torchrun
           *cli_args({"datalist": uneven_datalist, "fold": 0, "run_dir": run, "val_interval": 2, "batch_size": 1,
                       **TINY_NET})]

    # --resume true with no checkpoint yet starts at epoch 1, after the ranks have agreed on it
    result = subprocess.run([*cmd, "--epochs", "2", "--resume", "true"], capture_output=True, text=True, cwd=REPO,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    checkpoint = torch.load(run / "models" / "checkpoint.pt", weights_only=True)
    assert checkpoint["trainer"]["epoch"] == 2 and checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert log.count("process 1 of 2 on cpu (backend gloo)") == 1
    assert log.count("saved best val_mean_dice") == 1  # logs and checkpoints: rank 0 only
    assert log.count("data check: discovery and 4 labelled case(s)") == 1  # rank 0 alone checks the data
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1

    # validated once, at epoch 2, with the weights that model.pt holds; 3 cases on 2 ranks: 2 + 1
    two_process = checkpoint["best_model"]["best"]
    one_process, per_case = _one_process_dice(uneven_datalist, tmp_path / "eval", run / "models" / "model.pt")
    assert two_process == pytest.approx(one_process, rel=1e-5, abs=1e-7)
    # the comparison would catch a case dropped or counted twice: each such mean is far from the true one
    means = per_case.mean(dim=1)
    assert len(means) == 3
    for rows in [*itertools.combinations(range(3), 2), *([*range(3), i] for i in range(3))]:
        assert abs(float(means[list(rows)].mean()) - one_process) > 1e-4, rows
