"""Pairing by resolved file: a prediction that is the reference's own file (through a link) is refused, so is a case
present twice, a fold's validation cases are the ones its run recorded, and nnU-Net's ignore label is not scored."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.__main__ import main as pipeline_main
from pipeline.core.errors import UserError
from pipeline.data.datalist import build_datalist
from pipeline.data.labels import from_dataset_json
from pipeline.evaluation.crossval import cross_validation_summary
from pipeline.evaluation.regions import evaluate_case
from tests.helpers import checksums


def _labels(data: Path) -> list[Path]:
    return sorted(data.rglob("*_seg.nii.gz"))


@pytest.mark.parametrize("link", [pytest.param(os.symlink, id="symlink"), pytest.param(os.link, id="hardlink")])
def test_a_prediction_that_is_the_references_own_file_is_refused(link, tiny_dataset: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    pred = tmp_path / "pred"
    pred.mkdir()
    for label in _labels(tiny_dataset):
        link(label, pred / f"{label.parent.name}.nii.gz")
    before = checksums(tiny_dataset)
    assert pipeline_main(["evaluate", str(pred), str(tiny_dataset), "--out", str(tmp_path / "eval")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "is the reference's own file" in line
    assert checksums(tiny_dataset) == before and not (tmp_path / "eval").exists()


def test_a_case_present_as_nii_and_nii_gz_is_refused(tiny_dataset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    pred = tmp_path / "pred"
    pred.mkdir()
    for label in _labels(tiny_dataset):
        shutil.copy(label, pred / f"{label.parent.name}.nii.gz")
    first = _labels(tiny_dataset)[0]
    img = nib.load(first)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), pred / f"{first.parent.name}.nii")
    assert pipeline_main(["evaluate", str(pred), str(tiny_dataset), "--out", str(tmp_path / "eval")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"holds both {first.parent.name}.nii and {first.parent.name}.nii.gz" in line


def test_a_single_case_folder_is_evaluated_as_its_own_reference(tiny_dataset: Path, tmp_path: Path) -> None:
    case = sorted(p for p in tiny_dataset.iterdir() if p.is_dir())[0]
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(next(case.glob("*_seg.nii.gz")), pred / f"{case.name}.nii.gz")
    assert pipeline_main(["evaluate", str(pred), str(case), "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["cases"] == 1 and summary["mean_dice"] == 1.0


def test_cross_validation_refuses_a_datalist_whose_folds_are_not_the_recorded_splits(tiny_dataset: Path,
                                                                                      tmp_path: Path) -> None:
    run = tmp_path / "cv"
    dl = build_datalist(tiny_dataset, folds=2, seed=0)
    run.mkdir()
    (run / "datalist.json").write_text(json.dumps(dl))
    for f in (0, 1):  # each fold's run records the validation cases it was trained with: the other fold's here
        (run / f"fold_{f}" / "models").mkdir(parents=True)
        (run / f"fold_{f}" / "models" / "model.pt").write_bytes(b"x")
        validation = [it["case"] for it in dl["training"] if it["fold"] != f]
        (run / f"fold_{f}" / "run.json").write_text(json.dumps({"split": {"validation": validation}}))
    with pytest.raises(UserError, match="lists other validation cases for fold 0 than fold_0 was trained with"):
        cross_validation_summary(run)
    assert not (run / "cv").exists()  # refused before any inference


def test_the_ignore_label_of_an_nnunet_set_is_scored_in_neither_image() -> None:
    desc = from_dataset_json({"channel_names": {"0": "T1"}, "labels": {"background": 0, "tumour": 1, "ignore": 2}},
                             "nnunet:test")
    ref = torch.zeros(8, 8, 8, dtype=torch.uint8)
    ref[2:5, 2:5, 2:5] = 1
    ref[5:8, 5:8, 5:8] = 2  # not annotated
    pred = (ref > 0).to(torch.uint8)  # the tumour, and "tumour" where nobody annotated
    pred[0, 0, 0] = 1  # one false positive among the 512 - 27 scored voxels
    rows = evaluate_case(pred, ref, 1.0, scheme=desc)
    assert desc.ignore == 2 and [r["region"] for r in rows] == ["tumour"] and rows[0]["dice"] == 2 * 27 / (28 + 27)
    negatives = 8 ** 3 - 27 - 27  # every voxel but the tumour and the unannotated corner
    assert rows[0]["specificity"] == (negatives - 1) / negatives


def _nnunet_set_with_ignore(root: Path) -> Path:
    """An nnU-Net raw dataset of two cases (T1; 1 tumour, 2 ``ignore``) whose unannotated corner a prediction
    calls tumour."""
    data = root / "Dataset900_ignore"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    (data / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, "tumour": 1, "ignore": 2},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    pred = root / "pred"
    pred.mkdir()
    for case in ("c1", "c2"):
        ref = np.zeros((8, 8, 8), np.uint8)
        ref[2:5, 2:5, 2:5] = 1
        ref[5:8, 5:8, 5:8] = 2
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), data / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(ref, np.eye(4)), data / "labelsTr" / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image((ref > 0).astype(np.uint8), np.eye(4)), pred / f"{case}.nii.gz")
    return data


@pytest.mark.parametrize("command", [
    pytest.param(["evaluate", "{pred}", "{ref}", "--out", "{out}"], id="evaluate_in_its_own_scheme"),
    pytest.param(["evaluate", "{pred}", "{ref}", "--out", "{out}", "--scheme", "labels"], id="evaluate_labels"),
    pytest.param(["compare", "{ref}", "{pred}", "{pred2}", "--out", "{out}", "--scheme", "labels"],
                 id="compare_labels"),
])
def test_the_ignore_label_is_no_class_and_its_voxels_are_not_scored_in_every_scoring_path(
        command: list[str], tmp_path: Path) -> None:
    ref = _nnunet_set_with_ignore(tmp_path)
    shutil.copytree(tmp_path / "pred", tmp_path / "pred2")
    out = tmp_path / "eval"
    args = [a.format(pred=tmp_path / "pred", pred2=tmp_path / "pred2", ref=ref, out=out) for a in command]
    assert pipeline_main(args) == 0
    summaries = [json.loads(f.read_text()) for f in out.rglob("summary.json")]
    assert summaries
    for summary in summaries:  # label 1 only, scored perfect: the "tumour" in the unannotated corner is not counted
        assert list(summary["regions"]) in (["tumour"], ["label_1"]) and summary["mean_dice"] == 1.0


@pytest.mark.parametrize("fold", [1, None], ids=["a_fold_is_refused", "every_case_is_scored_with_a_warning"])
def test_segmentations_of_cases_their_model_trained_on_are_never_scored_as_held_out(
        fold, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from pipeline.core.provenance import ID_ONLY, Provenance
    from pipeline.evaluation.reference import check_provenance

    record = Provenance(tmp_path)
    for case, trained in (("A", True), ("B", False), ("C", ID_ONLY)):
        record.record(case, model="m1", file=f"{case}.nii.gz", inputs=[], trained=trained)
    assert Provenance(tmp_path).trained_cases(["A", "B", "C"]) == {"A": True, "C": ID_ONLY}  # written and read back
    # C only shares a training case's id (other images): named apart, as another patient would need another id
    note = "(1 of them only share their id with a training case, their images are others: C; if they are other " \
           "patients, give them their own ids)"
    if fold is not None:
        with pytest.raises(UserError, match=r"^--infer_fold 1: 2 of its 3 scored segmentation\(s\) .* trained on "
                                            r"those cases \(A, C; provenance\.json\) \(1 of them only") as err:
            check_provenance(tmp_path, ["A", "B", "C"], fold=fold)
        assert note in str(err.value)
        return
    with caplog.at_level(logging.WARNING):
        assert check_provenance(tmp_path, ["A", "B", "C"]) == {"m1": ["A", "B", "C"]}
    assert "2 of the 3 scored segmentation(s) were written by a model that trained on those cases (A, C" in caplog.text
    assert note in caplog.text


@pytest.mark.parametrize("against", ["the_dataset_they_came_from", "a_copy_with_the_same_case_names",
                                     "the_copy_allowing_mixed"])
def test_predictions_of_another_datasets_images_are_not_scored_as_this_ones(tiny_dataset: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture,
                                                                           against: str) -> None:
    """Two datasets whose cases share names (/data/2023/test and /data/2024/test): provenance.json records the
    images each segmentation was made from; evaluation pairs by name, so it checks them by resolved path."""
    from pipeline.core.provenance import Provenance, input_identity
    from pipeline.data.layouts import discover_cases

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    pred = tmp_path / "pred"
    pred.mkdir()
    record = Provenance(pred)
    for case in discover_cases(tiny_dataset):
        shutil.copy(case.label, pred / f"{case.case_id}.nii.gz")
        record.record(case.case_id, model="m1", file=f"{case.case_id}.nii.gz", inputs=input_identity(case.images))
    reference = tiny_dataset if against == "the_dataset_they_came_from" else copy
    extra = ["--allow-mixed"] if against.endswith("allowing_mixed") else []
    rc = pipeline_main(["evaluate", str(pred), str(reference), "--out", str(tmp_path / "eval"), "--no-pictures",
                        *extra])
    if against == "a_copy_with_the_same_case_names":
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert rc == 2 and "were segmented from other images than the reference's cases" in line
        assert not (tmp_path / "eval").exists()
        return
    assert rc == 0 and json.loads((tmp_path / "eval" / "summary.json").read_text())["mean_dice"] == 1.0


def _datalist_with_separate_image_folder(layout_datasets: dict, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A datalist whose images lie in ``zoo/images`` and labels in ``zoo/labels`` (the model zoo's way), and a
    prediction folder of the references' copies: ``(datalist, images folder, predictions)``."""
    from pipeline.data.datalist import build_datalist

    src = tmp_path / "src"
    shutil.copytree(layout_datasets["brats2021"], src)
    dl = build_datalist(src, folds=2)
    images, labels, pred = tmp_path / "zoo" / "images", tmp_path / "zoo" / "labels", tmp_path / "pred"
    for folder in (images, labels, pred):
        folder.mkdir(parents=True)
    for item in dl["training"]:
        item["image"] = [str(shutil.copy(p, images)) for p in item["image"]]
        item["label"] = str(shutil.copy(item["label"], labels))
        shutil.copy(item["label"], pred / f"{item['case']}.nii.gz")
    (tmp_path / "zoo" / "datalist.json").write_text(json.dumps(dl))
    return tmp_path / "zoo" / "datalist.json", images, pred


