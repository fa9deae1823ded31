"""Geometry advice never corrupts data: the same voxel grid in another voxel orientation is recognised.

A label stored in another orientation is accepted (the bundle's loading lines it up with the image, shown here
by running that loading), a contrast in another orientation is refused with advice to reorient it (MONAI's
loader cannot stack it, shown here too), a genuinely different grid is refused with advice to resample, and
"copy the affine" is offered only for header rounding. An MSD image stored channel-first is refused by the
check and at inference. No check changes an input file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, LoadImaged, Orientationd
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from pipeline.core.nifti import HEADER_ROUNDING, reorientation
from pipeline.data.check import check_case
from pipeline.data.layouts import Case, discover_cases
from pipeline.data.source import DataSource
from pipeline.data.transforms import SelectChannelsd
from pipeline.inference.outputs import InferenceReport

SHAPE = (32, 32, 24)  # synthetic cases are stored LPS, BraTS's own orientation (pipeline.data.synthetic.brats_affine)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One synthetic case per layout, ``{layout: root}``; read-only: copy before changing a file."""
    from pipeline.data.synthetic import write_dataset

    base = tmp_path_factory.mktemp("geometry")
    for layout in ("brats2021", "msd"):
        write_dataset(base / layout, cases=1, shape=SHAPE, seed=3, layout=layout)
    return {"brats2021": base / "brats2021", "msd": base / "msd"}


def _copy(pristine: dict[str, Path], layout: str, dest: Path) -> tuple[Path, Case]:
    root = dest / layout
    shutil.copytree(pristine[layout], root)
    return root, discover_cases(root)[0]


def _checksums(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _reorient(path: str, axcodes: str) -> None:
    """Store ``path`` in voxel orientation ``axcodes``: the same voxel centres, flipped/permuted, affine to match."""
    img = nib.load(path)
    nib.save(img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(tuple(axcodes)))), path)


def _set_affine(path: str, affine: np.ndarray) -> None:
    """The same voxels under another affine (sform and qform)."""
    img = nib.load(path)
    out = nib.Nifti1Image(np.asarray(img.dataobj), affine, header=img.header.copy())
    out.set_sform(affine, code=1)
    out.set_qform(affine, code=1)
    nib.save(out, path)


def _shifted(path: str, row: int, col: int, delta: float) -> None:
    affine = nib.load(path).affine.copy()
    affine[row, col] += delta
    _set_affine(path, affine)


def _bundle_loading(case: Case) -> dict:
    """The bundle's deterministic loading (common.yaml: load_image, select_channels, orient) of image and label."""
    keys = ["image", "label"]
    load = Compose([LoadImaged(keys=keys, ensure_channel_first=True, image_only=True), SelectChannelsd(keys="image"),
                    Orientationd(keys=keys, axcodes="RAS")])
    return load(case.to_item())


def _monai_stacks(case: Case) -> None:
    LoadImaged(keys="image", ensure_channel_first=True, image_only=True)({"image": list(case.images)})


# ---- a label in another voxel orientation: accepted, and it lines up ------------------------------------------


@pytest.mark.parametrize("axcodes", [pytest.param("RAS", id="flipped_RAS"),
                                     pytest.param("SPL", id="axes_permuted_SPL")])
def test_a_label_in_another_orientation_is_accepted_and_lines_up_on_loading(pristine, tmp_path: Path,
                                                                            axcodes: str) -> None:
    root, case = _copy(pristine, "brats2021", tmp_path)
    expected = _bundle_loading(case)
    _reorient(case.label, axcodes)
    before = _checksums(root)

    problems = check_case(case)

    assert [p.severity for p in problems] == ["warning"], "\n".join(map(str, problems))
    assert Path(problems[0].file) == Path(case.label)
    assert re.search(rf"_seg\.nii\.gz is stored in voxel orientation {axcodes}, \S+_t1\.nii\.gz in LPS: the same "
                     r"voxel grid in another order; training .* reorients it and the image to RAS", problems[0].message)
    assert "copy" not in problems[0].message
    loaded = _bundle_loading(case)
    assert tuple(loaded["label"].shape) == (1, *SHAPE)
    assert np.array_equal(loaded["label"].numpy(), expected["label"].numpy())  # the same voxel for every label
    assert np.array_equal(loaded["image"].numpy(), expected["image"].numpy())
    assert np.allclose(loaded["label"].affine.numpy(), loaded["image"].affine.numpy())
    assert _checksums(root) == before


