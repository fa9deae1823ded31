"""What a run trained with reaches every inference path: its normalisation (by value, from run.json) and its
command line's overrides of the shared preprocessing (``--crop_foreground#margin 4``); an inference that would
preprocess otherwise is refused (pipeline.model.recipe, pipeline.model.record)."""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNet

from pipeline.bundle import inference_command, main, next_command
from pipeline.core.config import bundle_arguments, cli_value, config_files_in_argv, overrides_in_argv
from pipeline.core.errors import UserError
from pipeline.core.files import release_held_folders
from pipeline.data.source import DataSource
from pipeline.model.recipe import check_preprocessing, preprocessing_overrides, recorded_preprocessing
from pipeline.model.record import (
    RunError,
    model_interface,
    read_record,
    recorded_normalization,
    run_ids,
    start_training,
)
from tests.helpers import CONFIGS

SMALL = functools.partial(UNet, spatial_dims=3, in_channels=4, out_channels=3, channels=[4, 8], strides=[2],
                          num_res_units=0)
TRAIN_FILES = [str(CONFIGS / f) for f in ("common.yaml", "train.yaml", "variants/budget.yaml")]


def _train_argv(*overrides: str) -> list[str]:
    return ["monai/bundle/__main__.py", "run", "training", "--config_file", repr(TRAIN_FILES), "--seed", "0",
            *overrides]


def _start(run: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str, resume: bool = False,
           normalization: str = "zscore") -> dict:
    """`start_training` as train.yaml calls it, under the command line of ``overrides``."""
    monkeypatch.setattr("sys.argv", _train_argv(*overrides))
    try:
        return start_training(run, run / "models", resume=resume, overwrite=False, network_factory=SMALL,
                              ids=run_ids(DataSource("/data/BraTS", label_scheme="brats"), fold=0,
                                          roi_size=[32, 32, 32], normalization=normalization))
    finally:
        release_held_folders()


def _finish(run: Path) -> None:
    (run / "models").mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "checkpoint.pt"):
        torch.save(SMALL().state_dict(), run / "models" / name)


# ---- the command line as MONAI's CLI (fire) reads it ------------------------------------------------------------


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param(["--crop_foreground#margin", "4"], {"crop_foreground::margin": 4}, id="a_nested_id_a_number"),
    pytest.param(["--normalize::nonzero=False"], {"normalize::nonzero": False}, id="with_equals_a_bool"),
    pytest.param(["--crop-foreground#margin", "4"], {"crop_foreground::margin": 4}, id="hyphens_are_underscores"),
    pytest.param(["-crop_foreground#margin", "4"], {"crop_foreground::margin": 4}, id="one_dash"),
    pytest.param(["--resample#spacing", "[2,2,2]"], {"resample::spacing": [2, 2, 2]}, id="a_list"),
    pytest.param(["--crop_foreground#margin", "-1"], {"crop_foreground::margin": -1}, id="a_negative_number"),
    pytest.param(["--crop_foreground#margin", "4", "--crop_foreground#margin", "6"], {"crop_foreground::margin": 6},
                 id="the_last_of_two"),
    pytest.param(["--", "--crop_foreground#margin", "4"], {}, id="after_a_lone_dash_dash_fires_own_flags"),
    pytest.param(["--crop_foreground#margin", "4", "--", "--x", "--", "--trace"], {"crop_foreground::margin": 4},
                 id="fires_own_flags_after_the_last_dash_dash"),
    pytest.param(["--crop_foreground#allow_smaller", "--seed", "1"], {"crop_foreground::allow_smaller": True},
                 id="a_flag_without_a_value_is_true"),
    pytest.param(["--normalize#nonzero"], {}, id="a_bare_flag_starting_with_no_is_fires_rmalize_false"),
    pytest.param(["--crop_foreground#margin", "None"], {}, id="none_is_dropped_as_monai_drops_it"),
    pytest.param(["--meta_file", "m.json", "--learning_rate", "0.01", "--normalizer", "x", "--normalization", "x"],
                 {}, id="none_of_the_preprocessing"),
])
def test_the_preprocessing_overrides_of_a_command_line_are_read_as_monais_cli_reads_them(argv: list[str],
                                                                                        expected: dict) -> None:
    assert preprocessing_overrides(_train_argv(*argv)) == expected
    assert "config_file" not in overrides_in_argv(_train_argv(*argv))
    assert config_files_in_argv(_train_argv(*argv)) == TRAIN_FILES


@pytest.mark.parametrize("value", ["percentile", "5", "True", 4, 2.5, True, [2, 2, 2], "a b", None])
def test_a_recorded_value_is_written_as_a_word_monais_cli_reads_back_as_that_value(value: object) -> None:
    argv = ["run", "inference", "--crop_foreground#margin", cli_value(value)]
    assert overrides_in_argv(argv).get("crop_foreground::margin") == value