@pytest.mark.parametrize("writer", ["evaluate", "compare", "plot evaluation"])
def test_no_writer_of_scores_writes_into_a_datalist_references_image_folder(layout_datasets, tmp_path: Path,
                                                                            writer: str,
                                                                            capsys: pytest.CaptureFixture) -> None:
    """The guard of evaluations, comparisons and pictures held the reference's label files only: a datalist's image
    folder took metrics.csv, report.html and overlays. One guard (`Reference.guard`) holds every file of every case."""
    datalist, images, pred = _datalist_with_separate_image_folder(layout_datasets, tmp_path)
    before = sorted(p.name for p in images.iterdir())
    if writer == "plot evaluation":
        assert pipeline_main(["evaluate", str(pred), str(datalist), "--out", str(tmp_path / "eval")]) == 0
        argv = ["plot", "evaluation", str(tmp_path / "eval"), str(pred), str(datalist), "--out", str(images)]
    elif writer == "compare":
        other = tmp_path / "pred2"
        shutil.copytree(pred, other)
        argv = ["compare", str(datalist), str(pred), str(other), "--out", str(images)]
    else:
        argv = ["evaluate", str(pred), str(datalist), "--out", str(images)]
    capsys.readouterr()
    assert pipeline_main(argv) != 0
    assert "input folder" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in images.iterdir()) == before


