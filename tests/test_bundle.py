"""Every bundle config parses and instantiates with MONAI's ConfigParser; metadata passes MONAI's schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from tests.helpers import CONFIGS, REPO, parse_bundle

#: name -> (run id, variants of pipeline.bundle.config_files)
BUNDLES = {
    "training": ("training", {}),
    "inference": ("inference", {}),
    "evaluate": ("evaluate", {}),
    "demo_training": ("training", {"demo": True}),
    "demo_inference": ("inference", {"demo": True}),
    "multi_gpu_training": ("training", {"multi_gpu": True}),
    "budget_training": ("training", {"budget": True}),
    "budget_inference_plain": ("inference", {"budget": True}),  # a --minutes run trained with --plain (red team:
    "budget_inference_fast": ("inference", {"budget": True, "fast": True}),  # KeyError 'train' at inference)
}


def _readme_ids() -> list[str]:
    """The ids of docs/usage.md's table "Ids you can override" (first column; ``a`` / ``b`` rows name two)."""
    text = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    table = text.split("## Ids you can override", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [name for cell in rows for name in re.findall(r"`([\w#]+)`", cell)]


#: ids the docs promise can be overridden with --id value
USER_IDS = _readme_ids()


def _parser(run_id: str, variants: dict | None = None, **overrides: object) -> ConfigParser:
    return parse_bundle(run_id, {"device": "cpu", "num_workers": 0, **overrides}, **(variants or {}))


#: what each run id needs, beyond common.yaml's network_def and inferer
REQUIRED = {"training": ["train#trainer", "validate#evaluator", "initialize"],
            "inference": ["preprocessing", "postprocessing", "evaluator"],
            "evaluate": ["reference"]}


@pytest.mark.parametrize("name", list(BUNDLES))
def test_config_parses_and_defines_its_run_id(name: str) -> None:
    run_id, variants = BUNDLES[name]
    parser = _parser(run_id, variants)
    for key in (run_id, "network_def", "inferer", *REQUIRED[run_id]):
        assert parser.get(key) is not None, f"{name}: missing id {key}"


@pytest.mark.parametrize("name", list(BUNDLES))
def test_tracking_saves_no_config_file_into_an_output_folder_before_its_guard(name: str) -> None:
    """MONAI's --tracking mlflow exports config_<date>.json into output_dir (evaluation: the predictions, an input;
    training: the run folder, before start_training has checked and locked it) unless save_execute_config is
    false."""
    run_id, variants = BUNDLES[name]
    assert _parser(run_id, variants).get("save_execute_config") is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("variants", [{}, {"fast": True}, {"ensemble": True}], ids=["plain", "fast", "ensemble"])
@pytest.mark.parametrize("run_id", ["training", "inference"])
def test_every_network_a_stage_builds_refuses_a_device_this_machine_lacks(run_id: str, variants: dict) -> None:
    """--device cuda on a CPU machine refused training (start_training) but ended inference in torch's assertion:
    the check sits where the network is moved to the device, in every network a stage builds."""
    from pipeline.core.errors import UserError

    if run_id == "training" and "ensemble" in variants:
        pytest.skip("an ensemble only infers")
    parser = _parser(run_id, variants, device="cuda")
    with pytest.raises(Exception) as refused:
        parser.get_parsed_content("network")
    cause = refused.value
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__
    assert cause is not None and "--device cuda: this machine has no CUDA GPU" in str(cause)


def test_training_config_instantiates_trainer_and_evaluator(tiny_dataset: Path, tmp_path: Path) -> None:
    parser = _parser("training", {"demo": True}, dataset_dir=str(tiny_dataset), run_dir=str(tmp_path),
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


def test_user_facing_ids_exist_under_their_documented_names() -> None:
    assert len(USER_IDS) >= 25 and {"dataset_dir", "amp_dtype", "cudnn_benchmark", "dist_backend"} <= set(USER_IDS)
    parsers = [_parser(run_id, variants) for run_id, variants in BUNDLES.values()]
    missing = [k for k in USER_IDS if not any(k in parser for parser in parsers)]
    assert not missing, f"ids promised in docs/usage.md are missing: {missing}"


def test_metadata_lists_the_packages_of_pyproject() -> None:
    """metadata.json's required packages are pyproject's dependencies (torch, MONAI and numpy have their own
    fields), its optional ones the packages of the extras a user installs (test tools aside)."""
    import json

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    meta = json.loads((CONFIGS / "metadata.json").read_text())

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}

    assert set(meta["required_packages_version"]) == names(project["dependencies"]) - {"torch", "monai", "numpy"}
    extras = project["optional-dependencies"]
    extra = [r for k, v in extras.items() if k not in ("test", "dev") for r in v]  # what the bundle can use
    assert set(meta["extra_packages_version"]) == names(extra)
    assert meta["monai_version"] == next(r.split("==")[1] for r in project["dependencies"] if r.startswith("monai"))


@pytest.mark.parametrize("value, mirrored", [pytest.param("false", False, id="false_string"),
                                             pytest.param("true", True, id="true_string"),
                                             pytest.param(False, False, id="false_yaml")])
def test_tta_given_on_the_command_line_as_a_string_is_read_as_a_flag(value: object, mirrored: bool) -> None:
    from pipeline.inference.predict import MirrorInferer

    parser = _parser("inference", tta=value)
    assert isinstance(parser.get_parsed_content("inference_inferer"), MirrorInferer) is mirrored
    assert parser.get_parsed_content("tta_enabled") is mirrored  # what provenance.json records


def test_building_the_training_components_writes_nothing_until_initialize_records_the_run(tiny_dataset: Path,
                                                                                       tmp_path: Path) -> None:
    """The datasets, loaders and engines resolve without acting: the lock, run.json and datalist.json come from
    `initialize`'s explicit steps (run_record, split_record)."""
    run = tmp_path / "run"
    parser = _parser("training", {"demo": True}, dataset_dir=str(tiny_dataset), run_dir=str(run), folds=2,
                     roi_size=[32, 32, 32], unet_channels=[8, 16, 32], data_check="off")
    parser.get_parsed_content("train#trainer")
    parser.get_parsed_content("validate#evaluator")
    assert not run.exists() or not [p for p in run.rglob("*") if p.is_file() and p.parent.name != "tensorboard"]
    for step in range(len(parser["initialize"])):
        parser.get_parsed_content(f"initialize#{step}")
    record = json.loads((run / "run.json").read_text())
    assert sum(len(cases) for cases in record["split"].values()) == 4 and (run / "datalist.json").is_file()


@pytest.mark.parametrize(("run_id", "ids", "refused"), [
    pytest.param("training", ["--learning_rat", "0.01"], "--learning_rat is no id .* did you mean --learning_rate",
                 id="a_misspelled_id"),
    pytest.param("inference", ["--min_tumor_fraction", "0"], "did you mean --min_tumour_fraction",
                 id="another_spelling_of_an_id"),
    pytest.param("inference", ["--sw_batch_size", "4"], "--sw_batch_size is no id", id="a_nested_id_given_bare"),
    pytest.param("training", ["--train#optimiser#momentum", "0.9"], "--train#optimiser#momentum is no id",
                 id="below_a_misspelled_component"),
    pytest.param("trainig", [], "run trainig: .* define no such run id", id="a_misspelled_run_id"),
    pytest.param("training", ["--learning_rate", "0.01", "--train::optimizer::amsgrad", "true"], None,
                 id="an_argument_added_to_a_component"),
    pytest.param("inference", ["--inferer#sw_batch_size", "4", "--min_tumour_fraction=0"], None, id="known_ids"),
    pytest.param("training", ["--workflow_type", "train", "--tracking", "mlflow", "--run_name", "a"], None,
                 id="monai_runs_own_arguments"),
    pytest.param("training", ["--crop_foreground#margn", "40"],
                 "CropForegroundd takes no argument 'margn' .* did you mean --crop_foreground#margin",
                 id="a_misspelled_argument_a_component_would_pass_on_and_ignore"),
    pytest.param("training", ["--train#optimizer#momentum", "0.9"], None,
                 id="an_argument_the_components_class_refuses_itself"),
    pytest.param("training", ["--train#optimizer#_target_", "torch.optim.SGD", "--train#optimizer#momentum", "0.9",
                              "--train#dataloader#pin_memory", "true"], None,
                 id="an_argument_of_the_class_given_or_of_its_kwargs"),
])
def test_an_id_no_config_defines_is_refused_before_the_run(run_id: str, ids: list[str], refused: str | None) -> None:
    """MONAI's CLI takes any id and nothing reads one the configs lack: ``--set learning_rat 0.01`` trained with the
    default rate and ended with status 0; ``run trainig`` wrote run.json before MONAI's traceback (red team)."""
    from pipeline.bundle import config_files, config_list, unknown_cli_ids

    stage = {"trainig": "training"}.get(run_id, run_id)
    refusal = unknown_cli_ids(["run", run_id, "--config_file", config_list(config_files(stage)), *ids])
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and re.search(refused, str(refusal)), refusal


def test_a_stage_given_without_common_yaml_is_left_to_its_own_hint() -> None:
    """``--config_file train.yaml`` alone was refused as holding no ``dataset_dir``: its refusal is "add
    common.yaml" (`overlay_hint`), not a spelling."""
    from pipeline.bundle import unknown_cli_ids

    alone = ["run", "training", "--config_file", str(CONFIGS / "train.yaml"), "--dataset_dir", "x"]
    assert unknown_cli_ids(alone) is None