def test_the_reorientation_found_puts_the_voxels_in_the_references_order(pristine, tmp_path: Path) -> None:
    _, case = _copy(pristine, "brats2021", tmp_path)
    ref = nib.load(case.label)
    ref_data = np.asarray(ref.dataobj)  # read now: the file is rewritten below
    _reorient(case.label, "SPL")
    moved = nib.load(case.label)

    t = reorientation(moved.shape, moved.affine, ref.shape, ref.affine)

    assert t is not None
    assert np.array_equal(apply_orientation(np.asarray(moved.dataobj), t), ref_data)
    assert reorientation(ref.shape, ref.affine, ref.shape, ref.affine) is None  # same orientation: nothing to do


# ---- a contrast in another voxel orientation: MONAI cannot stack it, the check refuses with reorient advice --------


@pytest.mark.parametrize("axcodes", [pytest.param("RAS", id="flipped_RAS"),
                                     pytest.param("SPL", id="axes_permuted_SPL")])
def test_a_contrast_in_another_orientation_is_refused_with_advice_to_reorient_it(pristine, tmp_path: Path,
                                                                                 axcodes: str) -> None:
    root, case = _copy(pristine, "brats2021", tmp_path)
    contrast = case.images[2]  # the T2
    _reorient(contrast, axcodes)
    before = _checksums(root)

    problems = check_case(case)

    assert [(p.severity, Path(p.file)) for p in problems] == [("error", Path(contrast))], "\n".join(map(str, problems))
    message = problems[0].message
    assert re.search(rf"_t2\.nii\.gz is stored in voxel orientation {axcodes}, \S+_t1\.nii\.gz in LPS: the same voxel "
                     r"grid in another order, and MONAI's loader stacks the contrasts as stored .*: reorient \S+_t2"
                     r"\.nii\.gz to \S+_t1\.nii\.gz's orientation LPS", message), message
    assert "nibabel.as_closest_canonical" in message and "copy" not in message
    with pytest.raises(RuntimeError) as refused:  # why it is an error: the bundle's loader refuses the case
        _monai_stacks(case)
    assert "affine matrix of all images should be the same for channel-wise concatenation" in str(refused.value)
    report = InferenceReport(tmp_path / "seg")
    assert DataSource(root).checked_inference_items(report=report) == []
    assert "reorient" in report.failed[case.case_id][0]
    assert _checksums(root) == before


# ---- different grids: resample; header rounding: copy the affine ----------------------------------------------


def _half_voxel_shift_of_a_contrast(case: Case) -> str:
    _shifted(case.images[2], 0, 3, 0.5)
    return case.images[2]


def _flipped_and_shifted_label(case: Case) -> str:
    _reorient(case.label, "RAS")
    _shifted(case.label, 0, 3, 2.0)  # two voxels off: not the same voxel centres in another order
    return case.label


def _label_on_a_coarser_grid(case: Case) -> str:
    img = nib.load(case.label)
    coarse = np.asarray(img.dataobj)[::2, ::2, ::2]
    affine = img.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(coarse, affine), case.label)
    return case.label


def _slightly_rotated_contrast(case: Case) -> str:
    _shifted(case.images[1], 0, 1, 1e-3)  # a tiny entry, but 31 voxels along y move the far corner by 0.031 mm
    return case.images[1]


