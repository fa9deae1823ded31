"""The data check names every planted fault with its case and file; training refuses, inference skips and reports.

Each fault is planted in a copy of a 3-case fixture of every layout (tests/conftest.py, ``layout_datasets``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.__main__ import main
from pipeline.data.check import DatasetCheckError, check_dataset
from pipeline.data.layouts import Case, DatasetError, discover_cases
from pipeline.data.source import DataSource
from pipeline.data.synthetic import write_dataset
from pipeline.inference.outputs import InferenceReport
from pipeline.inference.predict import SaveBratsLabeld
from tests.helpers import LAYOUT_NAMES, LAYOUT_SHAPE, TINY_ARGS, cli_overrides, parse_bundle, run_bundle

TINY = [*TINY_ARGS, "--check_jobs", "1"]
BAD = 1  # the faults go into the second case of each fixture


def _copy(layout_datasets: dict[str, Path], layout: str, dest: Path) -> tuple[Path, list[Case]]:
    root = dest / layout
    shutil.copytree(layout_datasets[layout], root)
    return root, discover_cases(root)


def _display(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name in ("imagesTr", "labelsTr") else p.name


def _rewrite(path: str, data: np.ndarray | None = None, affine: np.ndarray | None = None,
             zooms: tuple[float, ...] | None = None) -> None:
    """Save ``path`` again with new voxels, affine or header zooms (the rest of the header kept)."""
    img = nib.load(path)
    arr = np.asarray(img.dataobj) if data is None else data
    header = img.header.copy()
    header.set_data_dtype(arr.dtype)
    out = nib.Nifti1Image(arr, img.affine if affine is None else affine, header=header)
    if affine is not None:
        out.set_sform(affine, code=1)
        out.set_qform(affine, code=1)
    if zooms is not None:
        out.header["pixdim"][1:4] = zooms
    nib.save(out, path)


def _image(case: Case) -> str:
    """The file holding the T1ce contrast (a BraTS file, or the MSD 4D image)."""
    return case.images[1 if case.channel_index is None else 0]


def _set_voxels(path: str, value: float, channel: int | None = None, dtype: type = np.float32) -> None:
    arr = np.asarray(nib.load(path).dataobj).astype(dtype)
    target = arr[..., channel] if channel is not None else arr
    target[tuple(s // 2 for s in target.shape)] = value
    _rewrite(path, arr)


# Each fault plants one problem in a case and returns (file, severity, regex of the message after "case ID: ").
def _missing_contrast(case: Case) -> tuple[str, str, str]:
    path = case.images[-1]  # BraTS: the FLAIR (_flair / -t2f); MSD: the only image, its label stays
    os.remove(path)
    return path, "error", rf"missing {re.escape(_display(path))}"


def _truncated_gzip(case: Case) -> tuple[str, str, str]:
    path = _image(case)
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: len(raw) // 2])
    return path, "error", rf"{re.escape(_display(path))} is truncated or corrupt \(EOFError"


def _gzip_trailer_cut(case: Case) -> tuple[str, str, str]:
    path = _image(case)  # nibabel alone reads this file without complaint: its voxels are all there
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[:-4])
    return path, "error", rf"{re.escape(_display(path))} is truncated or corrupt"


def _not_nifti(case: Case) -> tuple[str, str, str]:
    path = case.label
    Path(path).write_bytes(b"<html>403 Forbidden</html>")
    return path, "error", rf"{re.escape(_display(path))} cannot be read as NIfTI"


def _wrong_dimensionality(case: Case) -> tuple[str, str, str]:
    path = _image(case)
    arr = np.asarray(nib.load(path).dataobj)
    if case.channel_index is None:  # a BraTS contrast saved as 4D
        _rewrite(path, np.stack([arr, arr], axis=-1))
        return path, "error", rf"{re.escape(_display(path))} is 4D with shape \(32, 32, 24, 2\); expected a 3D"
    _rewrite(path, arr[..., 0])  # an MSD image with one contrast only
    return path, "error", rf"{re.escape(_display(path))} is 3D with shape \(32, 32, 24\); expected a 4D"


def _an_extra_volume(case: Case) -> tuple[str, str, str]:
    """A fifth volume in front of an MSD image's four: read by position, every contrast would be another's. (A file
    per contrast cannot hold one more: a contrast saved with two volumes is `_wrong_dimensionality`.)"""
    if case.channel_index is None:
        return _wrong_dimensionality(case)
    path = _image(case)
    arr = np.asarray(nib.load(path).dataobj)
    _rewrite(path, np.concatenate([arr[..., 3:4], arr], axis=-1))
    return path, "error", (rf"{re.escape(_display(path))} holds 5 volumes, shape \(32, 32, 24, 5\), where its "
                           r"description names 4 .*which volume is which contrast cannot be told")


def _two_d(case: Case) -> tuple[str, str, str]:
    path = _image(case)
    arr = np.asarray(nib.load(path).dataobj)
    _rewrite(path, arr[:, :, 12] if case.channel_index is None else arr[:, :, 12, 0])  # one slice exported
    if case.channel_index is not None:  # MSD: its own advice (one 4D file of the 4 contrasts)
        return path, "error", rf"{re.escape(_display(path))} is 2D with shape \(32, 32\); expected a 4D"
    return path, "error", rf"{re.escape(_display(path))} is 2D .*re-export the whole volume, not a slice"


def _shape_mismatch(case: Case) -> tuple[str, str, str]:
    path = case.label
    _rewrite(path, np.asarray(nib.load(path).dataobj)[:, :, :20])
    return path, "error", rf"{re.escape(_display(path))} has shape \(32, 32, 20\) but .* has \(32, 32, 24\)"


def _affine_mismatch(case: Case) -> tuple[str, str, str]:
    path = case.images[2] if case.channel_index is None else case.label
    affine = nib.load(path).affine.copy()
    affine[0, 3] += 0.5
    _rewrite(path, affine=affine)
    return path, "error", rf"{re.escape(_display(path))} has a different affine from .*largest entry difference 0\.5"


def _unexpected_label(case: Case) -> tuple[str, str, str]:
    path = case.label
    extra = 3 if "BraTS2021" in path else 4  # brats expects {0,1,2,4}; brats2023 and msd {0,1,2,3}
    _set_voxels(path, extra, dtype=np.uint8)
    return path, "error", rf"{re.escape(_display(path))} contains label {extra}; expected \{{0, 1, 2, [34]\}}"


def _nan(case: Case) -> tuple[str, str, str]:
    path = _image(case)
    _set_voxels(path, np.nan, channel=None if case.channel_index is None else 2)
    where = "" if case.channel_index is None else r" channel 2 \(T1ce\)"
    return path, "error", rf"{re.escape(_display(path))} contains 1 NaN and 0 infinite voxel\(s\){where}"


def _inf(case: Case) -> tuple[str, str, str]:
    path = _image(case)
    _set_voxels(path, np.inf, channel=None if case.channel_index is None else 3)
    return path, "error", rf"{re.escape(_display(path))} contains 0 NaN and 1 infinite voxel\(s\)"


def _blank(value: float, said: str) -> Callable[[Case], tuple[str, str, str]]:
    """A fault that fills a case's first image (MSD: its FLAIR channel) with ``value``; ``said`` is the message."""

    def fault(case: Case) -> tuple[str, str, str]:
        path = _image(case)
        arr = np.asarray(nib.load(path).dataobj).copy()
        if case.channel_index is None:
            arr[:] = value
        else:
            arr[..., 0] = value  # MSD channel 0 is the FLAIR
        _rewrite(path, arr)
        where = "" if case.channel_index is None else r" channel 0 \(FLAIR\)"
        return path, "error", rf"{re.escape(_display(path))} {said}{where}"

    return fault


