"""``make clean`` removes what the demo and the tools wrote, never a run the user trained, a file synth did not
write, or a demo still running (it used to ``rm -rf runs data/synthetic``, then all of data/synthetic whenever
synth had written into it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.files import FolderLock
from tests.helpers import REPO, locked_by_another_process


def _make_clean(folder: Path, check: bool = True) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "Makefile", folder / "Makefile")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["make", "-s", "clean", f"PY={sys.executable}"], cwd=folder, capture_output=True, text=True,
                          check=check, env=env)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("synth_wrote_the_data", [True, False], ids=["synthetic data", "data synth did not write"])
def test_make_clean_keeps_the_users_runs_and_data(tmp_path: Path, synth_wrote_the_data: bool) -> None:
    for folder in ("runs/demo/models", "runs/brats/models", "data/synthetic", ".pytest_cache"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "runs/brats/models/model.pt").write_bytes(b"a trained model")
    record = {"cases": 0, "shape": [8, 8, 8], "seed": 0, "layout": "brats2021", "cases_written": []}  # synth's keys
    (tmp_path / "data/synthetic" / ("synthetic.json" if synth_wrote_the_data else "BraTS2021_00000_t1.nii.gz")
     ).write_text(json.dumps(record))
    out = _make_clean(tmp_path).stdout
    assert not (tmp_path / "runs/demo").exists() and not (tmp_path / ".pytest_cache").exists()
    assert (tmp_path / "runs/brats/models/model.pt").read_bytes() == b"a trained model"
    assert "kept your runs in runs/ (brats" in out
    assert (tmp_path / "data/synthetic").exists() != synth_wrote_the_data


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_deletes_only_the_files_synth_wrote_beside_the_users(tmp_path: Path) -> None:
    """``synth --force`` writes beside foreign files; make clean deleted the whole folder, theirs included."""
    from pipeline.data.synthetic import write_dataset

    data = tmp_path / "data/synthetic"
    (data / "mine").mkdir(parents=True)
    (data / "mine" / "notes.txt").write_text("the user's")
    write_dataset(data, cases=1, shape=(16, 16, 16), seed=0, force=True)
    out = _make_clean(tmp_path).stdout
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == ["mine", "mine/notes.txt"]
    assert "kept 1 file(s) in data/synthetic that synth did not write" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("locked", [
    pytest.param("runs/demo/seg", id="a_stage_writing"),
    pytest.param("runs/demo/.demo", id="the_demo_between_stages"),
    pytest.param("data/synthetic", id="synth_writing_the_data"),
])
def test_make_clean_deletes_nothing_while_a_demo_or_synth_is_running(tmp_path: Path, locked: str) -> None:
    """Between two stages no stage holds a lock: make clean deleted runs/demo under a running demo (and deleted it
    before finding synth still writing the data)."""
    (tmp_path / "runs/demo/models").mkdir(parents=True)
    (tmp_path / "runs/demo/models/model.pt").write_bytes(b"the demo's model")
    (tmp_path / "data/synthetic").mkdir(parents=True)
    (tmp_path / "data/synthetic/synthetic.json").write_text("{}")
    with locked_by_another_process(tmp_path / locked, "make demo"):
        result = _make_clean(tmp_path, check=False)
    assert result.returncode != 0 and "is being written" in result.stderr and "let the demo or synth finish" in (
        result.stderr)
    assert (tmp_path / "runs/demo/models/model.pt").is_file() and (tmp_path / "data/synthetic/synthetic.json").is_file()


def test_the_demo_holds_its_run_folder_from_its_first_stage_to_its_last(tmp_path: Path, monkeypatch) -> None:
    """What make clean looks for between stages: the demo's own lock, taken before its first stage."""
    from pipeline import demo

    seen = {}

    def first_stage(*args, **kwargs):
        seen["holder"] = FolderLock(tmp_path / "run" / demo.RUNNING, what="clean").mine()
        raise SystemExit("stop after the first stage")

    monkeypatch.setattr(demo, "demo_data", first_stage)
    with pytest.raises(SystemExit):
        demo.run_demo(data_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run"))
    assert seen["holder"]


@pytest.mark.parametrize("record", [
    pytest.param({"config_files": ["common.yaml", "train.yaml", "budget.yaml"]}, id="a_trained_run"),
    pytest.param({"config_files": ["common.yaml", "train.yaml", "variants/demo.yaml"],
                  "ids": {"dataset_dir": "/data/BraTS2021", "datalist": None}}, id="a_users_run_with_demo_yaml"),
    pytest.param(None, id="a_folder_of_other_files"),
])
def test_clean_deletes_no_run_dir_but_a_demos(tmp_path: Path, record: dict | None) -> None:
    """``python -m pipeline clean --run-dir runs/brats`` removed any folder it was given."""
    from pipeline.__main__ import main as pipeline_main

    run = tmp_path / "runs/brats"
    (run / "models").mkdir(parents=True)
    (run / "models/model.pt").write_bytes(b"a trained model")
    if record is not None:
        (run / "run.json").write_text(json.dumps(record))
    assert pipeline_main(["clean", "--run-dir", str(run), "--data-dir", str(tmp_path / "none")]) == 2
    assert (run / "models/model.pt").read_bytes() == b"a trained model"


def test_clean_waits_for_a_second_demo_reading_the_data(tmp_path: Path) -> None:
    """A second make demo runs in runs/demo_2; make clean checked runs/demo only and deleted the data it reads."""
    from pipeline.__main__ import main as pipeline_main

    (tmp_path / "runs/demo").mkdir(parents=True)
    (tmp_path / "data/synthetic").mkdir(parents=True)
    (tmp_path / "data/synthetic/synthetic.json").write_text("{}")
    with locked_by_another_process(tmp_path / "runs/demo_2/.demo", "make demo"):
        code = pipeline_main(["clean", "--run-dir", str(tmp_path / "runs/demo"), "--data-dir",
                              str(tmp_path / "data/synthetic")])
    assert code == 2 and (tmp_path / "data/synthetic/synthetic.json").is_file() and (tmp_path / "runs/demo").is_dir()


def test_clean_keeps_a_picture_of_the_users_under_a_demo_files_name(tmp_path: Path) -> None:
    """A user's progress.png in the demo's run folder (no mark of the package's pictures) was deleted as the demo's."""
    from pipeline.__main__ import main as pipeline_main

    run = tmp_path / "runs/demo"
    (run / "models").mkdir(parents=True)
    (run / "models/model.pt").write_bytes(b"the demo's model")
    (run / "datalist.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"config_files": ["common.yaml", "train.yaml", "variants/demo.yaml"],
                                              "ids": {"datalist": str(run / "datalist.json")}}))
    (run / "progress.png").write_bytes(b"\x89PNG\r\n\x1a\n the user's")
    assert pipeline_main(["clean", "--run-dir", str(run), "--data-dir", str(tmp_path / "none")]) == 0
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == ["progress.png"]


