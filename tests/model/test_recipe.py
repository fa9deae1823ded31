"""A training run's overrides of the shared preprocessing (``--normalization percentile``) are recorded and reach
every inference path, and an inference that does not apply them is refused (pipeline.model.recipe)."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

import pytest
from monai.networks.nets import UNet

from pipeline.bundle import inference_command, next_command
from pipeline.core.config import overrides_in_argv
from pipeline.core.errors import UserError
from pipeline.core.files import release_held_folders
from pipeline.data.source import DataSource
from pipeline.model.recipe import check_preprocessing, preprocessing_overrides, recorded_preprocessing
from pipeline.model.record import RunError, read_record, run_ids, start_training
from tests.helpers import CONFIGS

SMALL = functools.partial(UNet, spatial_dims=3, in_channels=4, out_channels=3, channels=[4, 8], strides=[2],
                          num_res_units=0)
TRAIN_FILES = [str(CONFIGS / f) for f in ("common.yaml", "train.yaml", "variants/budget.yaml")]


def _train_argv(*overrides: str) -> list[str]:
    return ["monai/bundle/__main__.py", "run", "training", "--config_file", repr(TRAIN_FILES), "--seed", "0",
            *overrides]


def _start(run: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str, resume: bool = False) -> dict:
    """`start_training` as train.yaml calls it, under the command line of ``overrides``."""
    monkeypatch.setattr("sys.argv", _train_argv(*overrides))
    try:
        return start_training(run, run / "models", resume=resume, overwrite=False, network_factory=SMALL,
                              ids=run_ids(DataSource("/data/BraTS", label_scheme="brats"), fold=0,
                                          roi_size=[32, 32, 32]))
    finally:
        release_held_folders()


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param(["--normalization", "percentile"], {"normalization": "percentile"}, id="a_top_level_id"),
    pytest.param(["--normalize#method=percentile"], {"normalize::method": "percentile"}, id="a_nested_id_with_equals"),
    pytest.param(["--crop_foreground::margin", "4", "--device", "cpu"], {"crop_foreground::margin": "4"},
                 id="among_other_overrides"),
    pytest.param(["--meta_file", "m.json", "--learning_rate", "0.01", "--normalizer", "x"], {},
                 id="none_of_the_preprocessing"),
])
def test_the_preprocessing_overrides_of_a_command_line_are_read_by_id(argv: list[str], expected: dict) -> None:
    assert preprocessing_overrides(_train_argv(*argv)) == expected
    assert "config_file" not in overrides_in_argv(_train_argv(*argv))


PATHS = {
    "infer_verb": lambda run: inference_command(run, {"dataset_dir": "/data/new"}),
    "infer_verb_quiet": lambda run: inference_command(run, {"dataset_dir": "/data/new"}, quiet=True),
    "cv": lambda run: inference_command(run, {"infer_fold": 0}, record=read_record(run), extra=["--device", "cpu"]),
    "cv_given_the_same_override": lambda run: inference_command(run, {"infer_fold": 0}, record=read_record(run),
                                                                extra=["--normalization", "percentile"]),
    "next_command": lambda run: shlex.split(next_command(run)),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("overrides", [
    pytest.param(("--normalization", "percentile"), id="normalization"),
    pytest.param(("--crop_foreground#margin", "4", "--normalize#method", "percentile"), id="two_nested_ids"),
    pytest.param((), id="none"),
])
def test_every_inference_path_applies_the_preprocessing_its_run_trained_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, overrides: tuple[str, ...]) -> None:
    run = tmp_path / "run"
    trained = _start(run, monkeypatch, *overrides)["ids"]["preprocessing"]
    assert trained == preprocessing_overrides(list(overrides))
    argv = PATHS[path](run)
    if path == "cv_given_the_same_override" and "--normalization" not in overrides:
        with pytest.raises(UserError, match=r"--normalization percentile"):  # an override the run did not have
            check_preprocessing(read_record(run), run, argv)
        return
    assert check_preprocessing(read_record(run), run, argv) == trained
    for key in trained:  # each given once, so that no duplicate flag decides by position
        assert [a for a in argv if a.startswith("--")].count(f"--{key}") == 1


@pytest.mark.parametrize(("trained", "given"), [
    pytest.param(["--normalization", "percentile"], [], id="left_out"),
    pytest.param(["--normalization", "percentile"], ["--normalization", "zscore"], id="another_value"),
    pytest.param([], ["--normalization", "percentile"], id="one_the_run_did_not_have"),
    pytest.param(["--normalize#method", "percentile"], ["--normalization", "percentile"], id="another_id"),
])
def test_an_inference_with_other_preprocessing_than_its_training_is_refused_naming_the_flags(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: list[str], given: list[str]) -> None:
    run = tmp_path / "run"
    _start(run, monkeypatch, *trained)
    argv = ["run", "inference", "--config_file", repr([str(CONFIGS / "common.yaml")]), "--run_dir", str(run), *given]
    with pytest.raises(UserError) as err:
        check_preprocessing(read_record(run), run, argv)
    message = str(err.value)
    assert str(run) in message and f"python -m pipeline infer --run {run}" in message
    flags = " ".join(f"{k.replace('#', '::')} {v}" for k, v in zip(trained[::2], trained[1::2], strict=True))
    assert f"Pass {flags or 'no preprocessing override'} as its run.json records" in message


def test_outside_monais_cli_nothing_is_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    _start(run, monkeypatch, "--normalization", "percentile")
    assert check_preprocessing(read_record(run), run, ["pytest", "-q"]) == {}


def test_a_record_from_before_the_overrides_were_recorded_reads_them_from_its_command() -> None:
    record = {"command": _train_argv("--normalization", "percentile"), "ids": {"seed": 0}}
    assert recorded_preprocessing(record) == {"normalization": "percentile"}
    assert recorded_preprocessing({"ids": {"preprocessing": {}}, "command": record["command"]}) == {}


@pytest.mark.parametrize(("resumed", "refused"), [
    pytest.param(("--normalization", "percentile"), False, id="the_same"),
    pytest.param((), True, id="left_out"),
    pytest.param(("--normalization", "zscore"), True, id="another_value"),
])
def test_a_resume_with_other_preprocessing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     resumed: tuple[str, ...], refused: bool) -> None:
    import torch

    run = tmp_path / "run"
    _start(run, monkeypatch, "--normalization", "percentile")
    (run / "models").mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "checkpoint.pt"):
        torch.save(SMALL().state_dict(), run / "models" / name)
    if not refused:
        resumed_ids = _start(run, monkeypatch, *resumed, resume=True)["ids"]
        assert resumed_ids["preprocessing"] == {"normalization": "percentile"}
        return
    with pytest.raises(RunError, match=r"preprocessing: \{'normalization': 'percentile'\} -> "):
        _start(run, monkeypatch, *resumed, resume=True)
