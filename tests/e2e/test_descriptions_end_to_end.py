"""Every BraTS edition, any dataset: a tiny training, inference and evaluation through the MONAI CLI per
description, with only --dataset_dir (and --label_scheme for BraTS 2024) changed."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from pipeline.data.labels import describe
from pipeline.data.layouts import detect_layout, discover_cases
from tests.helpers import TINY_ARGS, cli_overrides, run_bundle

TINY = TINY_ARGS


def _cli(run_id: str, *args: str) -> None:
    run_bundle(run_id, cli_overrides(args))


@pytest.mark.parametrize(("synth", "scheme_args"), [
    pytest.param({"layout": "brats2024"}, ["--label_scheme", "brats2024"], id="brats2024_post_treatment_rc"),
    pytest.param({"layout": "nnunet", "channels": ("T1ce",), "rc": True}, [], id="nnunet_one_channel_with_rc"),
])
def test_training_inference_and_evaluation_follow_the_datasets_description(tmp_path, synth, scheme_args):
    from pipeline.data.synthetic import write_dataset

    data, run = tmp_path / "data", tmp_path / "run"
    write_dataset(data, cases=4, shape=(40, 40, 32), seed=2, **synth)
    scheme = scheme_args[1] if scheme_args else detect_layout(data).label_scheme
    desc = describe(scheme)
    common = ["--dataset_dir", str(data), "--run_dir", str(run), *scheme_args]
    _cli("training", *common, "--folds", "2", "--epochs", "1", "--batch_size", "1", *TINY)
    _cli("inference", *common, "--num_workers", "0", "--device", "cpu")  # network from run.json
    _cli("evaluate", *common)

    for case in discover_cases(data):
        seg = nib.load(run / "seg" / f"{case.case_id}.nii.gz")
        image = nib.load(case.images[0])
        assert seg.shape == image.shape[:3] and np.allclose(seg.affine, image.affine)
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= desc.allowed
    with (run / "eval" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    cases = sorted(c.case_id for c in discover_cases(data))
    assert sorted((r["case"], r["region"]) for r in rows) == sorted((c, r) for c in cases for r in desc.evaluated)
