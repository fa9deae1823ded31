"""A trained run's config files, as its run.json names them, found again by identity where they moved: every
reader of the recorded list (`pipeline.bundle.inference_files` and the commands built on it) and its writer."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from pathlib import Path

import pytest

from pipeline import bundle
from pipeline.bundle import inference_command, inference_files, next_command
from pipeline.core.errors import UserError
from tests.helpers import CONFIGS, REPO

TRAINED = ("common.yaml", "train.yaml", "variants/fast.yaml", "variants/budget.yaml")
#: What inference applies for a run trained with `TRAINED`, relative to a ``configs/`` folder.
INFERRED = ["common.yaml", "inference.yaml", "variants/fast.yaml", "variants/budget.yaml"]


def _in(configs: Path | str, names=TRAINED) -> list[str]:
    return [f"{configs}/{n}" for n in names]


def _clone(tmp_path: Path) -> Path:
    """Another clone's ``bundle/configs`` (the benchmark's, say), with its own files."""
    configs = tmp_path / "clone" / "bundle" / "configs"
    shutil.copytree(CONFIGS, configs)
    return configs


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    bundle._STOOD_IN.clear()
    return run


def _record(run: Path, files: list[str]) -> dict:
    record = {"config_files": files, "ids": {"dataset_dir": str(run.parent / "data")}}
    (run / "run.json").write_text(json.dumps(record))
    return record


# Each case: the recorded list (given the tmp folder), the configs folder inference reads, whether it says so.
WHERE = {
    "trained_in_this_install": (lambda tmp: _in(CONFIGS), lambda tmp: CONFIGS, False),
    "trained_in_another_clone_still_there": (lambda tmp: _in(_clone(tmp)), lambda tmp: tmp / "clone/bundle/configs",
                                             False),
    "trained_in_a_clone_since_removed": (lambda tmp: _in("/gone/clone/bundle/configs"), lambda tmp: CONFIGS, True),
    "trained_on_another_machine": (lambda tmp: _in("C:/Users/me/brats/bundle/configs"), lambda tmp: CONFIGS, True),
    "recorded_relative_from_another_folder": (lambda tmp: _in("bundle/configs"), lambda tmp: CONFIGS, True),
    "recorded_before_the_overlays_moved_in_a_removed_clone": (
        lambda tmp: _in("/gone/bundle/configs", ("common.yaml", "train.yaml", "fast.yaml", "budget.yaml")),
        lambda tmp: CONFIGS, True),
}


@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("reader", ["inference_files", "ensemble", "inference_command", "next_command",
                                    "bundle_configs_cli"])
def test_a_runs_recorded_config_files_are_found_by_their_place_under_configs(
        where: str, reader: str, run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    """A run copied from a GPU machine, or trained in a clone since removed, named its config files by an absolute
    path that is not there: inference ended in MONAI's FileNotFoundError traceback. Each reader now finds them in
    this install by their place under ``configs/``, and says so once; a run whose files are there keeps its own."""
    recorded, expected_root, said = WHERE[where]
    files = recorded(tmp_path)
    record = _record(run, files)
    monkeypatch.chdir(tmp_path)  # not the repository: a relative list does not resolve from here
    expected = [str(expected_root(tmp_path) / n) for n in INFERRED]
    with caplog.at_level(logging.WARNING, logger="pipeline.bundle"):
        if reader == "inference_files":
            got = inference_files(run)
        elif reader == "ensemble":
            got = inference_files(run, ensemble=True)
            expected.insert(len(expected), str(expected_root(tmp_path) / "variants/ensemble.yaml"))
        elif reader in ("inference_command", "next_command"):
            cmd = (" ".join(inference_command(run, record=record)) if reader == "inference_command"
                   else next_command(run, record))
            got = re.search(r"--config_file \"?\[(.*?)\]", cmd).group(1).split(",")
        else:
            assert bundle.main(["configs", "inference", "--run", str(run)]) == 0
            got = capsys.readouterr().out.strip().strip("[]").split(",")
        inference_files(run)  # a second reader in the same process says nothing more
    got = [f.strip().strip("'\"") for f in got]
    assert got == [str(Path(f)) for f in expected]
    assert all(Path(f).is_file() for f in got)
    stood_in = [r.getMessage() for r in caplog.records if "stand in" in r.getMessage()]
    assert len(stood_in) == said
    if said:
        assert str(run / "run.json") in stood_in[0] and str(CONFIGS) in stood_in[0]


@pytest.mark.parametrize("lost", [
    pytest.param("/home/me/my_overlay.yaml", id="an_overlay_of_the_users_own"),
    pytest.param("/gone/bundle/configs/variants/my_budget.yaml", id="a_file_this_install_does_not_have"),
])
@pytest.mark.parametrize("reader", ["inference_files", "bundle_configs_cli", "pipeline_infer"])
def test_a_recorded_config_file_found_nowhere_is_refused_in_one_line_naming_the_run_and_the_file(
        lost: str, reader: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Inference without a file the run trained with would not be the run's recipe: refused, never skipped."""
    _record(run, [*_in(CONFIGS, TRAINED[:2]), lost])
    if reader == "inference_files":
        with pytest.raises(UserError) as refused:
            inference_files(run)
        line = str(refused.value)
    else:
        if reader == "bundle_configs_cli":
            assert bundle.main(["configs", "inference", "--run", str(run)]) == 2
        else:
            from pipeline.__main__ import main

            (tmp_path / "data").mkdir()
            assert main(["infer", "-i", str(tmp_path / "data"), "--run", str(run), "-o", str(tmp_path / "seg")]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("error: ")
        assert not (tmp_path / "seg").exists()
    assert str(run / "run.json") in line and lost in line and "put it back" in line


def test_training_records_its_config_files_as_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """MONAI reads a relative ``--config_file`` list from the working folder; run.json records where that was, so
    inference from another folder reads the same files."""
    from pipeline.model.record import read_record
    from tests.model.test_record import _start

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["monai.bundle", "run", "training", "--config_file",
                                      repr(_in("bundle/configs"))])
    run = tmp_path / "run"
    _start(run)
    assert read_record(run)["config_files"] == [str(CONFIGS / n) for n in TRAINED]
