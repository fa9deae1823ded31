"""One output guard: every writer, given an output among the inputs (any layout, any depth, links included), refuses
in one line before any work, and no input changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.bundle import command
from tests.helpers import REPO, TINY_IDS, checksums, last_line
from tests.warm import run_module


def _bundle(run_id: str, **ids: object) -> subprocess.CompletedProcess:
    return run_module(command(run_id, {**TINY_IDS, **ids}), capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def _pipeline(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = pipeline_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


@pytest.fixture
def brats2018(tiny_dataset: Path, tmp_path: Path) -> Path:
    """The tiny cases in BraTS 2018's HGG/LGG folders: files three levels below the dataset folder."""
    root = tmp_path / "MICCAI_BraTS_2018"
    for grade, case in zip(("HGG", "LGG"), sorted(p for p in tiny_dataset.iterdir() if p.is_dir())[:2], strict=True):
        target = root / grade / case.name
        shutil.copytree(case, target)
    return root


def test_synth_into_a_brats2018_download_is_refused(brats2018: Path, capsys: pytest.CaptureFixture) -> None:
    before = checksums(brats2018)
    for extra in ([], ["--force"]):
        code, line = _pipeline(["synth", str(brats2018), "--cases", "2", "--shape", "32", "32", "24", *extra], capsys)
        if extra:  # --force writes beside foreign files, never over them: BraTS2021_00000 is not among them
            assert code == 0
        else:
            assert code == 2 and line.startswith("error: ") and "synth did not write" in line
    after = checksums(brats2018)
    assert {k: v for k, v in after.items() if k in before} == before


def test_synth_never_replaces_the_dataset_json_of_a_mha_nnunet_set(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "Dataset001"
    (root / "imagesTr").mkdir(parents=True)
    (root / "imagesTr" / "BraTS2021_00000_0000.mha").write_bytes(b"an image in another format")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1"}, "labels": {"background": 0, "t": 1},
                                                   "file_ending": ".mha"}))
    before = checksums(root)
    for extra in ([], ["--force"]):
        code, line = _pipeline(["synth", str(root), "--layout", "nnunet", "--cases", "1", "--shape", "32", "32", "24",
                                *extra], capsys)
        assert code == 2 and line.startswith("error: ") and "synth" in line
    assert checksums(root) == before


