"""``--fold all`` (nnU-Net's): every case trains, none validates, ``model.pt`` is the last model; through the MONAI
CLI (an epoch schedule) and ``python -m pipeline train`` (a time budget), then a resume into another fold."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, TINY_ARGS, TINY_IDS, cli_overrides, run_bundle
from tests.warm import run_module


def _monai_cli(data: Path, run: Path, *extra: str):  # noqa: ANN202 - a CompletedProcess
    return run_bundle("training", cli_overrides(["--dataset_dir", str(data), "--run_dir", str(run), "--folds", "2",
                                                 "--epochs", "2", "--val_interval", "1", "--batch_size", "1",
                                                 *TINY_ARGS, *extra]), check=False)


def _pipeline_cli(data: Path, run: Path, *extra: str):  # noqa: ANN202
    ids = {**TINY_IDS, "folds": 2, "batch_size": 1, "val_every_min": 0.01}
    sets = [w for k, v in ids.items() for w in (k, json.dumps(v).replace(" ", "") if isinstance(v, list) else str(v))]
    return run_module([sys.executable, "-m", "pipeline", "train", str(data), "--run", str(run), "--minutes", "0.1",
                       "--set", *sets, *extra], capture_output=True, text=True, cwd=REPO, timeout=600)


PATHS = [pytest.param(_monai_cli, id="monai_cli_epochs"), pytest.param(_pipeline_cli, id="pipeline_cli_budget")]


@pytest.mark.parametrize("train", PATHS)
def test_fold_all_trains_every_case_validates_none_and_keeps_the_last_model(train, tiny_dataset: Path,
                                                                            tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_dataset, run, "--fold", "all")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    assert record["ids"]["fold"] == "all"
    assert len(record["split"]["train"]) == 4 and record["split"]["validation"] == []
    history = (run / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    assert len(history) >= 2 and all(row.split(",")[header.index("val_mean_dice")] == "" for row in history[1:])
    best, last = (torch.load(run / "models" / n, weights_only=True) for n in ("model.pt", "model_last.pt"))
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)
    assert "4 training and 0 validation case(s)" in result.stdout
    assert "(the last: --fold all holds no case out" in result.stdout
    next_line = result.stdout.strip().splitlines()[-1]  # no case of its data is new to it: new cases, to fill in
    assert next_line.startswith("next: ") and "NEW_CASES" in next_line and "--infer_fold" not in next_line


def test_a_resume_from_fold_all_into_a_numbered_fold_is_refused_naming_both(tiny_dataset: Path,
                                                                          tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _monai_cli(tiny_dataset, run, "--fold", "all").returncode == 0
    before = (run / "models" / "model.pt").read_bytes()
    result = _monai_cli(tiny_dataset, run, "--fold", "0", "--resume", "true")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "fold: 'all' -> 0" in last, last
    assert (run / "models" / "model.pt").read_bytes() == before


@pytest.mark.parametrize("fold", ["al", "-1", "1.5"])
def test_a_fold_neither_a_number_nor_all_is_refused_in_one_line(fold: str, tiny_dataset: Path,
                                                                tmp_path: Path) -> None:
    result = _monai_cli(tiny_dataset, tmp_path / "run", "--fold", fold)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --fold must be a fold number (0, 1, ...) or all"), last
    assert "Traceback" not in result.stderr
