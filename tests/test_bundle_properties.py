"""MONAI's own bundle property check passes on the training and inference workflows (model-zoo ids)."""

from __future__ import annotations

import shutil

import pytest
from monai.bundle import ConfigWorkflow

from pipeline.core.guard import is_within
from tests.helpers import CONFIGS, REPO, TINY_IDS, parse_bundle

TINY = {**TINY_IDS, "check_jobs": 1}


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
    bundle_before = _bundle_files()
    workflow.initialize()
    assert workflow.check_properties() == []
    assert _bundle_files() == bundle_before  # the bundle folder is read, never written
    assert workflow.parser["output_dir"] == ("@run_path" if workflow_type == "train" else "$@run_path + '/seg'")
    shutil.rmtree(run, ignore_errors=True)


def _bundle_files() -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (REPO / "bundle").rglob("*")}


OUTPUT_IDS = ("run_dir", "ckpt_dir", "output_dir", "eval_dir")


@pytest.mark.parametrize("run_id", ["training", "inference", "evaluate"])
def test_bundle_root_names_the_bundle_folder_and_no_output_lies_below_it(run_id: str) -> None:
    parser = parse_bundle(run_id)
    root = REPO / parser.get_parsed_content("bundle_root")  # relative to the repository root, where commands run
    assert (root / "configs" / "common.yaml").samefile(CONFIGS / "common.yaml")
    assert (root / "LICENSE").is_file() and (root / "configs" / "metadata.json").is_file()
    for output in OUTPUT_IDS:
        assert not is_within((REPO / parser.get_parsed_content(output)).resolve(), root.resolve()), output