def test_a_datalist_is_never_written_over_a_label_file(tiny_dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    label = next(data.rglob("*_seg.nii.gz"))
    link = tmp_path / "elsewhere.json"
    link.symlink_to(label)
    before = checksums(data)
    for out in (label, link, data / "datalist.json"):
        code, line = _pipeline(["datalist", str(data), "--out", str(out), "--force"], capsys)
        assert code == 2 and line.startswith("error: ") and ("is an input" in line or "input folder" in line), line
    assert checksums(data) == before


@pytest.mark.parametrize("where", ["imagesTs", "labelsTr"])
def test_inference_from_a_datalist_never_writes_into_its_decathlon_folder(where: str, layout_datasets: dict,
                                                                         trained_run: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "Task01"
    shutil.copytree(layout_datasets["msd"], data)
    (data / "imagesTs").mkdir(exist_ok=True)
    assert pipeline_main(["datalist", str(data), "--out", str(tmp_path / "dl.json"), "--folds", "3"]) == 0
    before = checksums(data)
    result = _bundle("inference", datalist=tmp_path / "dl.json", infer_fold=0, run_dir=trained_run,
                     output_dir=data / where)
    assert result.returncode != 0 and last_line(result).startswith("error: ")
    assert "input folder" in last_line(result) and "--output_dir" in last_line(result)
    assert checksums(data) == before


def test_outputs_through_a_folder_of_symlinked_cases_never_land_in_the_original(tiny_dataset: Path, trained_run: Path,
                                                                                tmp_path: Path) -> None:
    original = tmp_path / "original"
    shutil.copytree(tiny_dataset, original)
    subset = tmp_path / "subset"
    case = sorted(p for p in original.iterdir() if p.is_dir())[0]
    (subset / case.name).mkdir(parents=True)
    for f in case.iterdir():
        (subset / case.name / f.name).symlink_to(f)
    before = checksums(original)
    for run_id, ids in (("inference", {"output_dir": original / "seg"}),
                        ("training", {"run_dir": case / "run", "epochs": 1, "folds": 2})):
        result = _bundle(run_id, dataset_dir=subset, **({"run_dir": trained_run} | ids))
        assert result.returncode != 0 and last_line(result).startswith("error: "), last_line(result)
        assert str(original) in last_line(result)
    assert checksums(original) == before and not (original / "seg").exists() and not (case / "run").exists()


@pytest.mark.parametrize("folder", ["run_dir", "ckpt_dir", "cache_dir", "tensorboard_dir"])
def test_training_never_writes_a_folder_of_its_run_among_the_inputs(tiny_dataset: Path, tmp_path: Path,
                                                                    folder: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    before = checksums(data)
    ids = {"run_dir": tmp_path / "run", folder: data / "runs" / "r1"}
    result = _bundle("training", dataset_dir=data, epochs=1, folds=2, **ids)
    assert result.returncode != 0 and f"--{folder}" in last_line(result) and "input folder" in last_line(result)
    assert checksums(data) == before and not (data / "runs").exists()


def test_overwrite_deletes_only_what_the_run_wrote_never_its_datalist(trained_run: Path, tiny_dataset: Path,
                                                                      tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    datalist = run / "datalist.json"
    assert json.loads((run / "run.json").read_text())["datalist_written"] and datalist.is_file()
    kept = datalist.read_bytes()
    result = _bundle("training", datalist=datalist, run_dir=run, overwrite="true", epochs=1, batch_size=1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert datalist.read_bytes() == kept  # the input of this run: never deleted
    assert "kept" in result.stdout + result.stderr and (run / "models" / "model.pt").is_file()


def test_evaluation_and_pictures_never_write_among_the_inputs(trained_run: Path, tiny_dataset: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    seg = tmp_path / "seg"
    result = _bundle("inference", dataset_dir=data, run_dir=trained_run, output_dir=seg)
    assert result.returncode == 0, result.stderr[-2000:]
    before = checksums(data, seg)
    for out in (data / "eval", seg, seg / "eval"):
        code, line = _pipeline(["evaluate", str(seg), str(data), "--out", str(out)], capsys)
        assert code == 2 and "input folder" in line, line
    (tmp_path / "eval").mkdir()
    assert pipeline_main(["evaluate", str(seg), str(data), "--out", str(tmp_path / "eval")]) == 0
    code, line = _pipeline(["plot", "evaluation", str(tmp_path / "eval"), str(seg), str(data), "--out",
                            str(data / "pictures")], capsys)
    assert code == 2 and "input folder" in line
    assert checksums(data, seg) == before


def _truncate_a_case(data: Path) -> None:
    """Cut one case's FLAIR short: the data check refuses the dataset."""
    flair = sorted(data.glob("*/*_flair.nii.gz"))[0]
    flair.write_bytes(flair.read_bytes()[:200])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a machine without CUDA refuses --device cuda")
@pytest.mark.parametrize("cli", ["bundle", "pipeline"])
@pytest.mark.parametrize("why", ["a_case_the_data_check_refuses", "a_device_this_machine_lacks"])
def test_overwrite_keeps_the_finished_run_when_the_new_one_is_refused(trained_run: Path, tiny_dataset: Path,
                                                                       tmp_path: Path, cli: str, why: str) -> None:
    """--overwrite true deleted the old models and rewrote run.json before the data check (or the device) refused
    the new run: the finished run was lost and nothing trained in its place."""
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(trained_run, run)
    shutil.copytree(tiny_dataset, data)
    ids: dict[str, object] = {"device": "cuda"} if why == "a_device_this_machine_lacks" else {}
    if why == "a_case_the_data_check_refuses":
        _truncate_a_case(data)
    before = checksums(run)
    if cli == "bundle":
        result = _bundle("training", dataset_dir=data, run_dir=run, overwrite="true", epochs=1, folds=2, **ids)
    else:
        words = ["--device", "cuda"] if ids else []
        result = run_module([sys.executable, "-m", "pipeline", "train", str(data), "--run", str(run), "--overwrite",
                             *words, "--set", "epochs", "1", "--set", "folds", "2", "--set", "num_workers", "0"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    line = last_line(result)
    printed = result.stdout + result.stderr
    assert result.returncode != 0 and "\nerror: " in printed, printed[-3000:]
    refusal = printed[printed.rindex("\nerror: "):]  # (the data check's: a line per case, then the way out)
    assert ("--device cuda" in line) if ids else ("_flair.nii.gz is truncated" in refusal), refusal
    assert checksums(run) == before  # models, run.json, datalist.json: as they were
