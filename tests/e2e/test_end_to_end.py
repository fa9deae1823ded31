"""The three README commands, `python -m monai.bundle run training|inference|evaluate`, on 4 tiny cases."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.data.layouts import discover_cases
from tests.helpers import TINY_ARGS, cli_overrides, run_bundle

TINY = TINY_ARGS


def _bundle(run_id: str, *args: str) -> subprocess.CompletedProcess:
    return run_bundle(run_id, cli_overrides(args))


@pytest.fixture(scope="module")
def trained_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _bundle("training", "--dataset_dir", str(tiny_dataset), "--run_dir", str(run),
            "--folds", "2", "--epochs", "2", "--val_interval", "1", "--batch_size", "1", *TINY)
    return run


def test_training_writes_best_and_last_checkpoints(trained_run: Path) -> None:
    import torch

    for name in ("model.pt", "model_last.pt"):
        state = torch.load(trained_run / "models" / name, weights_only=True)
        assert any(k.endswith("weight") for k in state)


@pytest.fixture(scope="module")
def segmented_run(tiny_dataset: Path, trained_run: Path) -> Path:
    """The trained run after the README's inference command: ``<run>/seg/<case>.nii.gz``."""
    _bundle("inference", "--dataset_dir", str(tiny_dataset), "--run_dir", str(trained_run),
            "--output_dir", str(trained_run / "seg"), *TINY)
    return trained_run


def test_inference_writes_brats_labels_on_each_inputs_grid(tiny_dataset: Path, segmented_run: Path) -> None:
    out = segmented_run / "seg"
    cases = discover_cases(tiny_dataset)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{c.case_id}.nii.gz" for c in cases)
    for c in cases:
        seg, image = nib.load(out / f"{c.case_id}.nii.gz"), nib.load(c.images[0])
        assert seg.shape == image.shape
        np.testing.assert_allclose(seg.affine, image.affine)
        assert seg.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 4}


def test_evaluate_writes_metrics_for_every_case_and_region(tiny_dataset: Path, segmented_run: Path) -> None:
    trained_run = segmented_run
    result = _bundle("evaluate", "--dataset_dir", str(tiny_dataset), "--run_dir", str(trained_run), *TINY)
    rows = list(csv.DictReader((trained_run / "eval" / "metrics.csv").open()))
    assert {(r["case"], r["region"]) for r in rows} == {
        (c.case_id, reg) for c in discover_cases(tiny_dataset) for reg in ("ET", "TC", "WT")}
    summary = json.loads((trained_run / "eval" / "summary.json").read_text())
    for region in ("ET", "TC", "WT"):
        dice = [float(r["dice"]) for r in rows if r["region"] == region]
        assert summary["regions"][region]["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert "WT" in result.stdout
