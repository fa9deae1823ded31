"""Each stage resolves its data (layout, scan, datalist, scheme) and the run's record once, counted while the stage
runs through MONAI's own `run` in this process; and a typo of a value ends in one `error:` line through the CLI."""

from __future__ import annotations

import collections
import functools
import sys
from pathlib import Path

import monai.bundle
import pytest

from pipeline.bundle import config_files
from pipeline.data import source
from pipeline.data.layouts import brats
from pipeline.model import record
from tests.helpers import CONFIGS, REPO, TINY_IDS, cli_args
from tests.warm import run_module


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """How often each thing is resolved: the layout detected, the dataset scanned, the datalist read, a DataSource
    made (which resolves the scheme), run.json read."""
    calls: collections.Counter = collections.Counter()

    def count(owner: object, name: str, key: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def counted(*args: object, **kwargs: object) -> object:
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    count(brats, "detect", "layout")
    count(brats, "scan_brats", "scan")
    count(source, "read_datalist", "datalist")
    count(source.DataSource, "__init__", "data source")
    count(record, "read_record", "run.json")
    return calls


def _run(run_id: str, **ids: object) -> None:
    monai.bundle.run(run_id, config_file=config_files(run_id), meta_file=str(CONFIGS / "metadata.json"),
                     **{**TINY_IDS, **ids})


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("once") / "run"
    _run("training", dataset_dir=str(tiny_dataset), run_dir=str(run), folds=2, epochs=1, batch_size=1)
    _run("inference", dataset_dir=str(tiny_dataset), run_dir=str(run))  # run/seg, which evaluate scores
    return run


@pytest.mark.parametrize("stage", ["training", "inference", "evaluate"])
def test_each_stage_resolves_the_layout_the_scan_and_the_record_once(stage: str, trained: Path, tiny_dataset: Path,
                                                                    tmp_path: Path, counts: collections.Counter):
    ids = {"dataset_dir": str(tiny_dataset), "folds": 2}
    if stage == "training":
        ids.update(run_dir=str(tmp_path / "run"), epochs=1, batch_size=1)
    elif stage == "inference":
        ids.update(run_dir=str(trained), output_dir=str(tmp_path / "seg"))
    else:
        ids.update(run_dir=str(trained), output_dir=str(trained / "seg"), eval_dir=str(tmp_path / "eval"))
    _run(stage, **ids)
    assert counts["data source"] == 1 and counts["layout"] == 1 and counts["scan"] == 1
    assert counts["datalist"] == 0
    assert counts["run.json"] <= 1


@pytest.mark.parametrize("stage", ["inference", "evaluate"])
def test_a_datalist_fold_is_read_and_validated_once(stage: str, trained: Path, tiny_dataset: Path, tmp_path: Path,
                                                     counts: collections.Counter) -> None:
    datalist = trained / "datalist.json"  # the run's own: its fold 0 is the model's validation fold
    counts.clear()
    ids = {"datalist": str(datalist), "infer_fold": 0, "run_dir": str(trained), "output_dir": str(tmp_path / "seg")}
    if stage == "evaluate":
        _run("inference", **ids)
        counts.clear()
        ids["eval_dir"] = str(tmp_path / "eval")
    _run(stage, **ids)
    assert counts["data source"] == 1 and counts["datalist"] == 1
    assert counts["layout"] == 0 and counts["scan"] == 0
    assert counts["run.json"] <= 1


@pytest.mark.parametrize(("ids", "named"), [
    pytest.param({"label_scheme": "bratz"}, "unknown label_scheme 'bratz'", id="label_scheme_typo"),
    pytest.param({"amp": "maybe"}, "--amp must be true or false, got 'maybe'", id="amp_not_a_flag"),
    pytest.param({"roi_size": "[32,32]"}, "--roi_size must be three positive whole numbers", id="roi_size_2d"),
    pytest.param({"roi_size": 50}, "--roi_size must be three positive whole numbers", id="roi_size_one_number"),
    pytest.param({"infer_fold": "abc"}, "--infer_fold must be a whole number, got 'abc'", id="infer_fold_text"),
    pytest.param({"folds": 1}, "--folds must be at least 2, got 1", id="one_fold"),
    pytest.param({"min_tumour_fraction": "abc"}, "--min_tumour_fraction must be a number from 0 to 1, got 'abc'",
                 id="tumour_fraction_text"),
    pytest.param({"min_tumour_fraction": 2}, "--min_tumour_fraction must be a number from 0 to 1, got 2",
                 id="tumour_fraction_above_one"),
    pytest.param({"min_et_voxels": "abc"}, "--min_et_voxels must be a whole number, got 'abc'", id="et_voxels_text"),
    pytest.param({"min_component_size": "-5"}, "--min_component_size must be at least 0, got -5",
                 id="component_size_negative"),
])
def test_a_typo_in_a_value_ends_in_one_error_line_through_the_cli_and_writes_nothing(
        ids: dict, named: str, tiny_dataset: Path, trained: Path, tmp_path: Path) -> None:
    run_id = "inference" if {"infer_fold", "min_tumour_fraction", "min_et_voxels", "min_component_size"} & set(ids) \
        else "training"
    run = trained if run_id == "inference" else tmp_path / "run"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", repr(config_files(run_id)),
           *cli_args({**TINY_IDS, "dataset_dir": tiny_dataset, "run_dir": run, "folds": 2,
                      "output_dir": tmp_path / "seg", **ids})]
    result = run_module(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and named in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "seg").exists(), "a refused inference wrote into its output folder"
