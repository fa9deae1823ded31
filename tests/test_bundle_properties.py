"""MONAI's own bundle property check passes on the training and inference workflows (model-zoo ids)."""

from __future__ import annotations

import shutil

import pytest
from monai.bundle import ConfigWorkflow

from tests.conftest import CONFIGS

TINY = {"device": "cpu", "num_workers": 0, "roi_size": [32, 32, 32], "unet_channels": [8, 16, 32],
        "num_res_units": 1, "check_jobs": 1}


@pytest.mark.slow
@pytest.mark.parametrize(("workflow_type", "stage"), [pytest.param("train", "train.yaml", id="training"),
                                                      pytest.param("infer", "inference.yaml", id="inference")])
def test_monais_property_check_passes(tiny_dataset, tmp_path, workflow_type, stage):
    run = tmp_path / "run"
    if workflow_type == "infer":  # inference needs a model: a checkpoint of the tiny network
        import torch

        parser = ConfigWorkflow(config_file=[str(CONFIGS / "common.yaml")], workflow_type="infer", **TINY).parser
        (run / "models").mkdir(parents=True)
        torch.save(parser.get_parsed_content("network_def").state_dict(), run / "models" / "model.pt")
    workflow = ConfigWorkflow(config_file=[str(CONFIGS / "common.yaml"), str(CONFIGS / stage)],
                              meta_file=str(CONFIGS / "metadata.json"), workflow_type=workflow_type,
                              dataset_dir=str(tiny_dataset), run_dir=str(run), folds=2, **TINY)
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.parser["output_dir"] == ("@run_dir" if workflow_type == "train" else "$@run_dir + '/seg'")
    shutil.rmtree(run, ignore_errors=True)