def test_an_args_file_gives_overrides_and_config_files_under_the_command_lines(tmp_path: Path) -> None:
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"config_file": TRAIN_FILES[:2], "crop_foreground#margin": 3,
                                "normalize#nonzero": False}))
    argv = ["run", "training", "--args_file", str(args), "--crop_foreground#margin", "5"]
    assert preprocessing_overrides(argv) == {"crop_foreground::margin": 5, "normalize::nonzero": False}
    assert config_files_in_argv(argv) == TRAIN_FILES[:2] and bundle_arguments(argv)["args_file"] == str(args)


# ---- the overrides of the shared preprocessing ------------------------------------------------------------------


PATHS = {
    "infer_verb": lambda run: inference_command(run, {"dataset_dir": "/data/new"}),
    "infer_verb_quiet": lambda run: inference_command(run, {"dataset_dir": "/data/new"}, quiet=True),
    "cv": lambda run: inference_command(run, {"infer_fold": 0}, record=read_record(run), extra=["--device", "cpu"]),
    "cv_given_the_same_override": lambda run: inference_command(run, {"infer_fold": 0}, record=read_record(run),
                                                                extra=["--crop_foreground#margin", "4"]),
    "next_command": lambda run: shlex.split(next_command(run)),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("overrides", [
    pytest.param(("--crop_foreground#margin", "4"), id="one"),
    pytest.param(("--crop-foreground::margin=4", "--normalize#nonzero", "False"), id="two_spelt_otherwise"),
    pytest.param((), id="none"),
])
def test_every_inference_path_applies_the_preprocessing_overrides_its_run_trained_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, overrides: tuple[str, ...]) -> None:
    run = tmp_path / "run"
    trained = _start(run, monkeypatch, *overrides)["ids"]["preprocessing"]
    assert trained == preprocessing_overrides(list(overrides))
    argv = PATHS[path](run)
    if path == "cv_given_the_same_override" and not overrides:
        with pytest.raises(UserError, match=r"--crop_foreground::margin 4"):  # an override the run did not have
            check_preprocessing(read_record(run), run, argv)
        return
    assert check_preprocessing(read_record(run), run, argv) == trained
    for key in trained:  # each given once, so that no duplicate flag decides by position
        assert sum(a.lstrip("-").replace("-", "_").split("=")[0].replace("#", "::") == key for a in argv) == 1


@pytest.mark.parametrize(("trained", "given"), [
    pytest.param(["--crop_foreground#margin", "4"], [], id="left_out"),
    pytest.param(["--crop_foreground#margin", "4"], ["--crop_foreground#margin", "6"], id="another_value"),
    pytest.param([], ["--crop_foreground#margin", "4"], id="one_the_run_did_not_have"),
    pytest.param(["--normalize#nonzero", "False"], ["--crop_foreground#margin", "4"], id="another_id"),
])
def test_an_inference_with_other_preprocessing_overrides_than_its_training_is_refused_naming_the_flags(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: list[str], given: list[str],
        capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    _start(run, monkeypatch, *trained)
    argv = ["run", "inference", "--config_file", repr([str(CONFIGS / "common.yaml")]), "--run_dir", str(run), *given]
    with pytest.raises(UserError) as err:
        check_preprocessing(read_record(run), run, argv)
    message = str(err.value)
    flags = " ".join(f"{k.replace('#', '::')} {v}" for k, v in zip(trained[::2], trained[1::2], strict=True))
    assert f"Pass {flags or 'no preprocessing override'} as its run.json records" in message
    assert f"python -m pipeline.bundle flags inference --run {run}" in message
    assert main(["flags", "inference", "--run", str(run)]) == 0  # what make infer-ensemble passes
    assert capsys.readouterr().out.strip() == flags


def test_outside_monais_cli_nothing_is_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    _start(run, monkeypatch, "--crop_foreground#margin", "4")
    assert check_preprocessing(read_record(run), run, ["pytest", "-q"]) == {}


def test_a_record_from_before_the_overrides_were_recorded_reads_them_from_its_command() -> None:
    record = {"command": _train_argv("--crop_foreground#margin", "4"), "ids": {"seed": 0}}
    assert recorded_preprocessing(record) == {"crop_foreground::margin": 4}
    now = {"ids": {"preprocessing": {}, "normalization": "zscore"}, "command": record["command"]}
    assert recorded_preprocessing(now) == {}  # as recorded, not re-read


def test_a_record_of_the_first_version_is_read_from_its_command() -> None:
    """The first version recorded the overrides as strings, the normalisation among them: it is read again from the
    command line, as now (a number a number; the normalisation by value)."""
    command = _train_argv("--normalization", "percentile", "--crop_foreground#margin", "4")
    record = {"command": command, "ids": {"preprocessing": {"normalization": "percentile",
                                                            "crop_foreground::margin": "4"}}}
    assert recorded_preprocessing(record) == {"crop_foreground::margin": 4}
    assert recorded_normalization(record) == "percentile"


# ---- the normalisation, by value -------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "given", "expected"), [
    pytest.param({"ids": {"normalization": "percentile"}}, None, "percentile", id="the_runs_own"),
    pytest.param({"ids": {"normalization": "percentile"}}, "percentile", "percentile", id="given_as_the_run_had_it"),
    pytest.param({"ids": {"seed": 0}}, None, "zscore", id="a_run_from_before_it_was_recorded"),
    pytest.param({"ids": {"seed": 0}, "command": _train_argv("--normalization", "percentile")}, None, "percentile",
                 id="a_run_from_before_it_was_recorded_given_it_on_its_command_line"),
    pytest.param(None, "percentile", "percentile", id="a_checkpoint_without_a_record"),
    pytest.param(None, None, "zscore", id="without_either"),
])
def test_inference_normalises_as_the_model_was_trained(record: dict | None, given: str | None, expected: str) -> None:
    assert recorded_normalization(record, given) == expected


