"""One provenance record per output folder: inference skips a case only when the model, its settings and its inputs
are the ones recorded; stale probabilities go with the segmentation they belonged to; evaluation refuses a folder of
mixed models or of changed inputs unless told otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.bundle import command
from pipeline.core.provenance import PROVENANCE
from tests.helpers import REPO, TINY_IDS, checksums, last_line
from tests.warm import run_module


def _infer(data: Path, run: Path, out: Path, **ids: object) -> subprocess.CompletedProcess:
    result = run_module(command("inference", {**TINY_IDS, "dataset_dir": data, "run_dir": run, "output_dir": out,
                                                  **ids}), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _record(out: Path) -> dict:
    return json.loads((out / PROVENANCE).read_text())["cases"]


@pytest.fixture
def data(tiny_dataset: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(tiny_dataset, copy)
    return copy


def _change_an_image(case: Path) -> Path:
    """Rewrite one contrast of ``case`` with other voxels (a re-downloaded or corrected case)."""
    image = next(case.glob("*_flair.nii.gz"))
    img = nib.load(image)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine, img.header), image)
    return image


def test_a_case_whose_images_changed_is_segmented_again_the_others_are_skipped(data: Path, trained_run: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    first = _record(out)
    assert all(entry["inputs"] and entry["model"] for entry in first.values())
    again = _infer(data, trained_run, out)
    assert "skipped 4 already segmented by this model from these inputs" in again.stdout
    case = sorted(p for p in data.iterdir() if p.is_dir())[1]
    _change_an_image(case)
    third = _infer(data, trained_run, out)
    assert "wrote 1 case(s)" in third.stdout and "skipped 3 already segmented" in third.stdout
    assert _record(out)[case.name]["inputs"] != first[case.name]["inputs"]


def test_probabilities_of_an_earlier_model_do_not_outlive_its_segmentations(data: Path, trained_run: Path,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "seg"
    _infer(data, trained_run, out, save_probabilities="true")
    assert len(list((out / "probabilities").glob("*.nii.gz"))) == 4
    model = next(iter(_record(out).values()))["probabilities"]
    _infer(data, trained_run, out, tta="true", overwrite="true")  # another model id, no probabilities asked
    record = _record(out)
    assert {e["model"] for e in record.values()} != {model} and all(e["probabilities"] is None for e in record.values())
    assert not list((out / "probabilities").glob("*.nii.gz"))  # the old model's maps went with its segmentations


def test_evaluation_refuses_mixed_models_and_stale_outputs_unless_told(data: Path, trained_run: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    assert pipeline_main(["datalist", str(data), "--out", str(tmp_path / "dl.json"), "--folds", "2"]) == 0
    run_module(command("inference", {**TINY_IDS, "datalist": tmp_path / "dl.json", "infer_fold": 0,
                                         "run_dir": trained_run, "output_dir": out, "tta": "true",
                                         "overwrite": "true"}), cwd=REPO, check=True, capture_output=True, timeout=600)
    assert len({e["model"] for e in _record(out).values()}) == 2
    before = checksums(out, data)
    assert pipeline_main(["evaluate", str(out), str(data), "--out", str(tmp_path / "eval")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "mixes the segmentations of 2 models" in line and "--allow_mixed" in line
    assert pipeline_main(["evaluate", str(out), str(data), "--out", str(tmp_path / "eval"), "--allow-mixed"]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert len(summary["models"]) == 2 and sum(summary["models"].values()) == 4
    assert checksums(out, data) == before


def test_evaluation_refuses_predictions_of_inputs_changed_since(data: Path, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    _change_an_image(sorted(p for p in data.iterdir() if p.is_dir())[0])
    result = run_module(command("evaluate", {"dataset_dir": data, "run_dir": trained_run, "output_dir": out,
                                                 "eval_dir": tmp_path / "eval"}),
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode != 0 and "stale" in last_line(result) and last_line(result).startswith("error: ")
    assert not (tmp_path / "eval" / "metrics.csv").exists()


def test_segmentations_written_in_an_overridden_scheme_are_refused_by_the_evaluation_of_their_data(
        data: Path, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--label_scheme msd`` on BraTS 2021 data writes MSD numbering (1 oedema, 2 non-enhancing, 3 ET), whose 1 and
    2 fit the data's brats scheme: the evaluation of the data scored TC as oedema + ET. provenance.json now names
    the numbering of each segmentation, and the evaluation refuses another."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out, label_scheme="msd")
    assert {entry["scheme"] for entry in _record(out).values()} == {"msd"}
    assert pipeline_main(["evaluate", str(out), str(data), "--out", str(tmp_path / "eval")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{out}: 4 of the 4 scored segmentation(s)" in line
    assert "written in label scheme msd, but this evaluation scores them in scheme brats" in line
    assert "without the label_scheme override (--set label_scheme msd)" in line
    assert not (tmp_path / "eval").exists()