@pytest.mark.parametrize("plant", [pytest.param(_half_voxel_shift_of_a_contrast, id="contrast_half_voxel_shift"),
                                   pytest.param(_flipped_and_shifted_label, id="label_flipped_and_shifted"),
                                   pytest.param(_label_on_a_coarser_grid, id="label_coarser_grid"),
                                   pytest.param(_slightly_rotated_contrast, id="contrast_slightly_rotated")])
def test_a_genuinely_different_grid_is_refused_with_advice_to_resample(pristine, tmp_path: Path, plant) -> None:
    root, case = _copy(pristine, "brats2021", tmp_path)
    path = plant(case)
    before = _checksums(root)

    problems = [p for p in check_case(case) if p.severity == "error"]  # the coarse label also warns of its spacing

    assert [Path(p.file) for p in problems] == [Path(path)], "\n".join(map(str, problems))
    message = problems[0].message
    assert re.search(rf"resample {re.escape(Path(path).name)} onto \S+_t1\.nii\.gz's grid", message), message
    assert "copy" not in message and "orientation" not in message
    assert _checksums(root) == before


@pytest.mark.parametrize(("which", "delta"), [pytest.param("contrast", 1e-3, id="contrast_origin_off_by_1e-3_mm"),
                                              pytest.param("label", 5e-3, id="label_origin_off_by_5e-3_mm")])
def test_header_rounding_is_an_error_whose_fix_is_to_copy_the_affine(pristine, tmp_path: Path, which: str,
                                                                     delta: float) -> None:
    # decided in pipeline.core.nifti.HEADER_ROUNDING: voxel centres within 0.01 mm are the same grid badly rounded; the
    # contrasts still fail MONAI's numpy.allclose (the loader would refuse them) and the label the 1e-3 mm per entry
    root, case = _copy(pristine, "brats2021", tmp_path)
    path = case.images[3] if which == "contrast" else case.label
    _shifted(path, 0, 3, delta)
    before = _checksums(root)

    problems = check_case(case)

    assert delta < HEADER_ROUNDING
    assert [(p.severity, Path(p.file)) for p in problems] == [("error", Path(path))], "\n".join(map(str, problems))
    assert re.search(rf"has a different affine from \S+_t1\.nii\.gz \(largest entry difference {delta:g}, allowed .*"
                     rf"\); its voxel centres are within {delta:g} mm of \S+_t1\.nii\.gz's \(header rounding\): copy "
                     r"\S+_t1\.nii\.gz's affine \(sform and qform\) into it", problems[0].message), problems[0].message
    if which == "contrast":
        with pytest.raises(RuntimeError):  # MONAI's own test refuses even this: the error is needed
            _monai_stacks(case)
    assert _checksums(root) == before


# ---- an MSD image stored channel-first --------------------------------------------------------------------------


def test_a_channel_first_msd_image_is_refused_by_the_check_and_at_inference(pristine, tmp_path: Path) -> None:
    root, case = _copy(pristine, "msd", tmp_path)
    image = case.images[0]
    img = nib.load(image)
    nib.save(nib.Nifti1Image(np.moveaxis(np.asarray(img.dataobj), -1, 0), img.affine), image)  # (4, 32, 32, 24)
    before = _checksums(root)

    for data in (True, False):  # the header says it: headers-only finds it too
        problems = check_case(case, "msd", data=data)
        assert [(p.severity, Path(p.file)) for p in problems] == [("error", Path(image))], "\n".join(map(str, problems))
        assert re.match(r"case BRATS_001: imagesTr/BRATS_001\.nii\.gz is stored with its channels first, shape "
                        r"\(4, 32, 32, 24\); .*: move the channel axis last \(e\.g\. numpy\.moveaxis\(data, 0, -1\)",
                        problems[0].message), problems[0].message
    report = InferenceReport(tmp_path / "seg")
    assert DataSource(root).checked_inference_items(report=report) == []
    assert "imagesTr/BRATS_001.nii.gz is stored with its channels first" in report.failed["BRATS_001"][0]
    assert _checksums(root) == before
