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
    assert "(without --set label_scheme msd, if it was given)" in line
    assert not (tmp_path / "eval").exists()


def _evaluate(reader: str, out: Path, data: Path, run: Path, eval_dir: Path,
              capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``(exit status, last line)`` of evaluating ``out`` against ``data`` through ``reader``'s command."""
    if reader == "pipeline evaluate":
        rc = pipeline_main(["evaluate", str(out), str(data), "--out", str(eval_dir), "--no-pictures"])
        return rc, (capsys.readouterr().err.strip().splitlines() or [""])[-1]
    result = run_module(command("evaluate", {"dataset_dir": data, "run_dir": run, "output_dir": out,
                                             "eval_dir": eval_dir}), capture_output=True, text=True, cwd=REPO,
                        timeout=600)
    return result.returncode, last_line(result)


READERS = ["pipeline evaluate", "bundle evaluate", "inference again"]
MOVED_READERS = [*READERS, "inference again, one segmentation deleted"]


@pytest.mark.parametrize("reader", MOVED_READERS)
def test_a_dataset_moved_after_inference_is_recognised_by_its_contents(reader: str, data: Path, trained_run: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Segmented on one machine, scored on another (or the dataset moved): the recorded paths are gone, but the
    whole-content digests inference recorded (sha256) say the images are the same, so the evaluation scores them
    as before the move, and inference into the same folder keeps what it wrote."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    assert all(i["sha256"] for entry in _record(out).values() for i in entry["inputs"])
    assert pipeline_main(["evaluate", str(out), str(data), "--out", str(tmp_path / "before"), "--no-pictures"]) == 0
    moved = shutil.move(str(data), str(tmp_path / "elsewhere"))
    before = checksums(out)
    if reader == "inference again, one segmentation deleted":  # the others are still known, by their contents
        gone = sorted(out.glob("*.nii.gz"))[0]
        gone.unlink()
        again = _infer(Path(moved), trained_run, out)
        assert "wrote 1 case(s)" in again.stdout and "skipped 3 already segmented" in again.stdout
        assert gone.is_file()
        return
    if reader == "inference again":
        again = _infer(Path(moved), trained_run, out)
        assert "skipped 4 already segmented by this model from these inputs" in again.stdout
        assert {k: v for k, v in checksums(out).items() if not k.endswith(PROVENANCE)} == {
            k: v for k, v in before.items() if not k.endswith(PROVENANCE)}  # the segmentations as they were
        assert all(i["path"].startswith(str(Path(moved).resolve())) for e in _record(out).values()
                   for i in e["inputs"])  # recorded where they are now: later checks need no whole-file hash
        return
    rc, line = _evaluate(reader, out, Path(moved), trained_run, tmp_path / "after", capsys)
    assert rc == 0, line
    scores = [json.loads((tmp_path / d / "summary.json").read_text())["mean_dice"] for d in ("before", "after")]
    assert scores[0] == scores[1]
    assert checksums(out) == before


@pytest.mark.parametrize("reader", READERS)
def test_a_copy_whose_images_differ_under_the_same_names_is_refused(reader: str, data: Path, trained_run: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """The rule the digests must not loosen: another dataset with the same case names (one case's FLAIR other
    voxels, the other three byte for byte the same) is not scored, nor written into, as the segmented one."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    changed = _change_an_image(sorted(p for p in copy.iterdir() if p.is_dir())[2])
    before = checksums(out, copy)
    if reader == "inference again":
        result = run_module(command("inference", {**TINY_IDS, "dataset_dir": copy, "run_dir": trained_run,
                                                  "output_dir": out}), capture_output=True, text=True, cwd=REPO,
                            timeout=600)
        assert result.returncode != 0 and "holds segmentations of another dataset" in last_line(result)
        assert changed.parent.name in last_line(result)
    else:
        rc, line = _evaluate(reader, out, copy, trained_run, tmp_path / "eval", capsys)
        assert rc != 0 and line.startswith("error: ")
        assert "1 prediction(s)" in line and "segmented from other images than the reference's cases" in line
        assert f"case {changed.parent.name}" in line and not (tmp_path / "eval" / "metrics.csv").exists()
    assert checksums(out, copy) == before


@pytest.mark.parametrize("reader", READERS)
def test_a_segmentation_put_over_a_recorded_one_is_not_credited_to_its_model(reader: str, data: Path,
                                                                            trained_run: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    """provenance.json named a model per case name: a file copied over a segmentation since (here the reference
    itself, a perfect score) was scored as that model's, and inference run again kept it as its own. The record
    now holds the written file's identity: a file that is not it is of unknown origin, and refused as such."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    case = sorted(p for p in data.iterdir() if p.is_dir())[1]
    shutil.copy(next(case.glob("*_seg.nii.gz")), out / f"{case.name}.nii.gz")
    before = checksums(out, data)
    if reader == "inference again":
        result = run_module(command("inference", {**TINY_IDS, "dataset_dir": data, "run_dir": trained_run,
                                                  "output_dir": out}), capture_output=True, text=True, cwd=REPO,
                            timeout=600)
        line = last_line(result)
        assert result.returncode != 0 and "already holds 1 output(s) not written by this model" in line
        assert f"{case.name} (not the file its record describes: put there since)" in line
    else:
        rc, line = _evaluate(reader, out, data, trained_run, tmp_path / "eval", capsys)
        assert rc != 0 and line.startswith("error: ") and "1 of the 4 scored segmentation(s)" in line
        assert f"are not the files provenance.json recorded (case {case.name}:" in line
    assert checksums(out, data) == before


def test_a_copied_output_folder_keeps_its_models(data: Path, trained_run: Path, tmp_path: Path) -> None:
    """Copied without its times (cp -r, another machine), each file is still the one recorded, by its sha256."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    copy = Path(shutil.copytree(out, tmp_path / "copy", copy_function=shutil.copy))
    assert all(e["output"]["mtime_ns"] != (copy / e["file"]).stat().st_mtime_ns for e in _record(copy).values())
    assert pipeline_main(["evaluate", str(copy), str(data), "--out", str(tmp_path / "eval"), "--no-pictures"]) == 0
    assert len(json.loads((tmp_path / "eval" / "summary.json").read_text())["models"]) == 1


def test_a_training_case_copied_under_another_name_is_marked_trained(data: Path, trained_run: Path,
                                                                     tmp_path: Path) -> None:
    """The split names training cases by id; run.json now keeps their images' sha256 too, so a training case under
    a new name (later BraTS editions renamed theirs) is not scored as held out."""
    record = json.loads((trained_run / "run.json").read_text())
    assert [len(images) for images in record["training_images"]] == [4] * len(record["split"]["train"])
    trained = record["split"]["train"][0]
    renamed = tmp_path / "renamed" / "NEW_00001"
    renamed.mkdir(parents=True)
    for f in (data / trained).iterdir():
        shutil.copy(f, renamed / f.name.replace(trained, "NEW_00001"))
    out = tmp_path / "seg"
    _infer(renamed.parent, trained_run, out)
    assert _record(out)["NEW_00001"].get("trained") is True


@pytest.mark.parametrize("reader", ["pipeline evaluate", "bundle evaluate"])
def test_a_folder_whose_every_segmentation_was_replaced_is_not_scored_as_its_models(
        reader: str, data: Path, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With every file replaced (cp ref/*.nii.gz seg/) there is no second model to mix with: the files that are not
    the ones recorded are refused as such."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    for case in sorted(p for p in data.iterdir() if p.is_dir()):
        shutil.copy(next(case.glob("*_seg.nii.gz")), out / f"{case.name}.nii.gz")
    rc, line = _evaluate(reader, out, data, trained_run, tmp_path / "eval", capsys)
    assert rc != 0 and line.startswith("error: ") and "4 of the 4 scored segmentation(s)" in line
    assert "are not the files provenance.json recorded" in line and "--allow_mixed true" in line
    assert not (tmp_path / "eval" / "metrics.csv").exists()


def test_a_moved_dataset_scored_against_a_labels_folder_says_where_to_look(data: Path, trained_run: Path,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """A folder of label files holds no images to match by content: the recorded inputs are gone, and the refusal
    says so and names the way that works (the dataset folder), rather than calling them changed."""
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    labels = tmp_path / "labels"
    labels.mkdir()
    for case in sorted(p for p in data.iterdir() if p.is_dir()):
        shutil.copy(next(case.glob("*_seg.nii.gz")), labels / f"{case.name}.nii.gz")
    moved = Path(shutil.move(str(data), str(tmp_path / "elsewhere")))
    assert pipeline_main(["evaluate", str(out), str(labels), "--out", str(tmp_path / "eval"), "--scheme",
                          "brats"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "are no longer where they were" in line and "evaluate against the dataset folder itself" in line
    assert pipeline_main(["evaluate", str(out), str(moved), "--out", str(tmp_path / "eval"), "--no-pictures"]) == 0


def test_a_decathlon_dataset_read_through_another_modality_table_is_not_the_same_inputs(
        layout_datasets: dict, trained_run: Path, tmp_path: Path) -> None:
    """Editing dataset.json's modality table changes which volume of each 4D file feeds each channel, with no file
    changed: the segmentations made before are stale (evaluation refuses them) and inference makes them again."""
    data = tmp_path / "msd"
    shutil.copytree(layout_datasets["msd"], data)
    out = tmp_path / "seg"
    _infer(data, trained_run, out)
    before = {c: [i["volume"] for i in e["inputs"]] for c, e in _record(out).items()}
    meta = json.loads((data / "dataset.json").read_text())
    table = meta["modality"]
    table["0"], table["3"] = table["3"], table["0"]  # FLAIR and T2w named the other way round
    (data / "dataset.json").write_text(json.dumps(meta))
    result = run_module(command("evaluate", {"dataset_dir": data, "run_dir": trained_run, "output_dir": out,
                                             "eval_dir": tmp_path / "eval"}),
                        capture_output=True, text=True, cwd=REPO, timeout=600)
    line = last_line(result)
    assert result.returncode != 0 and line.startswith("error: ") and "stale" in line and "modality table" in line
    again = _infer(data, trained_run, out)
    assert "whose inputs changed since" in again.stdout + again.stderr
    after = {c: [i["volume"] for i in e["inputs"]] for c, e in _record(out).items()}
    assert after.keys() == before.keys() and all(after[c] != before[c] for c in after)
    assert all(sorted(v) == [0, 1, 2, 3] for v in after.values())
    moved = tmp_path / "msd_moved"  # moved, and its table changed back: this dataset, read otherwise: made again
    shutil.copytree(data, moved)
    table["0"], table["3"] = table["3"], table["0"]
    (moved / "dataset.json").write_text(json.dumps(meta))
    result = run_module(command("evaluate", {"dataset_dir": moved, "run_dir": trained_run, "output_dir": out,
                                             "eval_dir": tmp_path / "eval_moved"}),
                        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode != 0 and "modality table" in last_line(result)
    third = _infer(moved, trained_run, out)
    assert "whose inputs changed since" in third.stdout + third.stderr
    assert {c: [i["volume"] for i in e["inputs"]] for c, e in _record(out).items()} == before