@pytest.mark.parametrize("writer", ["evaluate", "plot evaluation"])
def test_a_prediction_folder_that_inference_still_writes_is_not_scored(layout_datasets, tmp_path: Path, writer: str,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Its cases not yet written were scored as empty predictions and the result saved as a finished evaluation."""
    import os
    import socket

    datalist, _, pred = _datalist_with_separate_image_folder(layout_datasets, tmp_path)
    assert pipeline_main(["evaluate", str(pred), str(datalist), "--out", str(tmp_path / "eval")]) == 0
    child = __import__("subprocess").Popen(["sleep", "60"])
    try:
        (pred / ".lock").write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(), "what": "inference"}))
        argv = (["evaluate", str(pred), str(datalist), "--out", str(tmp_path / "eval2")] if writer == "evaluate" else
                ["plot", "evaluation", str(tmp_path / "eval"), str(pred), str(datalist), "--out", str(tmp_path / "p")])
        capsys.readouterr()
        assert pipeline_main(argv) != 0
        assert "is still being written" in capsys.readouterr().err.strip().splitlines()[-1]
        assert not (tmp_path / "eval2").exists() and not (tmp_path / "p").exists()
    finally:
        child.kill()
        child.wait()
    assert os.path.exists(pred / ".lock")


def test_pictures_of_two_evaluations_never_mix_in_one_folder(layout_datasets, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """A second `plot evaluation` into the same --out replaced the first's box plot and left its overlays beside the
    new ones; a pictures folder now says what it illustrates, and a drawing again replaces its own overlays only."""
    datalist, _, pred = _datalist_with_separate_image_folder(layout_datasets, tmp_path)
    other = tmp_path / "pred2"
    shutil.copytree(pred, other)
    for name, folder in (("evalA", pred), ("evalB", other)):
        assert pipeline_main(["evaluate", str(folder), str(datalist), "--out", str(tmp_path / name),
                              "--no-pictures"]) == 0
    pics = tmp_path / "pics"
    draw = ["plot", "evaluation", str(tmp_path / "evalA"), str(pred), str(datalist), "--out", str(pics)]
    assert pipeline_main(draw) == 0
    drawn = next((pics / "overlays").glob("*.png"))  # an earlier drawing's case (drawn here: it carries the mark)
    (pics / "overlays" / "stale_case.png").write_bytes(drawn.read_bytes())
    assert pipeline_main(draw) == 0  # the same evaluation again: its own pictures, the stale one gone
    assert not (pics / "overlays" / "stale_case.png").exists() and any((pics / "overlays").glob("*.png"))
    before = sorted(p.name for p in pics.rglob("*"))
    capsys.readouterr()
    assert pipeline_main(["plot", "evaluation", str(tmp_path / "evalB"), str(other), str(datalist), "--out",
                          str(pics)]) != 0
    assert "holds the pictures of" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in pics.rglob("*")) == before


def _as_inference_wrote(folder: Path) -> Path:
    """``folder``'s segmentations recorded in its provenance.json as a model wrote them (`Provenance.record`)."""
    from pipeline.core.provenance import Provenance, input_identity

    provenance = Provenance(folder)
    for f in sorted(folder.glob("*.nii.gz")):
        provenance.record(f.name[:-7], model="m", file=f.name, inputs=[],
                          output=input_identity([f], digest=True)[0])
    return folder


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_folder_inference_wrote_is_refused_as_the_reference(tiny_dataset: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture, command: str) -> None:
    """Predictions and reference swapped (the model's output folder given as the reference) scored without a
    sign, the same Dice but sensitivity and specificity the other way round; inference's provenance.json names
    such a folder, and every reader of a reference (`read_reference`) refuses it."""
    from tests.helpers import corrupted_predictions

    model_output = _as_inference_wrote(corrupted_predictions(tiny_dataset, tmp_path / "seg", 0))
    labels = corrupted_predictions(tiny_dataset, tmp_path / "labels", 1)
    argv = (["evaluate", str(labels), str(model_output), "--out", str(tmp_path / "e"), "--no-pictures"]
            if command == "evaluate" else ["compare", str(model_output), str(labels), str(tiny_dataset), "--out",
                                           str(tmp_path / "c")])
    assert pipeline_main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"the reference {model_output} holds segmentations as inference wrote them" in last
    assert not (tmp_path / "e").exists() and not (tmp_path / "c").exists()


def test_segmentations_corrected_by_hand_since_inference_are_a_reference(tiny_dataset: Path,
                                                                         tmp_path: Path) -> None:
    """A model's output corrected in ITK-SNAP and used as ground truth: the files are no longer those inference
    recorded (`Provenance.entry`), so they are read as labels."""
    from tests.helpers import corrupted_predictions

    corrected = _as_inference_wrote(corrupted_predictions(tiny_dataset, tmp_path / "seg", 0))
    for f in corrected.glob("*.nii.gz"):
        img = nib.load(f)
        arr = np.asarray(img.dataobj).copy()
        arr[0, 0, 0] = 0 if arr[0, 0, 0] else 2
        nib.save(nib.Nifti1Image(arr, img.affine, img.header), f)
    labels = corrupted_predictions(tiny_dataset, tmp_path / "labels", 1)
    assert pipeline_main(["evaluate", str(labels), str(corrected), "--scheme", "brats", "--out", str(tmp_path / "e"),
                          "--no-pictures"]) == 0


@pytest.mark.parametrize("command", [
    pytest.param(["evaluate", "{pred}", "{data}", "--out", "{out}"], id="evaluate_legacy"),
    pytest.param(["evaluate", "{pred}", "{data}", "--out", "{out}", "--protocol", "official"], id="evaluate_official"),
    pytest.param(["compare", "{data}", "{good}", "{pred}", "--out", "{out}"], id="compare"),
])
def test_a_prediction_named_as_a_case_but_for_letter_case_is_refused(command: list[str], tiny_dataset: Path,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """brats2021_00001.nii.gz beside a case BraTS2021_00001 was scored as a missing prediction (Dice 0) on a
    case-sensitive file system, and as the case's on a case-insensitive one."""
    pred = tmp_path / "pred"
    pred.mkdir()
    labels = _labels(tiny_dataset)
    for label in labels:
        shutil.copy(label, pred / f"{label.parent.name}.nii.gz")
    good = Path(shutil.copytree(pred, tmp_path / "good"))
    case = labels[1].parent.name
    (pred / f"{case}.nii.gz").rename(pred / f"{case.lower()}.nii.gz")
    argv = [a.format(pred=pred, good=good, data=tiny_dataset, out=tmp_path / "out") for a in command]
    if "official" in command:
        pytest.importorskip("brats_evaluation")
    assert pipeline_main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"error: the prediction {pred / (case.lower() + '.nii.gz')} is named as case {case} but for letter "
                    f"case: it would be scored as missing (Dice 0) and left out; rename it {case}.nii.gz")
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))  # nothing written (a folder, at most)