_all_zero = _blank(0, "is all zero")
_constant = _blank(100, r"holds one value everywhere \(100\)")


def _zero_spacing(case: Case) -> tuple[str, str, str]:
    path = case.images[0]
    img = nib.load(path)
    affine = img.affine.copy()
    affine[:3, 0] = 0  # a header whose x axis has no length (a broken conversion)
    broken = nib.Nifti1Image(np.asarray(img.dataobj), None, header=img.header.copy())
    broken.set_sform(affine, code=2)
    broken.set_qform(None, code=0)
    nib.save(broken, path)
    return path, "error", rf"{re.escape(_display(path))} has voxel spacing \(0\.0, 1\.0, 1\.0\) mm \(from its affine\)"


def _half_mm_spacing(case: Case) -> tuple[str, str, str]:
    affine = np.diag([-0.5, -0.5, 1.0, 1.0])
    for path in {*case.images, case.label}:  # the whole case, consistently: a warning only
        _rewrite(path, affine=affine, zooms=(0.5, 0.5, 1.0))
    path = case.images[0]
    return path, "warning", rf"{re.escape(_display(path))} has voxel spacing \(0\.5, 0\.5, 1\.0\) mm, not the 1 mm"


def _empty_label(case: Case) -> tuple[str, str, str]:
    path = case.label
    _rewrite(path, np.zeros(nib.load(path).shape, np.uint8))
    return path, "warning", rf"{re.escape(_display(path))} contains only background"


def _non_integer_label(case: Case) -> tuple[str, str, str]:
    path = case.label
    _set_voxels(path, 1.5)
    return path, "error", rf"{re.escape(_display(path))} holds non-integer values \(e\.g\. \[1\.5\]\)"


FAULTS: dict[str, Callable[[Case], tuple[str, str, str]]] = {
    "missing_contrast": _missing_contrast, "truncated_gzip": _truncated_gzip, "gzip_trailer_cut": _gzip_trailer_cut,
    "not_nifti": _not_nifti, "wrong_dimensionality": _wrong_dimensionality, "an_extra_volume": _an_extra_volume,
    "a_slice": _two_d,
    "shape_mismatch": _shape_mismatch,
    "affine_mismatch": _affine_mismatch, "unexpected_label": _unexpected_label, "nan": _nan, "inf": _inf,
    "all_zero_image": _all_zero, "constant_image": _constant, "zero_spacing": _zero_spacing,
    "half_mm_spacing_warns": _half_mm_spacing,
    "empty_label_warns": _empty_label, "non_integer_label": _non_integer_label,
}


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_a_clean_dataset_has_no_problem(layout_datasets, layout: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", str(layout_datasets[layout]), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"layout {layout}" in out and "0 error(s) in 0 case(s), 0 warning(s); 3 case(s) without error" in out


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_each_fault_is_named_with_its_case_and_file(layout_datasets, tmp_path: Path, layout: str, fault: str) -> None:
    root, cases = _copy(layout_datasets, layout, tmp_path)
    bad = cases[BAD]
    path, severity, pattern = FAULTS[fault](bad)
    report = check_dataset(root, jobs=1)
    assert [p.case for p in report.problems] == [bad.case_id], "\n".join(map(str, report.problems))
    problem = report.problems[0]
    assert problem.severity == severity and Path(problem.file) == Path(path)
    assert re.match(rf"case {re.escape(bad.case_id)}: {pattern}", problem.message), problem.message
    assert report.bad_cases == ([bad.case_id] if severity == "error" else [])


@pytest.mark.parametrize("layout", ["brats2021", "brats2023"])
@pytest.mark.parametrize("fault", [None, "nan"])
def test_a_single_case_folder_is_checked_as_the_case_inference_takes(layout_datasets, tmp_path: Path, layout: str,
                                                                      fault: str | None,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Not as a folder of label files (its images were reported as holding label values outside the scheme)."""
    root, cases = _copy(layout_datasets, layout, tmp_path)
    case = cases[BAD]
    folder = Path(case.label).parent
    if fault is not None:
        FAULTS[fault](case)
    assert main(["check", str(folder), "--jobs", "1"]) == (1 if fault else 0)
    out = capsys.readouterr().out
    assert f"dataset {folder}: layout {layout}" in out
    expected = "1 error(s) in 1 case(s)" if fault else "0 error(s) in 0 case(s), 0 warning(s); 1 case(s) without error"
    assert expected in out


def test_a_label_affine_within_the_tolerance_is_accepted(layout_datasets, tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    affine = nib.load(cases[0].label).affine.copy()
    affine[0, 3] += 1e-4  # float rounding of another tool: not a problem
    _rewrite(cases[0].label, affine=affine)
    assert check_dataset(root).problems == []


def test_labels_outside_the_scheme_name_only_the_schemes_the_file_naming_allows(layout_datasets,
                                                                               tmp_path: Path) -> None:
    """BraTS 2021-named labels relabelled 4 -> 3: brats2023 fits (1 and 2 mean the same), msd would read 1 as
    oedema and is not offered."""
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    seg = nib.load(cases[0].label)
    data = np.asarray(seg.dataobj)
    _rewrite(cases[0].label, np.where(data == 4, 3, data).astype(data.dtype))
    report = check_dataset(root, label_scheme="brats")
    assert report.errors and all(p.file.endswith("_seg.nii.gz") for p in report.errors)
    assert re.search(r"contains label 3; expected \{0, 1, 2, 4\} for label scheme 'brats'\. "
                     r"For BraTS 2023\+ data set --label_scheme brats2023$", report.errors[0].message)


def test_every_problem_of_several_cases_is_listed_and_the_cli_exits_1(layout_datasets, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    _truncated_gzip(cases[0])
    _unexpected_label(cases[0])
    _missing_contrast(cases[2])
    assert main(["check", str(root), "--jobs", "2"]) == 1  # two processes: the same lines, in case order
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"dataset {root}: layout brats2021")
    assert [line.split(":")[1].strip() for line in lines[1:4]] == ["case BraTS2021_00002", "case BraTS2021_00000",
                                                                  "case BraTS2021_00000"]
    assert "BraTS2021_00000_t1ce.nii.gz is truncated or corrupt" in lines[2]
    assert "BraTS2021_00000_seg.nii.gz contains label 3" in lines[3]
    assert lines[-1].endswith("3 error(s) in 2 case(s), 0 warning(s); 1 case(s) without error")


def test_warnings_alone_exit_0(layout_datasets, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, cases = _copy(layout_datasets, "msd", tmp_path)
    _half_mm_spacing(cases[0])
    assert main(["check", str(root), "--jobs", "1"]) == 0
    assert "WARNING: case BRATS_001: imagesTr/BRATS_001.nii.gz has voxel spacing" in capsys.readouterr().out


def test_headers_only_skips_the_voxels(layout_datasets, tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    _truncated_gzip(cases[0])
    _shape_mismatch(cases[1])
    assert [p.case for p in check_dataset(root, data=False).problems] == ["BraTS2021_00001"]


# ---- training refuses, inference skips --------------------------------------------------------------------------


def _train_parser(root: Path, **overrides: object) -> ConfigParser:
    return parse_bundle("training", {"dataset_dir": str(root), "device": "cpu", "num_workers": 0, "folds": 2,
                                     "check_jobs": 1, "run_dir": str(root.parent / "run"), **overrides})


def test_training_refuses_a_dataset_with_errors_before_caching(layout_datasets, tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "brats2023", tmp_path)
    _nan(cases[0])
    _missing_contrast(cases[2])
    with pytest.raises(RuntimeError) as err:
        _train_parser(root).get_parsed_content("initialize")  # what `monai.bundle run training` runs first
    cause = err.value.__cause__
    assert isinstance(cause, DatasetCheckError) and len(cause.problems) == 2
    assert re.search(r"training refuses the dataset .*: 2 error\(s\) in 2 case\(s\)", str(cause))
    assert "case BraTS-GLI-00000-000: BraTS-GLI-00000-000-t1c.nii.gz contains 1 NaN" in str(cause)
    assert "case BraTS-GLI-00002-000: missing BraTS-GLI-00002-000-t2f.nii.gz" in str(cause)
    assert "--data_check skip" in str(cause)


def test_training_with_data_check_skip_trains_on_every_valid_case(layout_datasets, tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "msd", tmp_path)
    for i in (4, 5, 6):  # three more cases: copies of the first three, their images made another patient's
        image = nib.load(root / "imagesTr" / f"BRATS_00{i - 3}.nii.gz")
        voxels = np.asanyarray(image.dataobj) * 1.01
        nib.save(nib.Nifti1Image(voxels.astype(image.get_data_dtype()), image.affine, image.header),
                 root / "imagesTr" / f"BRATS_00{i}.nii.gz")
        shutil.copy(root / "labelsTr" / f"BRATS_00{i - 3}.nii.gz", root / "labelsTr" / f"BRATS_00{i}.nii.gz")
    _unexpected_label(cases[BAD])
    train, val = _train_parser(root, data_check="skip").get_parsed_content("split")
    used = sorted(it["case"] for it in (*train, *val))
    assert used == ["BRATS_001", "BRATS_003", "BRATS_004", "BRATS_005", "BRATS_006"]
    assert all(it["channel_index"] == [1, 2, 3, 0] for it in train)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("path", ["check", "training", "training_data_check_skip"])
def test_a_case_whose_images_are_another_cases_is_an_error(layout_datasets, tmp_path: Path, layout: str,
                                                           path: str) -> None:
    """One patient copied under another id passed every check; split across folds, training validated it against
    its own copy. Every reader of labelled cases (the check, training's data source) names the copy."""
    root, cases = _copy(layout_datasets, layout, tmp_path)
    copy = _duplicate(root, layout, cases[0])
    expected = f"case {copy}: its images are, byte for byte, case {cases[0].case_id}'s ("
    if path == "check":
        report = check_dataset(root)
        assert [(p.case, p.severity) for p in report.problems] == [(copy, "error")]
        message = report.problems[0].message
        assert message.startswith(expected) and message.endswith("remove one of the two cases")
    elif path == "training":
        with pytest.raises(RuntimeError) as err:
            _train_parser(root).get_parsed_content("initialize")
        assert isinstance(err.value.__cause__, DatasetCheckError) and expected in str(err.value.__cause__)
    else:
        train, val = _train_parser(root, data_check="skip").get_parsed_content("split")
        assert sorted(it["case"] for it in (*train, *val)) == sorted(c.case_id for c in cases)  # the copy left out


def _duplicate(root: Path, layout: str, case: Case) -> str:
    """A byte-for-byte copy of ``case`` under a new id, in ``layout``'s naming; the new id."""
    old = case.case_id
    new = old.replace("0000", "0009") if "0000" in old else old.replace("001", "009")
    assert new != old
    for path in (*case.images, case.label):
        src = Path(path)
        name = src.name.replace(old, new)
        dest = src.parent.parent / new / name if src.parent.name == old else src.parent / name
        dest.parent.mkdir(exist_ok=True)
        shutil.copy(src, dest)
    if layout == "msd":  # its dataset.json lists the cases: the copy listed too
        import json

        meta = json.loads((root / "dataset.json").read_text())
        meta["training"].append({k: v.replace(old, new) for k, v in next(
            it for it in meta["training"] if old in it["image"]).items()})
        meta["numTraining"] = len(meta["training"])
        (root / "dataset.json").write_text(json.dumps(meta))
    return new


def test_inference_items_skip_a_bad_case_and_record_why(layout_datasets, tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    _unexpected_label(cases[0])  # inference does not read labels: not a reason to skip
    _all_zero(cases[BAD])
    report = InferenceReport(tmp_path / "seg")
    items = DataSource(root).checked_inference_items(report=report)
    assert [it["case"] for it in items] == ["BraTS2021_00000", "BraTS2021_00002"]
    assert list(report.failed) == ["BraTS2021_00001"]
    assert "BraTS2021_00001_t1ce.nii.gz is all zero" in report.failed["BraTS2021_00001"][0]
    with pytest.raises(SystemExit) as stop:
        report.finish()
    assert stop.value.code == 1


def test_a_case_that_cannot_be_written_is_recorded_and_the_next_goes_on(layout_datasets, tmp_path: Path) -> None:
    case = discover_cases(layout_datasets["brats2021"])[0]
    (tmp_path / "blocked").write_text("a file where the output folder should be")
    report = InferenceReport(tmp_path / "blocked")
    save = SaveBratsLabeld("pred", output_dir=str(tmp_path / "blocked"), report=report)
    save({"case": case.case_id, "image": list(case.images), "pred": torch.zeros(3, 32, 32, 24)})
    assert re.match(rf"case {case.case_id}: writing .*blocked/{case.case_id}\.nii\.gz failed",
                    report.failed[case.case_id][0])
    save.output_dir = tmp_path / "seg"
    report.output_dir = str(tmp_path / "seg")  # (in the bundle both are the one output_dir)
    save({"case": case.case_id, "image": list(case.images), "pred": torch.zeros(3, 32, 32, 24)})
    assert report.written == [case.case_id]
    assert "1 case(s) failed and were skipped" in report.summary()


def _bundle(run_id: str, *args: str) -> subprocess.CompletedProcess:
    return run_bundle(run_id, cli_overrides(args), check=False)


def test_the_pipeline_command_line_runs_the_check_and_refuses_a_missing_folder(layout_datasets, tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    from pipeline.__main__ import main as pipeline_main

    assert pipeline_main(["check", str(layout_datasets["brats2023"]), "--jobs", "1"]) == 0
    assert "layout brats2023 (BraTS 2023 and later), label scheme brats2023" in capsys.readouterr().out
    assert pipeline_main(["check", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("variants", [{}, {"fast": True}, {"fast": True, "budget": True}],
                         ids=["plain", "fast", "budget"])
def test_inference_segments_the_complete_cases_and_reports_one_found_broken(layout_datasets, tmp_path: Path,
                                                                            variants: dict) -> None:
    """A case missing a contrast stopped the whole inference before any case (`infer_items` raised in
    `initialize`), though inference.yaml promised bad cases reported and skipped."""
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    _missing_contrast(cases[BAD])
    parser = parse_bundle("inference", {"dataset_dir": str(root), "device": "cpu", "num_workers": 0,
                                        "check_jobs": 1, "run_dir": str(tmp_path / "run"),
                                        "output_dir": str(tmp_path / "seg")}, **variants)
    complete = sorted(c.case_id for c in cases if c is not cases[BAD])
    assert sorted(it["case"] for it in parser.get_parsed_content("infer_items")) == complete
    assert sorted(it["case"] for it in parser.get_parsed_content("infer_checked")) == complete
    report = parser.get_parsed_content("infer_report")
    assert list(report.failed) == [cases[BAD].case_id] and "missing" in report.failed[cases[BAD].case_id][0]
    with pytest.raises(DatasetError, match=cases[BAD].case_id):  # evaluation's reference still refuses it
        DataSource(root).inference_items()


@pytest.mark.parametrize("layout", ["brats2021", "msd"])
def test_a_case_id_no_output_file_can_carry_is_an_error_of_the_check(layout_datasets, tmp_path: Path,
                                                                     layout: str) -> None:
    """A case folder named longer than an output file name can be (<case>.nii.gz and a writer's temporary) passed the
    check and failed at its first write; the check now applies the datalist's case-id rules to every case."""
    from pipeline.data.check import check_case

    case = discover_cases(layout_datasets[layout])[0]
    long = Case("B" * 230, case.images, case.label, case.channel_index)
    problems = check_case(long, "msd" if layout == "msd" else "brats")
    assert [p.severity for p in problems] == ["error"] and "is 230 bytes long" in problems[0].message
    assert check_case(case, "msd" if layout == "msd" else "brats") == []


@pytest.mark.parametrize(("layout", "where"), [
    pytest.param("brats2021", ".", id="brats2021_a_case_folder"),
    pytest.param("brats2023", ".", id="brats2023_a_case_folder"),
    pytest.param("brats2021", "HGG", id="brats2018_a_case_folder_in_hgg"),
    pytest.param("brats2021", "case", id="brats2021_a_stray_link_in_a_case_folder_is_a_warning"),
    pytest.param("msd", "imagesTr", id="msd_an_image"),
    pytest.param("brats2021", "contrast", id="brats2021_a_contrast_of_a_case"),
    pytest.param("brats2023", "contrast", id="brats2023_a_contrast_of_a_case"),
    pytest.param("nnunet", "channel", id="nnunet_a_channel_of_a_case"),
    pytest.param("nnunet", "label", id="nnunet_a_label"),
    pytest.param("msd", "label", id="msd_a_label"),
    pytest.param("brats2021", "label", id="brats2021_a_label"),
    pytest.param("brats2021", "note", id="brats2021_a_note_at_the_root_is_a_warning"),
    pytest.param("nnunet", "note", id="nnunet_a_folder_no_layout_reads_is_a_warning"),
])
@pytest.mark.parametrize("path", ["check", "datalist"])
def test_a_link_that_leads_nowhere_is_an_error_naming_it(layout_datasets, tmp_path: Path, layout: str, where: str,
                                                         path: str) -> None:
    """A case folder or file on a share not mounted (a link to nowhere) was left out of the dataset without a word,
    or reported as a missing contrast, or its case used as unlabelled: one error names the case and the link, and
    the case is left out."""
    from pipeline.data.datalist import write_datalist

    if layout == "nnunet":
        root = tmp_path / layout
        write_dataset(root, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
        cases = discover_cases(root)
    else:
        root, cases = _copy(layout_datasets, layout, tmp_path)
    if where == "HGG":
        (root / "HGG").mkdir()
        for case in cases:
            shutil.move(str(root / case.case_id), root / "HGG" / case.case_id)
    first = cases[0].case_id
    replaced = {"contrast": lambda: Path(cases[0].images[2]), "channel": lambda: Path(cases[0].images[1]),
                "label": lambda: Path(str(cases[0].label))}.get(where, lambda: None)()
    if replaced is not None:  # an existing file of the case, now a link to nowhere
        replaced.unlink()
        name, link = replaced.name, replaced
    else:
        name = {"case": f"{first}_extra.nii.gz", "imagesTr": "BRATS_1009.nii.gz",
                "note": "notes.txt" if layout == "brats2021" else "extra_images"}.get(where, "Brats_lost_case")
        link = (root / first if where == "case" else root if where == "note" else root / where) / name
    link.symlink_to(tmp_path / "unmounted" / name)
    said = rf"{re.escape(str(link))} is a link to .*unmounted/{re.escape(name)}, which does not exist"
    if where in ("case", "note"):  # a file or folder no case reads: said, and the dataset is used
        report = check_dataset(root)
        assert not report.errors and [p.severity for p in report.warnings] == ["warning"]
        assert re.search(said + "; no case reads it", report.warnings[0].message)
        return
    if path == "check":
        report = check_dataset(root)
        assert [p.severity for p in report.errors] == ["error"] and re.search(said, report.errors[0].message)
        assert report.errors[0].case == {".": "Brats_lost_case", "HGG": "Brats_lost_case",
                                         "imagesTr": "BRATS_1009"}.get(where, first)
        assert not [p for p in report.problems if p.severity == "warning" and p.case == first]  # "no label"
        if where == "label":  # inference reads images alone: the case stays, unlabelled, for it
            from pipeline.data.layouts import scan_dataset

            kept = {c.case_id: c for c in scan_dataset(root).cases}
            assert first in kept and kept[first].label is None
            assert first in [str(it["case"]) for it in DataSource(root, labels=False).inference_items()]
        if replaced is not None:  # the case is refused, the others pass
            assert report.bad_cases == [first]
            assert "1 error(s) in 1 case(s), 0 warning(s)" in report.summary()  # nnU-Net's numTraining: no "fix" it
            assert f"; {len(cases) - 1} case(s) without error" in report.summary()
    else:
        with pytest.raises(DatasetError, match=said):
            write_datalist(root, tmp_path / "dl.json", folds=2)
        assert not (tmp_path / "dl.json").exists()


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
@pytest.mark.parametrize("reader", ["check", "datalist", "training", "inference"])
def test_an_unmounted_imagests_stops_inference_alone(layout_datasets, tmp_path: Path, layout: str,
                                                     reader: str) -> None:
    """A link to nowhere in place of ``imagesTs/`` (the test images on a share not mounted) refused the whole
    dataset, training too, which never reads them: a warning for the readers of labelled cases, an error for
    inference, which segments every case."""
    from pipeline.data.datalist import write_datalist

    if layout == "nnunet":
        root = tmp_path / layout
        write_dataset(root, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
    else:
        root, _ = _copy(layout_datasets, layout, tmp_path)
    if (root / "imagesTs").exists():
        shutil.rmtree(root / "imagesTs")
    (root / "imagesTs").symlink_to(tmp_path / "unmounted" / "imagesTs")
    said = rf"{re.escape(str(root / 'imagesTs'))} is a link to .*unmounted/imagesTs, which does not exist"
    if reader == "check":
        report = check_dataset(root)
        assert not report.errors and any(re.search(said, p.message) for p in report.warnings)
    elif reader == "datalist":
        write_datalist(root, tmp_path / "dl.json", folds=2)
        assert json.loads((tmp_path / "dl.json").read_text())["training"]
    elif reader == "training":
        assert DataSource(root).scan.cases and not DataSource(root).scan.errors
    else:
        with pytest.raises(DatasetError, match=said):
            DataSource(root, labels=False).inference_items()


@pytest.mark.parametrize("copy", ["unlabelled", "another_patient_same_size"])
def test_a_copy_is_only_a_labelled_case_with_the_same_image_bytes(tmp_path: Path, copy: str) -> None:
    """Unlabelled cases (to segment) may repeat; files of one size (uncompressed NIfTI of one grid) are not the same
    patient unless every byte is."""
    from pipeline.data.check import duplicate_cases

    def case(cid: str, content: bytes, label: bool) -> Case:
        images = []
        for channel in range(4):
            path = tmp_path / f"{cid}_{channel}.nii"
            path.write_bytes(content + bytes([channel]))
            images.append(str(path))
        return Case(cid, tuple(images), str(tmp_path / f"{cid}_seg.nii") if label else None)

    first = case("a", b"\0" * (3 << 20), True)
    if copy == "unlabelled":
        other = case("b", b"\0" * (3 << 20), False)
    else:  # the same size, the same first and last MiB, another middle
        other = case("b", b"\0" * (3 << 19) + b"\1" + b"\0" * ((3 << 19) - 1), True)
    assert duplicate_cases([first, other]) == []
    assert [p.case for p in duplicate_cases([first, case("c", b"\0" * (3 << 20), True)])] == ["c"]


@pytest.mark.parametrize("gone", ["a_dangling_link", "a_missing_file"])
def test_a_case_file_gone_since_discovery_says_whether_it_is_a_link(layout_datasets, tmp_path: Path,
                                                                    gone: str) -> None:
    """A file that became a link to nowhere (a share unmounted) was reported as missing, to be re-downloaded."""
    from pipeline.data.check import check_case

    case = discover_cases(layout_datasets["brats2021"])[0]
    path = tmp_path / "t1ce.nii.gz"
    if gone == "a_dangling_link":
        path.symlink_to(tmp_path / "unmounted" / "t1ce.nii.gz")
    images = (*case.images[:1], str(path), *case.images[2:])
    problems = check_case(Case(case.case_id, images, case.label, case.channel_index), "brats")
    said = [p.message for p in problems if p.severity == "error"]
    assert len(said) == 1 and "does not exist" in said[0]
    assert ("a link to" in said[0] and "mount it" in said[0]) == (gone == "a_dangling_link")
    assert ("re-download" in said[0]) == (gone == "a_missing_file")


@pytest.mark.parametrize("reader", ["check", "datalist"])
def test_case_folders_one_level_down_are_said_not_read(layout_datasets, tmp_path: Path, reader: str) -> None:
    """Case folders moved into a sub-folder (``extra_cases/BraTS2021_00003/``) were left out without a word: the
    check and the datalist counted 3 cases of 5."""
    from pipeline.data.datalist import write_datalist

    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    (root / "extra_cases").mkdir()
    shutil.move(str(root / cases[-1].case_id), root / "extra_cases" / cases[-1].case_id)
    said = rf"folder {re.escape(str(root / 'extra_cases'))} holds 1 case folder\(s\) \(e\.g\. {cases[-1].case_id}\) " \
           "that are not read"
    if reader == "check":
        report = check_dataset(root)
        assert any(re.search(said, p.message) for p in report.warnings)
    else:
        from pipeline.data.layouts import scan_dataset

        assert any(re.search(said, p.message) for p in scan_dataset(root).problems)
        write_datalist(root, tmp_path / "dl.json", folds=2)  # a warning: the others are used