@pytest.mark.parametrize(("trained", "given"), [("percentile", "zscore"), ("zscore", "percentile")])
def test_inference_given_another_normalisation_than_the_run_is_refused(trained: str, given: str) -> None:
    with pytest.raises(RunError, match=rf"--normalization {given}: the model was trained with {trained}"):
        recorded_normalization({"ids": {"normalization": trained}}, given)


@pytest.mark.parametrize("stage_files", [
    pytest.param(("common.yaml", "inference.yaml"), id="inference"),
    pytest.param(("common.yaml", "inference.yaml", "variants/fast.yaml", "variants/budget.yaml",
                  "variants/ensemble.yaml"),
                 id="the_budget_recipes_fold_ensemble"),
])
def test_the_inference_config_builds_the_normalisation_of_the_runs_record(tmp_path: Path, stage_files: tuple) -> None:
    run = tmp_path / "run"
    for fold in ("", "fold_0"):
        (run / fold).mkdir(parents=True, exist_ok=True)
        (run / fold / "run.json").write_text(json.dumps({"ids": {"normalization": "percentile"}}))
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in stage_files])
    parser["run_dir"] = str(run)
    parser["ensemble_folds"] = [0]
    assert parser.get_parsed_content("normalize").method == "percentile"


@pytest.mark.parametrize("given", [None, "zscore"])
def test_the_inference_config_refuses_another_normalisation_before_writing(tmp_path: Path, given: str | None) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"ids": {"normalization": "percentile"}}))
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in ("common.yaml", "inference.yaml")])
    parser["run_dir"] = str(run)
    initialize = parser["initialize"]
    assert "$@normalize#method" in initialize and initialize.index("$@normalize#method") < initialize.index(
        "$@infer_guard")
    if given is None:
        assert parser.get_parsed_content("normalize#method") == "percentile"
        return
    parser["normalization"] = given
    with pytest.raises(Exception) as err:  # MONAI wraps it; the CLIs print its cause (pipeline.core.errors)
        parser.get_parsed_content("normalize#method")
    cause = err.value
    while cause is not None and not isinstance(cause, RunError):
        cause = cause.__cause__
    assert cause is not None and "--normalization zscore: the model was trained with percentile" in str(cause)


def test_a_segmentations_model_id_names_a_normalisation_other_than_zscore(tmp_path: Path, tiny_dataset: Path) -> None:
    """A checkpoint segmented under two normalisations writes two models' outputs; zscore's ids stay as before."""
    ids = {}
    for name, recorded in (("old", {}), ("zscore", {"normalization": "zscore"}),
                           ("percentile", {"normalization": "percentile"})):
        run = tmp_path / name
        (run / "models").mkdir(parents=True)
        (run / "models" / "model.pt").write_bytes(b"the same weights")
        (run / "run.json").write_text(json.dumps({"ids": {"label_scheme": "brats", **recorded}}))
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / f) for f in ("common.yaml", "inference.yaml")])
        parser["run_dir"], parser["dataset_dir"] = str(run), str(tiny_dataset)
        ids[name] = parser.get_parsed_content("model_id")
    assert ids["old"] == ids["zscore"] != ids["percentile"]


def test_the_record_describes_the_normalisation_and_a_resume_with_another_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    record = _start(run, monkeypatch, "--normalization", "percentile", normalization="percentile")
    assert record["ids"]["normalization"] == "percentile" and record["ids"]["preprocessing"] == {}
    assert model_interface(record)["normalization"] == "percentile"  # what a fold ensemble compares
    _finish(run)
    with pytest.raises(RunError, match=r"normalization: 'percentile' -> 'zscore'"):
        _start(run, monkeypatch, resume=True)
    assert _start(run, monkeypatch, resume=True, normalization="percentile")["ids"]["normalization"] == "percentile"


@pytest.mark.parametrize("resumed", [pytest.param((), id="left_out"),
                                     pytest.param(("--crop_foreground#margin", "6"), id="another_value")])
def test_a_resume_with_other_preprocessing_overrides_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               resumed: tuple[str, ...]) -> None:
    run = tmp_path / "run"
    _start(run, monkeypatch, "--crop_foreground#margin", "4")
    _finish(run)
    with pytest.raises(RunError, match=r"preprocessing: \{'crop_foreground::margin': 4\} -> "):
        _start(run, monkeypatch, *resumed, resume=True)
    assert _start(run, monkeypatch, "--crop_foreground#margin", "4", resume=True)["ids"]["preprocessing"] == {
        "crop_foreground::margin": 4}
