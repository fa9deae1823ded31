"""Every bundle config parses and instantiates with MONAI's ConfigParser; metadata passes MONAI's schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from tests.conftest import CONFIGS, REPO, parse_bundle

OVERLAYS = {
    "training": ["train.yaml"],
    "inference": ["inference.yaml"],
    "evaluate": ["evaluate.yaml"],
    "demo_training": ["train.yaml", "variants/demo.yaml"],
    "demo_inference": ["inference.yaml", "variants/demo.yaml"],
}


def _readme_ids() -> list[str]:
    """The ids of the README's table "Ids you can override" (first column; ``a`` / ``b`` rows name two)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("### Ids you can override", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [name for cell in rows for name in re.findall(r"`([\w#]+)`", cell)]


#: ids the README promises can be overridden with --id value
USER_IDS = _readme_ids()


def _parser(overlays: list[str], **overrides: object) -> ConfigParser:
    return parse_bundle([CONFIGS / "common.yaml", *(CONFIGS / o for o in overlays)],
                        {"device": "cpu", "num_workers": 0, **overrides})


#: what each run id needs, beyond common.yaml's network_def and inferer
REQUIRED = {"training": ["train#trainer", "validate#evaluator", "initialize"],
            "inference": ["preprocessing", "postprocessing", "evaluator"],
            "evaluate": ["summary", "eval_cases"]}


@pytest.mark.parametrize("name", list(OVERLAYS))
def test_config_parses_and_defines_its_run_id(name: str) -> None:
    parser = _parser(OVERLAYS[name])
    run_id = name.removeprefix("demo_")
    for key in (run_id, "network_def", "inferer", *REQUIRED[run_id]):
        assert parser.get(key) is not None, f"{name}: missing id {key}"


def test_training_config_instantiates_trainer_and_evaluator(tiny_dataset: Path, tmp_path: Path) -> None:
    parser = _parser(["train.yaml", "variants/demo.yaml"], dataset_dir=str(tiny_dataset), run_dir=str(tmp_path),
                     folds=2, roi_size=[32, 32, 32], unet_channels=[8, 16, 32])
    trainer = parser.get_parsed_content("train#trainer")
    evaluator = parser.get_parsed_content("validate#evaluator")
    assert trainer.state.max_epochs == parser.get_parsed_content("epochs")
    assert len(trainer.data_loader.dataset) + len(evaluator.data_loader.dataset) == 4
    batch = next(iter(trainer.data_loader))
    b = parser["batch_size"] * parser["num_samples"]
    assert tuple(batch["image"].shape) == (b, 4, 32, 32, 32)  # 4 contrasts, one patch of roi_size
    assert tuple(batch["label"].shape) == (b, 3, 32, 32, 32)  # TC, WT, ET
    assert batch["label"].dtype == torch.float32


@pytest.mark.parametrize("overlays", [pytest.param(["train.yaml"], id="default"),
                                      pytest.param(["train.yaml", "variants/demo.yaml"], id="demo")])
def test_network_maps_four_contrasts_to_three_regions(overlays: list[str]) -> None:
    parser = _parser(overlays)
    net = parser.get_parsed_content("network_def")
    roi = parser.get_parsed_content("roi_size")
    size = [r // 2 if r > 64 else r for r in roi]  # any multiple of the total stride will do; keep it small
    with torch.no_grad():
        out = net(torch.zeros(1, 4, *size))
    assert tuple(out.shape) == (1, 3, *size)


def test_user_facing_ids_exist_under_their_documented_names() -> None:
    assert len(USER_IDS) >= 25 and {"dataset_dir", "amp_dtype", "cudnn_benchmark", "dist_backend"} <= set(USER_IDS)
    parser = _parser(["train.yaml", "inference.yaml", "evaluate.yaml", "variants/multi_gpu_train.yaml"])
    missing = [k for k in USER_IDS if k not in parser]
    assert not missing, f"ids promised in the README are missing: {missing}"


@pytest.mark.slow
def test_metadata_is_valid_against_monais_schema() -> None:
    pytest.importorskip("jsonschema")
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
         "--filepath", str(REPO / "tests" / "data" / "meta_schema_20240725.json")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr
