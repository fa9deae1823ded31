"""Evaluation scores against the reference only: which files are the reference, which folders are refused,
which label scheme is used, and what happens without predictions; through ``python -m pipeline evaluate|plot``.

Every test checks the outcome (exit code, one-line message naming the folder or file and the fix, or the
numbers) and that nothing was lost: the input files keep their checksums and nothing is written outside
the output folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main
from pipeline.data.labels import BUILTIN, describe
from pipeline.data.layouts import LAYOUTS, discover_cases
from pipeline.evaluation.regions import evaluate_folders

SHAPE = (32, 32, 24)
SCHEME_OF = {"brats2021": "brats", "brats2023": "brats2023", "msd": "msd"}
ET_OF = {"brats2021": 4, "brats2023": 3, "msd": 3}


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def changed_files(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def assert_only_written_under(root: Path, before: dict[str, str], out: Path) -> None:
    """Files under ``root`` changed, added or removed since ``before`` all lie in ``out``."""
    rel = out.relative_to(root).as_posix()
    changed = changed_files(before, snapshot(root))
    assert {k for k in changed if not (k == rel or k.startswith(rel + "/"))} == set()


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """``make_dataset(layout, where="data")``: 3 synthetic cases of 32 x 32 x 24 voxels under ``tmp_path/where``."""
    from pipeline.data.synthetic import write_dataset

    def make(layout: str = "brats2021", where: str = "data") -> Path:
        root = tmp_path / where
        write_dataset(root, cases=3, shape=SHAPE, seed=3, layout=layout)
        return root

    return make


def copy_labels(dataset: Path, pred: Path, cases: int | None = None) -> list[str]:
    """Copy the dataset's labels to ``pred/<case>.nii.gz`` (perfect predictions); the case ids copied."""
    pred.mkdir(parents=True, exist_ok=True)
    labelled = [c for c in discover_cases(dataset) if c.label][:cases]
    for c in labelled:
        shutil.copy(c.label, pred / f"{c.case_id}.nii.gz")
    return [c.case_id for c in labelled]


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


# ----------------------------------------------------------------------------------------------------------------
# Which files are the reference
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [pytest.param("brats2021", id="brats2021_case_folders"),
                                    pytest.param("brats2023", id="brats2023_case_folders"),
                                    pytest.param("msd", id="msd_labelsTr"),
                                    pytest.param("nnunet", id="nnunet_labelsTr")])
def test_stray_nifti_files_at_a_dataset_root_are_not_taken_as_the_reference(
        make_dataset, tmp_path: Path, layout: str, caplog: pytest.LogCaptureFixture) -> None:
    data = make_dataset(layout)
    ids = copy_labels(data, tmp_path / "pred")
    for cid in ids:  # empty "predictions" written into the dataset root by mistake
        nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.eye(4)), data / f"{cid}.nii.gz")
    before = snapshot(tmp_path)
    with caplog.at_level(logging.WARNING):
        rc = run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval")
    assert rc == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["cases"] == 3 and summary["mean_dice"] == 1.0  # the layout's labels, not the empty stray files
    assert summary["reference_layout"] == layout
    assert any("ignoring 3 NIfTI file(s) at its root" in m and f"{ids[0]}.nii.gz" in m for m in caplog.messages)
    assert_only_written_under(tmp_path, before, tmp_path / "eval")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_reference_dataset_without_labels_is_refused_naming_where_its_labels_would_lie(
        make_dataset, tmp_path: Path, layout: str, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset(layout)
    ids = copy_labels(data, tmp_path / "pred")
    for case in discover_cases(data):
        Path(case.label).unlink()
    assert LAYOUTS[layout].label_files
    before = snapshot(tmp_path)
    rc = run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(ids) == 3
    assert err.splitlines()[-1].endswith(f"has a label file {LAYOUTS[layout].label_files}; pass a labelled dataset")
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------------------------
# Folders that overlap are refused before anything is read or written
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data_at", "pred_at", "expected"), [
    pytest.param("data", "data", "is the reference dataset folder", id="prediction_folder_is_the_dataset"),
    pytest.param("data", "data/seg", "lies inside the reference dataset folder", id="prediction_folder_in_the_dataset"),
    pytest.param("run/data", "run", "lies inside the prediction folder", id="dataset_inside_the_prediction_folder"),
])
def test_a_prediction_folder_overlapping_the_reference_dataset_is_refused(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture, data_at: str, pred_at: str, expected: str) -> None:
    data = make_dataset("brats2023", where=data_at)
    pred = tmp_path / pred_at
    if pred != data:
        copy_labels(data, pred)
    before = snapshot(tmp_path)
    rc = run("evaluate", pred, data, "--out", tmp_path / "eval")
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and expected in err
    assert str(pred.resolve()) in err and "keep predictions in a folder of their own" in err
    assert snapshot(tmp_path) == before and not (tmp_path / "eval").exists()


@pytest.mark.parametrize(("out_at", "expected"), [
    pytest.param("data/eval", "lies inside the input folder", id="out_inside_the_dataset"),
    pytest.param("pred", "is the input folder", id="out_is_the_prediction_folder"),
    pytest.param(".", "contains the input folder", id="out_contains_the_inputs"),
])
def test_an_output_folder_among_the_inputs_is_refused(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture, out_at: str, expected: str) -> None:
    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred")
    out = tmp_path / out_at
    before = snapshot(tmp_path)
    rc = run("evaluate", tmp_path / "pred", data, "--out", out)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and expected in err and str(out.resolve()) in err and "pass --out" in err
    assert snapshot(tmp_path) == before and not list(tmp_path.rglob("metrics.csv"))


# ----------------------------------------------------------------------------------------------------------------
# The label scheme
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [pytest.param("brats2023", id="brats2023_et_is_3"),
                                    pytest.param("brats2021", id="brats2021_et_is_4"),
                                    pytest.param("msd", id="msd_et_is_3_ed_is_1")])
def test_auto_scheme_follows_the_reference_layout(make_dataset, tmp_path: Path, layout: str) -> None:
    data = make_dataset(layout)
    copy_labels(data, tmp_path / "pred")
    before = snapshot(tmp_path)
    assert run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval") == 0  # --scheme auto by default
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["scheme"] == SCHEME_OF[layout]
    assert all(summary["regions"][r]["dice"]["mean"] == 1.0 for r in ("ET", "TC", "WT"))
    assert summary["regions"]["ET"]["dice"]["n"] == 3 and summary["n_missing_predictions"] == 0
    et_voxels = {c.case_id: int((np.asanyarray(nib.load(c.label).dataobj) == ET_OF[layout]).sum())
                 for c in discover_cases(data)}
    rows = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()[1:]
    assert {r.split(",")[0]: int(r.split(",")[-1]) for r in rows if r.split(",")[1] == "ET"} == et_voxels
    assert any(et_voxels.values())
    assert_only_written_under(tmp_path, before, tmp_path / "eval")


def test_a_scheme_that_contradicts_the_layout_names_the_layouts_scheme(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset("brats2023")
    copy_labels(data, tmp_path / "pred")
    before = snapshot(tmp_path)
    rc = run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval", "--scheme", "brats")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "label scheme brats contradicts brats2023 data" in err and "label 4 is RC in the data, ET in scheme brats" \
        in err and "its own scheme (--scheme auto)" in err  # BraTS 2023 names: ET = 3, by identity
    assert snapshot(tmp_path) == before


def test_auto_scheme_on_a_folder_of_labels_asks_for_an_explicit_scheme(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset("brats2023")
    copy_labels(data, tmp_path / "labels")  # a flat folder of <case>.nii.gz labels: no layout
    copy_labels(data, tmp_path / "pred")
    before = snapshot(tmp_path)
    assert run("evaluate", tmp_path / "pred", tmp_path / "labels", "--out", tmp_path / "eval") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "labels") in err
    assert "--scheme auto cannot tell" in err and err.endswith("or labels (each value scored as it is)")
    assert all(f"{name} ({describe(name).title})" in err for name in BUILTIN)  # every scheme, from its description
    assert snapshot(tmp_path) == before
    assert run("evaluate", tmp_path / "pred", tmp_path / "labels", "--out", tmp_path / "eval",
               "--scheme", "brats2023") == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["mean_dice"] == 1.0
    assert_only_written_under(tmp_path, before, tmp_path / "eval")


# ----------------------------------------------------------------------------------------------------------------
# Missing predictions
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [pytest.param([], id="empty_prediction_folder"),
                                   pytest.param(["patient_1", "patient_2"], id="files_named_after_no_case")])
def test_no_prediction_at_all_is_a_nonzero_exit(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture, names: list[str]) -> None:
    data = make_dataset("brats2021")
    pred = tmp_path / "pred"
    pred.mkdir()
    label = discover_cases(data)[0].label
    for name in names:
        shutil.copy(label, pred / f"{name}.nii.gz")
    before = snapshot(tmp_path)
    rc = run("evaluate", pred, data, "--out", tmp_path / "eval")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"no prediction in {pred} for any of the 3 reference case(s)" in err and "pass the folder inference" in err
    assert (f"e.g. {names[0]}" if names else "holds no .nii.gz file") in err
    assert snapshot(tmp_path) == before and not (tmp_path / "eval").exists()


def test_missing_predictions_are_scored_empty_and_counted(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred", cases=2)
    missing = discover_cases(data)[2].case_id
    before = snapshot(tmp_path)
    assert run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval") == 0
    out = capsys.readouterr().out
    assert "(3 cases, 1 without prediction" in out
    assert f"missing predictions (scored as empty): 1 of 3 cases: {missing}" in out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert (summary["missing_predictions"], summary["n_missing_predictions"]) == ([missing], 1)
    assert summary["regions"]["WT"]["dice"]["min"] == 0.0 and summary["regions"]["WT"]["dice"]["max"] == 1.0
    assert_only_written_under(tmp_path, before, tmp_path / "eval")


# ----------------------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "scheme"), [pytest.param("msd", "msd", id="msd_explicit"),
                                                pytest.param("msd", "auto", id="msd_auto"),
                                                pytest.param("brats2023", "labels", id="labels_one_contour_per_value")])
def test_plot_evaluation_accepts_every_scheme(make_dataset, tmp_path: Path, layout: str, scheme: str) -> None:
    data = make_dataset(layout)
    copy_labels(data, tmp_path / "pred")
    # the bundle's calls (evaluate.yaml): positional folders, scheme as a keyword
    evaluate_folders(tmp_path / "pred", data, tmp_path / "eval", scheme=SCHEME_OF[layout],
                     cases=[c.case_id for c in discover_cases(data)])
    before = snapshot(tmp_path)
    assert run("plot", "evaluation", tmp_path / "eval", tmp_path / "pred", data, "--scheme", scheme) == 0
    pictures = sorted(p.relative_to(tmp_path / "eval").as_posix() for p in (tmp_path / "eval").rglob("*.png"))
    assert pictures[0] == "dice_boxplot.png" and len(pictures) == 4
    assert all((tmp_path / "eval" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    assert_only_written_under(tmp_path, before, tmp_path / "eval")


@pytest.mark.parametrize("case", ["scheme_of_the_evaluation", "nii_predictions", "another_prediction_folder"])
def test_plot_evaluation_draws_the_evaluation_in_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            case: str) -> None:
    """The pictures read what the evaluation recorded (summary.json): its scheme under auto (BraTS 2024 data in the
    2023 file names: RC 4 is refused as brats2023, the layout's scheme), its prediction files as it paired them
    (.nii too), and only its own pair of folders."""
    from pipeline.data.synthetic import write_dataset

    data = tmp_path / "data"
    write_dataset(data, cases=3, shape=SHAPE, seed=3, layout="brats2024")
    copy_labels(data, tmp_path / "pred")
    if case == "nii_predictions":
        for f in sorted((tmp_path / "pred").glob("*.nii.gz")):
            nib.save(nib.load(f), f.with_name(f.name[:-3]))
            f.unlink()
    evaluate_folders(tmp_path / "pred", data, tmp_path / "eval", scheme="brats2024")
    pred = tmp_path / "pred"
    if case == "another_prediction_folder":
        pred = tmp_path / "other"
        copy_labels(data, pred)
    rc = run("plot", "evaluation", tmp_path / "eval", pred, data)
    overlays = sorted((tmp_path / "eval" / "overlays").glob("*.png"))
    if case == "another_prediction_folder":
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert rc == 2 and f"holds the evaluation of {tmp_path / 'pred'} against" in line and not overlays
        return
    assert rc == 0 and len(overlays) == 3


@pytest.mark.parametrize("change", ["a_prediction_rewritten", "a_label_rewritten", "a_prediction_removed"])
def test_plot_evaluation_refuses_files_changed_since_they_were_scored(make_dataset, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture,
                                                                      change: str) -> None:
    """Pictures titled with the evaluation's Dice and ranks drew segmentations rewritten since (all empty under a
    mean Dice of 1.000): the files drawn must be those scored (summary.json's inputs_state)."""
    import os

    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred")
    assert run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval", "--no-pictures") == 0
    case = discover_cases(data)[1]
    prediction = tmp_path / "pred" / f"{case.case_id}.nii.gz"
    target = Path(case.label) if change == "a_label_rewritten" else prediction
    if change == "a_prediction_removed":
        target.unlink()
    else:
        image = nib.load(target)
        nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine, image.header), target)
        later = (tmp_path / "eval" / "summary.json").stat().st_mtime_ns + 10**9
        os.utime(target, ns=(later, later))
    capsys.readouterr()
    assert run("plot", "evaluation", tmp_path / "eval", tmp_path / "pred", data, "--out", tmp_path / "pics") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path / 'eval'} scored other files than ") and line.endswith(
        f"evaluate again first: python -m pipeline evaluate {tmp_path / 'pred'} {data} --out {tmp_path / 'eval'} "
        "--scheme brats")
    if change != "a_prediction_removed":
        assert f"(case {case.case_id}: {target} was written after it)" in line
    assert not (tmp_path / "pics").exists()
    assert run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval", "--no-pictures") == 0  # the advice
    assert run("plot", "evaluation", tmp_path / "eval", tmp_path / "pred", data, "--out", tmp_path / "pics") == 0


#: the file (and 4D index) of a channel of an ``(layout, channels)`` synthetic case, read from its own naming
MSD_MODALITY = {"FLAIR": 0, "T1": 1, "T1ce": 2, "T2": 3}  # the Decathlon's dataset.json "modality"


def expected_channel_file(data: Path, layout: str, case_id: str, channel: str) -> tuple[str, int | None]:
    if layout == "msd":
        return str(data / "imagesTr" / f"{case_id}.nii.gz"), MSD_MODALITY[channel]
    if layout == "nnunet":
        names = json.loads((data / "dataset.json").read_text())["channel_names"]
        k = next(int(k) for k, name in names.items() if name == channel)
        return str(data / "imagesTr" / f"{case_id}_{k:04d}.nii.gz"), None
    suffix = {"brats2021": {"FLAIR": "_flair", "T1ce": "_t1ce"}, "brats2023": {"FLAIR": "-t2f", "T1ce": "-t1c"}}
    return str(data / case_id / f"{case_id}{suffix[layout][channel]}.nii.gz"), None


@pytest.mark.parametrize(("layout", "channels", "scheme", "shown"), [
    pytest.param("brats2021", None, "labels", ("FLAIR", "T1ce"), id="brats2021_labels"),
    pytest.param("brats2023", None, "auto", ("FLAIR", "T1ce"), id="brats2023_auto"),
    pytest.param("msd", None, "labels", ("FLAIR", "T1ce"), id="msd_4d_labels"),
    pytest.param("nnunet", None, "auto", ("FLAIR", "T1ce"), id="nnunet_auto"),
    pytest.param("nnunet", ("FLAIR", "T1", "T1ce", "T2"), "labels", ("FLAIR", "T1ce"), id="nnunet_flair_first_labels"),
    pytest.param("nnunet", ("FLAIR", "T1", "T1ce", "T2"), "msd", ("FLAIR", "T1ce"), id="nnunet_flair_first_msd"),
    pytest.param("nnunet", ("T1ce",), "labels", ("T1ce",), id="nnunet_one_channel_labels"),
])
def test_pictures_show_each_contrast_from_the_datas_own_file_whatever_scheme_scores_the_labels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, channels: tuple[str, ...] | None, scheme: str,
        shown: tuple[str, ...]) -> None:
    import pipeline.evaluation.plots as plots
    from pipeline.data.synthetic import write_dataset

    data = tmp_path / "data"
    write_dataset(data, cases=3, shape=SHAPE, seed=3, layout=layout,
                  **({"channels": channels} if channels else {}))
    copy_labels(data, tmp_path / "pred")
    evaluate_folders(tmp_path / "pred", data, tmp_path / "eval", scheme=scheme)
    drawn: dict[str, dict] = {}
    real = plots.plot_case_overlay

    def spy(images: dict, path: Path, *args, **kwargs):  # noqa: ANN202
        drawn[path.stem] = images
        return real(images, path, *args, **kwargs)

    monkeypatch.setattr(plots, "plot_case_overlay", spy)
    assert run("plot", "evaluation", tmp_path / "eval", tmp_path / "pred", data, "--scheme", scheme) == 0
    assert len(drawn) == 3
    for case_id, images in drawn.items():
        assert tuple(images) == shown
        for channel, where in images.items():
            assert (str(where[0]), where[1]) == expected_channel_file(data, layout, case_id, channel), channel


@pytest.mark.parametrize("names_layout", [pytest.param(True, id="datalist_with_layout"),
                                          pytest.param(False, id="datalist_without_layout_or_scheme")])
def test_the_bundles_evaluation_draws_the_pictures_of_a_datalists_cases(make_dataset, tmp_path: Path,
                                                                         names_layout: bool) -> None:
    from pipeline.data.datalist import datalist_from_cases
    from pipeline.data.source import DataSource
    from pipeline.evaluation.evaluate import evaluate, plots
    from pipeline.evaluation.reference import reference_of

    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred")
    datalist = datalist_from_cases(discover_cases(data), "d", "brats2021", "brats", folds=3)
    if not names_layout:  # a datalist written by hand or before layouts were recorded: brats2021 is read
        del datalist["layout"], datalist["label_scheme"]
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    reference = reference_of(DataSource(data, tmp_path / "datalist.json"))  # evaluate.yaml's calls, in its order
    evaluate("legacy", tmp_path / "pred", reference, tmp_path / "eval", scheme="auto")
    pictures = plots("legacy", tmp_path / "eval", tmp_path / "pred", reference, scheme="auto")
    assert reference.layout.layout == "brats2021" and reference.scheme == "brats"
    assert [p.name for p in pictures][0] == "dice_boxplot.png" and len(pictures) == 4


@pytest.mark.parametrize(("pred_at", "out_at", "expected"), [
    pytest.param("pred", "data/pictures", "lies inside the input folder", id="pictures_inside_the_dataset"),
    pytest.param("pred", "pred", "is the input folder", id="pictures_among_the_predictions"),
    pytest.param("data/seg", None, "lies inside the reference dataset folder", id="predictions_inside_the_dataset"),
])
def test_plot_evaluation_refuses_overlapping_folders(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture, pred_at: str, out_at: str | None,
        expected: str) -> None:
    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred")
    evaluate_folders(tmp_path / "pred", data, tmp_path / "eval", scheme="brats")
    if pred_at != "pred":
        copy_labels(data, tmp_path / pred_at)
    before = snapshot(tmp_path)
    out = ["--out", tmp_path / out_at] if out_at else []
    rc = run("plot", "evaluation", tmp_path / "eval", tmp_path / pred_at, data, *out)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expected in err
    assert snapshot(tmp_path) == before and not list(tmp_path.rglob("*.png"))


def test_plot_evaluation_refuses_a_prediction_outside_the_scheme_before_drawing(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset("brats2023")
    copy_labels(data, tmp_path / "pred")
    evaluate_folders(tmp_path / "pred", data, tmp_path / "eval", scheme="brats2023")
    case = next(c.case_id for c in discover_cases(data) if (np.asanyarray(nib.load(c.label).dataobj) == 3).any())
    bad = tmp_path / "pred" / f"{case}.nii.gz"
    image = nib.load(bad)
    data4 = np.where(np.asanyarray(image.dataobj) == 3, 4, np.asanyarray(image.dataobj)).astype(np.uint8)
    nib.save(nib.Nifti1Image(data4, image.affine), bad)  # written in BraTS 2021 numbering (ET 4)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    del summary["inputs_state"]  # an evaluation from before it was recorded: the scheme check still holds
    (tmp_path / "eval" / "summary.json").write_text(json.dumps(summary))
    before = snapshot(tmp_path)
    assert run("plot", "evaluation", tmp_path / "eval", tmp_path / "pred", data) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "[4]" in err
    assert "the reference is numbered in scheme brats2023: the prediction must be too" in err
    assert snapshot(tmp_path) == before and not list(tmp_path.rglob("*.png"))


@pytest.mark.parametrize("orientation", [pytest.param(("R", "P", "S"), id="flipped_rps"),
                                         pytest.param(("S", "P", "L"), id="permuted_spl")])
def test_a_prediction_in_another_voxel_orientation_is_reordered_not_refused_or_mirrored(
        make_dataset, tmp_path: Path, orientation: tuple[str, str, str]) -> None:
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    data = make_dataset("brats2021")
    cases = copy_labels(data, tmp_path / "pred")
    for cid in cases:  # the same labels, the same physical grid, stored in another voxel order
        path = tmp_path / "pred" / f"{cid}.nii.gz"
        img = nib.load(path)
        nib.save(img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(orientation))), path)
    assert nib.aff2axcodes(nib.load(tmp_path / "pred" / f"{cases[0]}.nii.gz").affine) == orientation
    assert run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval") == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert all(summary["regions"][r]["dice"]["mean"] == 1.0 for r in ("ET", "TC", "WT"))


def test_an_evaluation_in_another_scheme_is_another_evaluation_and_old_pictures_go(
        make_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred")
    out = tmp_path / "eval"
    assert run("evaluate", tmp_path / "pred", data, "--out", out) == 0
    assert (out / "dice_boxplot.png").is_file() and list((out / "overlays").glob("*.png"))
    summary = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert run("evaluate", tmp_path / "pred", data, "--out", out, "--scheme", "labels") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "in scheme brats; this one scores" in line and "in scheme labels" in line
    assert (out / "summary.json").read_bytes() == summary
    assert run("evaluate", tmp_path / "pred", data, "--out", out, "--no-pictures") == 0  # the same one again
    assert not (out / "dice_boxplot.png").exists() and not list((out / "overlays").glob("*.png"))
    assert "<img" not in (out / "report.html").read_text()  # no picture of the scores it replaced
    assert run("evaluate", tmp_path / "pred", data, "--out", out, "--scheme", "labels", "--overwrite") == 0
    assert json.loads((out / "summary.json").read_text())["scheme"] == "labels"


@pytest.mark.parametrize("writer", ["compare_into_an_evaluation", "evaluate_into_a_comparison",
                                    "pictures_into_another_evaluation"])
def test_no_writer_puts_its_files_over_another_kinds_folder(make_dataset, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture, writer: str) -> None:
    data = make_dataset("brats2021")
    for name in ("pred", "pred2"):
        copy_labels(data, tmp_path / name)
    assert run("evaluate", tmp_path / "pred", data, "--out", tmp_path / "ev", "--no-pictures") == 0
    assert run("evaluate", tmp_path / "pred2", data, "--out", tmp_path / "ev2", "--no-pictures") == 0
    assert run("compare", data, tmp_path / "pred", tmp_path / "pred2", "--out", tmp_path / "cmp") == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    argv = {"compare_into_an_evaluation": ["compare", data, tmp_path / "pred", tmp_path / "pred2", "--out",
                                           tmp_path / "ev"],
            "evaluate_into_a_comparison": ["evaluate", tmp_path / "pred", data, "--out", tmp_path / "cmp"],
            "pictures_into_another_evaluation": ["plot", "evaluation", tmp_path / "ev2", tmp_path / "pred2", data,
                                                 "--out", tmp_path / "ev"]}[writer]
    assert run(*argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "pass another --out" in line, line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("protocol, summary_file", [("legacy", "summary.json"),
                                                     ("official", "official_summary.json")])
def test_an_evaluation_of_other_cases_is_another_evaluation(make_dataset, tmp_path: Path, protocol: str,
                                                            summary_file: str) -> None:
    """--infer_fold 0, then 1, into one folder: the second replaced the first silently (the legacy protocol until
    25854b7, the official one until its summary recorded its case ids too)."""
    from pipeline.core.errors import UserError
    from pipeline.evaluation.evaluate import evaluate

    if protocol == "official":
        pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
    data = make_dataset("brats2021")
    cases = copy_labels(data, tmp_path / "pred")
    out = tmp_path / "eval"
    evaluate(protocol, tmp_path / "pred", data, out, cases=cases[:2])
    assert evaluate(protocol, tmp_path / "pred", data, out, cases=cases[1::-1])["cases"] == 2  # the same, again
    before = (out / summary_file).read_bytes()
    with pytest.raises(UserError, match=r"holds the evaluation of .* on 2 case\(s\); this one scores .* on 1 "
                                        r"case\(s\).*--overwrite"):
        evaluate(protocol, tmp_path / "pred", data, out, cases=cases[2:])
    assert (out / summary_file).read_bytes() == before
    assert evaluate(protocol, tmp_path / "pred", data, out, cases=cases[2:], overwrite=True)["case_ids"] == cases[2:]


def test_an_official_evaluation_with_another_challenges_settings_is_another_evaluation(make_dataset,
                                                                                       tmp_path: Path) -> None:
    """--challenge gli, then ped, into one folder: the second replaced the first's table silently; either protocol
    then in the same folder of the same cases is the same evaluation (its other half)."""
    pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
    from pipeline.core.errors import UserError
    from pipeline.evaluation.evaluate import evaluate

    data = make_dataset("brats2021")
    copy_labels(data, tmp_path / "pred")
    out = tmp_path / "eval"
    evaluate("official", tmp_path / "pred", data, out, challenge="gli")
    evaluate("legacy", tmp_path / "pred", data, out)  # the legacy numbers of the same evaluation, beside it
    before = (out / "official_summary.json").read_bytes()
    with pytest.raises(UserError, match=r"with challenge gli's settings; this one .* with challenge ped's"
                                        r".*--overwrite"):
        evaluate("official", tmp_path / "pred", data, out, challenge="ped")
    assert (out / "official_summary.json").read_bytes() == before
    assert evaluate("official", tmp_path / "pred", data, out, challenge="ped", overwrite=True)["challenge"] == "ped"


@pytest.mark.parametrize("given", ["dataset", "datalist", "single_case"])
def test_the_pictures_of_an_evaluation_read_its_reference_as_the_evaluation_did(make_dataset, tmp_path: Path,
                                                                                given: str) -> None:
    """`plot evaluation` resolved the reference its own way: a datalist was "a dataset folder that does not exist",
    and an evaluation of one case folder could be drawn neither with that folder nor with its parent."""
    from pipeline.data.datalist import write_datalist
    from pipeline.evaluation.evaluate import evaluate
    from pipeline.evaluation.plots import plot_evaluation

    data = make_dataset("brats2021")
    cases = copy_labels(data, tmp_path / "pred")
    reference = {"dataset": data, "datalist": tmp_path / "dl.json", "single_case": data / cases[0]}[given]
    if given == "datalist":
        write_datalist(data, reference, folds=2)
    evaluate("legacy", tmp_path / "pred", reference, tmp_path / "eval")
    paths = plot_evaluation(tmp_path / "eval", tmp_path / "pred", reference)
    assert paths[0].name == "dice_boxplot.png" and len(paths) >= 2
    assert {p.stem for p in paths[1:]} <= set(cases)


def _two_disk_datalist(make_dataset, tmp_path: Path) -> tuple[Path, list[str]]:
    """A datalist whose labels lie in two datasets that share only ``tmp_path`` (two disks, ``/``, in real life)."""
    from pipeline.data.datalist import write_datalist

    merged: dict = {}
    for where in ("disk_a/data", "disk_b/data"):
        part_file = tmp_path / f"{where.split('/')[0]}.json"
        write_datalist(make_dataset("brats2021", where=where), part_file, folds=2)
        part = json.loads(part_file.read_text())
        if where.startswith("disk_b"):  # other case ids on the second disk
            for item in part["training"]:
                item["case"] = "B_" + str(item.get("case", Path(item["label"]).parent.name))
        merged = {**part, "training": [*merged.get("training", []), *part["training"]]}
    datalist = tmp_path / "dl.json"
    datalist.write_text(json.dumps(merged))
    return datalist, [str(it.get("case")) for it in merged["training"]]


def test_a_datalist_reference_is_guarded_by_its_datasets_not_by_their_common_ancestor(make_dataset,
                                                                                      tmp_path: Path) -> None:
    """Labels under /data and /mnt made the reference folder ``/``: every prediction and output folder "lay inside
    the reference"; and evaluating with the same datalist again was refused as another evaluation."""
    from pipeline.core.errors import UserError
    from pipeline.evaluation.evaluate import evaluate
    from pipeline.evaluation.reference import read_reference

    datalist, _ = _two_disk_datalist(make_dataset, tmp_path)
    reference = read_reference(datalist)
    assert reference.folders == [tmp_path / "disk_a" / "data", tmp_path / "disk_b" / "data"]
    pred = tmp_path / "seg"
    pred.mkdir()
    for cid, label in reference.files.items():
        shutil.copy(label, pred / f"{cid}.nii.gz")
    first = evaluate("legacy", pred, datalist, tmp_path / "eval")
    assert first["cases"] == len(reference.files) == 6
    assert evaluate("legacy", pred, datalist, tmp_path / "eval")["case_ids"] == first["case_ids"]  # the same again
    inside = tmp_path / "disk_b" / "data" / "seg"
    shutil.copytree(pred, inside)
    with pytest.raises(UserError, match="lies inside the reference"):
        evaluate("legacy", inside, datalist, tmp_path / "eval2")


def _crc_broken(src: Path, dst: Path) -> None:
    """``src`` with one ET voxel of its stream made background, the gzip checksum left that of the original: a file
    nibabel reads without complaint (it stops decompressing before the trailer)."""
    import gzip
    import zlib

    raw = gzip.decompress(src.read_bytes())
    image = nib.Nifti1Image.from_bytes(raw)
    offset = int(image.dataobj.offset)
    data = np.asarray(image.dataobj)
    flat = int(np.flatnonzero(data.reshape(-1, order="F") == data.max())[0]) * data.dtype.itemsize
    changed = bytearray(raw)
    changed[offset + flat:offset + flat + data.dtype.itemsize] = bytes(data.dtype.itemsize)
    packed = bytearray(gzip.compress(bytes(changed)))
    packed[-8:-4] = (zlib.crc32(raw) & 0xFFFFFFFF).to_bytes(4, "little")
    dst.write_bytes(bytes(packed))


@pytest.mark.parametrize("which", ["prediction", "reference"])
def test_a_label_file_with_a_bad_checksum_is_refused_not_scored(make_dataset, tmp_path: Path, which: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    """nibabel reads a gzip stream only as far as the voxels go, so a corrupt file (Dice 0.77 against 1.0 measured)
    was scored; every label reader checks the whole stream."""
    data = make_dataset("brats2021")
    pred = tmp_path / "pred"
    copy_labels(data, pred)
    case = discover_cases(data)[0]
    target = pred / f"{case.case_id}.nii.gz" if which == "prediction" else Path(case.label)
    original = target.with_name("original.bin")
    shutil.copy(target, original)
    _crc_broken(original, target)
    original.unlink()
    assert np.asarray(nib.load(target).dataobj).shape  # nibabel alone reads it
    assert run("evaluate", pred, data, "--out", tmp_path / "eval") != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(target) in last and "cannot be read as NIfTI" in last
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_hd95_takes_the_spacing_of_the_affine_as_the_check_and_monai_do(make_dataset, tmp_path: Path) -> None:
    """A reference whose pixdim says 2 mm and whose affine says 1 mm: the check (affine) saw nothing, HD95 doubled."""
    data = make_dataset("brats2021")
    pred = tmp_path / "pred"
    copy_labels(data, pred)
    case = discover_cases(data)[0]
    first = evaluate_folders(pred, data, tmp_path / "before")
    image = nib.load(case.label)
    header = image.header.copy()
    header.set_zooms((2.0, 2.0, 2.0))
    out = nib.Nifti1Image(np.asarray(image.dataobj), image.affine, header)
    out.set_sform(image.affine, code=2)
    nib.save(out, case.label)
    assert nib.load(case.label).header.get_zooms()[:3] == (2.0, 2.0, 2.0)
    shifted = np.roll(np.asarray(nib.load(pred / f"{case.case_id}.nii.gz").dataobj), 2, axis=0)
    nib.save(nib.Nifti1Image(shifted, image.affine), pred / f"{case.case_id}.nii.gz")
    shifted_summary = evaluate_folders(pred, data, tmp_path / "after")
    rows = list(shifted_summary["regions"].values())
    assert all(r["hd95"]["max"] <= 2.0 + 1e-6 for r in rows)  # 2 voxels of 1 mm, not of 2 mm
    assert first["mean_dice"] == pytest.approx(1.0)


@pytest.mark.parametrize("fault", ["truncated", "another grid"])
def test_an_image_that_cannot_be_drawn_costs_its_picture_not_the_evaluation(make_dataset, tmp_path: Path, fault: str,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A pictured case's FLAIR cut short, or on another grid, ended `evaluate` in a traceback after metrics.csv and
    before report.html; the scores stand and the picture is left out with a warning naming the case."""
    data = make_dataset("brats2021")
    pred = tmp_path / "pred"
    copy_labels(data, pred)
    cases = discover_cases(data)
    bad = cases[0]
    flair = next(Path(p) for p in bad.images if p.endswith("_flair.nii.gz"))
    if fault == "truncated":
        flair.write_bytes(flair.read_bytes()[:200])
    else:
        image = nib.load(flair)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:-2], image.affine), flair)
    with caplog.at_level(logging.WARNING):
        assert run("evaluate", pred, data, "--out", tmp_path / "eval") == 0
    assert (tmp_path / "eval" / "summary.json").is_file() and (tmp_path / "eval" / "report.html").is_file()
    assert not (tmp_path / "eval" / "overlays" / f"{bad.case_id}.png").exists()
    assert f"case {bad.case_id}: no overlay picture" in caplog.text and str(flair) in caplog.text
    assert any((tmp_path / "eval" / "overlays" / f"{c.case_id}.png").exists() for c in cases[1:])


@pytest.mark.parametrize("where", ["predictions", "a_flat_label_folder"])
def test_a_case_file_linked_to_nowhere_is_refused_not_scored_as_missing(make_dataset, tmp_path: Path, where: str,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """A prediction (or a flat reference label) that is a link to an unmounted share was passed by as absent: the
    case was scored as missing."""
    data = make_dataset("brats2021")
    ids = copy_labels(data, tmp_path / "pred")
    labels = tmp_path / "labels"
    copy_labels(data, labels)
    folder = tmp_path / "pred" if where == "predictions" else labels
    (folder / f"{ids[0]}.nii.gz").unlink()
    (folder / f"{ids[0]}.nii.gz").symlink_to(tmp_path / "unmounted" / "x.nii.gz")
    before = snapshot(tmp_path)
    assert run("evaluate", tmp_path / "pred", labels, "--out", tmp_path / "eval") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{ids[0]}.nii.gz is case {ids[0]}'s file (a link to" in last and "mount it" in last
    assert_only_written_under(tmp_path, before, tmp_path / "eval") and not (tmp_path / "eval").exists()


def _label_map_of(kind: str, labels: np.ndarray) -> np.ndarray:
    """``labels`` stored as ``kind``: complex, RGB (a structured dtype) or float with +inf for its highest label."""
    if kind == "complex":
        return labels.astype(np.complex64)
    if kind == "rgb":
        out = np.zeros(labels.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        out["R"] = labels
        return out
    out = labels.astype(np.float32)
    out[out == out.max()] = np.inf  # the highest label (ET where the case has one)
    return out


@pytest.mark.parametrize(("kind", "said"), [("complex", "holds complex64 voxels, not real numbers"),
                                            ("rgb", "voxels, not real numbers"),
                                            ("infinite", "holds infinite or NaN values")])
@pytest.mark.parametrize("side", ["prediction", "reference"])
def test_a_label_map_of_no_real_whole_numbers_is_one_error(make_dataset, tmp_path: Path, kind: str, said: str,
                                                           side: str, capsys: pytest.CaptureFixture) -> None:
    """A complex or RGB label map ended evaluate in a traceback (torch's isin, the tensor conversion); +inf passed
    as a whole number and was named as label value -9223372036854775808."""
    data = make_dataset("brats2021")
    pred = tmp_path / "pred"
    pred.mkdir()
    cases = discover_cases(data)
    for case in cases:
        shutil.copy(case.label, pred / f"{case.case_id}.nii.gz")
    target = Path(cases[0].label) if side == "reference" else pred / f"{cases[0].case_id}.nii.gz"
    img = nib.load(target)
    nib.save(nib.Nifti1Image(_label_map_of(kind, np.asarray(img.dataobj)), img.affine), target)
    assert main(["evaluate", str(pred), str(data), "--out", str(tmp_path / "eval"), "--no-pictures"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and said in line
    if side == "reference" and kind != "infinite":  # the data check names it too
        from pipeline.data.check import check_dataset

        report = check_dataset(data)
        assert any(said in p.message and p.case == cases[0].case_id for p in report.errors)


@pytest.mark.parametrize("side", ["prediction", "reference"])
def test_a_file_given_as_a_folder_is_named_as_a_file(make_dataset, tmp_path: Path, side: str,
                                                     capsys: pytest.CaptureFixture) -> None:
    data = make_dataset("brats2021")
    label = Path(discover_cases(data)[0].label)
    pred, ref = (label, data) if side == "prediction" else (tmp_path, label)
    assert main(["evaluate", str(pred), str(ref), "--out", str(tmp_path / "eval")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err.strip().splitlines()[-1]