def test_clean_keeps_a_users_nifti_among_the_demos_segmentations(tmp_path: Path) -> None:
    """A hand-corrected ``seg/<case>_corrected.nii.gz`` beside the demo's segmentations was deleted as the demo's
    (a ``seg/*.nii.gz`` pattern): only the files ``seg/provenance.json`` records as written are."""
    from pipeline.__main__ import main as pipeline_main
    from pipeline.core.provenance import Provenance, input_identity

    run = tmp_path / "runs/demo"
    (run / "seg").mkdir(parents=True)
    (run / "datalist.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"config_files": ["common.yaml", "train.yaml", "variants/demo.yaml"],
                                              "ids": {"datalist": str(run / "datalist.json")}}))
    (run / "seg/case_a.nii.gz").write_bytes(b"the demo's segmentation")
    Provenance(run / "seg").record("case_a", model="m1", file="case_a.nii.gz", inputs=[],
                                   output=input_identity([run / "seg/case_a.nii.gz"], digest=True)[0])
    (run / "seg/case_a_corrected.nii.gz").write_bytes(b"corrected by hand")
    assert pipeline_main(["clean", "--run-dir", str(run), "--data-dir", str(tmp_path / "none")]) == 0
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "seg/case_a_corrected.nii.gz"]
    assert (run / "seg/case_a_corrected.nii.gz").read_bytes() == b"corrected by hand"


@pytest.mark.parametrize("record", ["names_a_file_outside_seg", "names_a_file_deleted_since", "cannot_be_read"])
def test_clean_deletes_no_file_a_provenance_record_names_outside_seg(tmp_path: Path, record: str) -> None:
    """A provenance.json of the older format (no output identity) naming ``../../victim.txt`` made make clean delete
    that file; one naming a file deleted since ended clean in a traceback; an unreadable one refused clean."""
    from pipeline.__main__ import main as pipeline_main

    run = tmp_path / "runs/demo"
    (run / "seg").mkdir(parents=True)
    (run / "datalist.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"config_files": ["common.yaml", "train.yaml", "variants/demo.yaml"],
                                              "ids": {"datalist": str(run / "datalist.json")}}))
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's")
    entries = {"names_a_file_outside_seg": {"a": {"model": "m", "file": "../../../victim.txt", "inputs": []}},
               "names_a_file_deleted_since": {"a": {"model": "m", "file": "a.nii.gz", "inputs": []}}}
    (run / "seg/provenance.json").write_text(json.dumps(entries[record]) if record in entries else "not json")
    assert pipeline_main(["clean", "--run-dir", str(run), "--data-dir", str(tmp_path / "none")]) == 0
    assert victim.read_text() == "the user's"
