"""Dataset integrity check: every problem of every case, each named with its case and file, in a `CheckReport`.

For each case the headers of all its files are read first (cheap), then each file's data once; the checks and
their severities are listed in `docs/datasets.md`."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.core.nifti import (
    AFFINE_TOLERANCE,
    HEADER_ROUNDING,
    VoxelTypeError,
    axcodes,
    dangling,
    grid_distance,
    read_voxels,
    reorientation,
)
from pipeline.core.provenance import file_digest
from pipeline.data.datalist import check_case_id
from pipeline.data.labels import (
    CHANNELS,
    LABEL_SCHEMES,
    NNUNET_PREFIX,
    NUMBERING,
    allowed_labels,
    describe,
    naming_numberings,
    role_conflicts,
    roles_by_value,
    scheme_choices,
    scheme_name,
)
from pipeline.data.layouts import (
    LAYOUTS,
    Case,
    DatasetError,
    DatasetScan,
    LayoutInfo,
    Problem,
    in_scheme_order,
    resolve_scheme,
    scan_dataset,
)
from pipeline.data.layouts.brats import single_case

logger = logging.getLogger(__name__)


#: Voxel size expected by a model trained on BraTS (mm).
EXPECTED_SPACING: float = 1.0


#: Relative deviation from `EXPECTED_SPACING` beyond which a warning is given.
SPACING_TOLERANCE: float = 0.05


#: ``data_check`` modes of training (``common.yaml``).
DATA_CHECK_MODES: tuple[str, ...] = ("strict", "skip", "off")


_SCHEME_HINTS: dict[str, str] = {
    "brats": "For BraTS 2018-2021 data set {option} brats",
    "brats2023": "For BraTS 2023+ data set {option} brats2023",
    "brats2024": "BraTS 2024+ post-treatment glioma: 4 is the resection cavity, so for such data set "
                 "{option} brats2024",
    "msd": "For Decathlon Task01 data set {option} msd",
    "ped": "For BraTS-PED 2024+ data (1 ET, 2 NET, 3 CC, 4 ED) set {option} ped",
}


_MSD_FOLDERS = ("imagesTr", "labelsTr", "imagesTs")


class DatasetCheckError(DatasetError):
    """The dataset has errors; ``problems`` lists them all and the message holds one line per error."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class CheckReport:
    """The result of `check_dataset`: the layout, the cases checked, every problem and the time taken."""

    root: str
    layout: LayoutInfo | None
    label_scheme: str
    cases: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    kind: str = "datalist"  # what was checked without a layout: a datalist's cases, or a "labels folder"

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def bad_cases(self) -> list[str]:
        """Case ids with at least one error, in order (a dataset-level error has the case id ``""``)."""
        return list(dict.fromkeys(p.case for p in self.errors))

    def summary(self) -> str:
        """One line: cases, errors, warnings, time."""
        bad = [c for c in self.bad_cases if c]
        good = len([c for c in self.cases if c not in set(bad)])
        layout = self.layout.layout if self.layout else self.kind
        return (f"checked {len(self.cases)} case(s) in {self.seconds:.1f} s (layout {layout}, label scheme "
                f"{self.label_scheme}): {len(self.errors)} error(s) in {len(bad)} case(s), "
                f"{len(self.warnings)} warning(s); {good} case(s) without error")

    def format(self) -> str:
        """Every problem on its line (``ERROR: case ...``/``WARNING: case ...``), then the summary."""
        return "\n".join([*(str(p) for p in self.problems), self.summary()])


def _display(path: str | os.PathLike) -> str:
    """A file as messages name it: its name, with the folder for MSD's ``imagesTr/``, ``labelsTr/``, ``imagesTs/``."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name in _MSD_FOLDERS else p.name


@dataclass
class _File:
    path: str
    kind: str           # "image" or "label"
    what: str           # e.g. "the T1 contrast", "the 4D image", "the label"
    header: object = None
    ok_dims: bool = False
    channel_axis: int = 3  # of a 4D image: 0 when it is stored channel-first (an error; its data checked per channel)


#: ``add(file, severity, text)``: records a problem of one of a case's files (a `_File` or a path), its
#: message ``case <id>: <file> <text>``.
_Add = Callable[[_File | str, str, str], None]


def _label_values(arr: np.ndarray) -> tuple[set[int], bool]:
    """The distinct values of a label map and whether they are all whole numbers, in one pass where possible."""
    if arr.dtype.kind == "f":  # finite here: the caller reports NaN/Inf first
        if not np.array_equal(arr, np.rint(arr)):
            return {float(v) for v in np.unique(arr[arr != np.rint(arr)])[:5]}, False  # type: ignore[misc]
        arr = arr.astype(np.int64)
    if arr.dtype.kind in "ub" or (arr.size and arr.min() >= 0 and arr.max() < 1 << 16):
        counts = np.bincount(arr.ravel().astype(np.int64, copy=False)) if arr.size else np.zeros(0)
        return {int(v) for v in np.flatnonzero(counts)}, True
    return {int(v) for v in np.unique(arr)}, True


def scheme_hint(values: set[int], scheme: str, layout: str | None = None, option: str = "--label_scheme", *,
                case: str = "") -> str:
    """What to do about label values outside ``scheme`` (the one hint, for the check, training and evaluation): the
    built-in schemes that hold them all and whose numbering the names of ``case`` (in ``layout``) allow
    (`pipeline.data.labels.naming_numberings`), and of these the narrowest (a scheme is not named when one with
    fewer values fits); else relabel. Where the names do not tell the numbering (a BraTS-PED case: ``brats2023`` or
    ``ped``) only those readings are named, each that holds the values (never ``brats2024``, whose 4 is a resection
    cavity, not PED's oedema). For an nnU-Net scheme: its dataset.json. ``option`` is the flag that sets the scheme
    (``--scheme`` for evaluate)."""
    desc = describe(scheme)
    if desc.name.startswith(NNUNET_PREFIX):
        return (f". If these are classes of the dataset, add them to the \"labels\" of "
                f"{desc.name[len(NNUNET_PREFIX):]}; otherwise relabel the file, or check that it is a segmentation")
    readings = naming_numberings(layout, case)
    fits = [s for s in LABEL_SCHEMES if s != scheme and values <= allowed_labels(s)]
    if len(readings) > 1:  # the names do not tell: one of their readings, whichever holds the values
        fits = [s for s in fits if s in readings]
    else:
        named = {v: r for naming in readings for r, v in NUMBERING[naming].items()}
        fits = [s for s in fits if not role_conflicts(named, roles_by_value(describe(s)))]  # as `resolve_scheme` does
        fits = [s for s in fits if not any(allowed_labels(t) < allowed_labels(s) for t in fits)]
    if fits:
        hints = [_SCHEME_HINTS.get(s, "For that data set {option} " + s).format(option=option) for s in fits]
        if "brats2024" in fits and 4 in values and 3 not in values:  # no ET beside the 4: it may be ET, numbered 4
            hints.append("if 4 is the enhancing tumour instead (BraTS 2018-2021's numbering under BraTS 2023+ file "
                         "names), relabel 4 -> 3 and keep the scheme; brats2024 would score it as resection cavity")
        return ". " + "; ".join([hints[0], *(h[0].lower() + h[1:] if h.startswith("For ") else h for h in hints[1:])])
    return ". Relabel the file to the scheme's values, or check that it is a segmentation"


def _not_3d_advice(shape: tuple[int, ...], kind: str, nnunet: bool) -> str:
    """The end of the message for a file that should be 3D and is not."""
    if len(shape) == 4 and shape[3] == 1:
        return " with a single volume: save it as 3D (nibabel.squeeze_image)"
    if len(shape) < 3:
        return "; a BraTS volume is 3D (X, Y, Z): re-export the whole volume, not a slice"
    if kind != "image":
        return ""
    if nnunet:
        return "; nnU-Net's raw format holds one 3D file per channel (<case>_0000, <case>_0001, ...)"
    return "; a 4D file holding all contrasts belongs in the Decathlon layout (imagesTr/), not in a BraTS case folder"


def check_case(case: Case, scheme: str = "brats", *, labels: bool = True, data: bool = True,
               layout: str | None = None) -> list[Problem]:
    """Every problem of one case's files (see the module docstring), headers first, then each file's data once.

    Args:
        case: the case (a BraTS case's 4 files in channel order, an MSD case's 4D file and channel index, or an
            nnU-Net case's file per channel).
        scheme: the label scheme (`pipeline.data.labels.describe`): its channels are the image files expected,
            its labels the values allowed.
        labels: check the label file too (inference does not need it).
        data: read the voxels (False: headers only).
        layout: the dataset's layout, when known: it decides which scheme a wrong label value suggests.

    Returns:
        The problems, in file order; none raised.

    The checks run in three passes over the files, a function each: `_check_headers` (readable,
    dimensionality, spacing), `_check_grid` (every file on the first image's grid) and, with ``data``,
    `_check_voxels` (each file's voxels, read once). A new check goes in the pass that reads what it needs.
    """
    cid = case.case_id
    problems: list[Problem] = []
    try:  # the outputs are named <case>.nii.gz: an id no file can carry fails at the first write otherwise
        check_case_id(cid, f"case {cid[:40]}{'...' if len(cid) > 40 else ''}")
    except DatasetError as e:
        return [Problem(cid, ", ".join(case.images), "error", str(e))]

    def add(f: _File | str, severity: str, text: str) -> None:
        path = f.path if isinstance(f, _File) else f
        problems.append(Problem(cid, str(path), severity, f"case {cid}: {_display(path)} {text}"))

    desc = describe(scheme)
    channels = desc.channels
    four_d = case.channel_index is not None
    n_files = 1 if four_d else len(channels)
    if len(case.images) != n_files or (four_d and len(case.channel_index or ()) != len(channels)):
        four_d_too = " or one 4D file with a channel_index" if channels == CHANNELS else ""
        problems.append(Problem(cid, ", ".join(case.images), "error", (
            f"case {cid}: lists {len(case.images)} image file(s){' (4D)' if four_d else ''}; expected "
            f"{len(channels)} ({', '.join(channels)}, the channels of label scheme {desc.name}){four_d_too}: "
            "rebuild the datalist with python -m pipeline datalist")))
        return problems
    if four_d:
        files = [_File(case.images[0], "image", "the 4D image")]
    else:
        files = [_File(p, "image", f"the {c} contrast") for p, c in zip(case.images, channels, strict=True)]
    if labels and case.label:
        files.append(_File(case.label, "label", "the label"))

    _check_headers(files, case, add, nnunet=desc.name.startswith(NNUNET_PREFIX))
    _check_grid(files, add)
    if data:
        _check_voxels(files, case, scheme, add, labels=labels, layout=layout)
    return problems


def _check_headers(files: list[_File], case: Case, add: _Add, *, nnunet: bool) -> None:
    """Pass 1, the headers of ``files`` (cheap): each file exists and reads as NIfTI, has the dimensionality of its
    kind (3D; MSD: one 4D image with the channels last), and a usable voxel spacing near 1 mm.

    Fills in each `_File`'s ``header``, ``ok_dims`` and ``channel_axis`` for the later passes.
    """
    four_d = case.channel_index is not None
    # a spacing warning once per case, on the first header read
    spacing_warned = False
    for f in files:
        if not os.path.isfile(f.path):
            link = dangling(f.path)
            add(f, "error", f"does not exist ({f.what}){link}; " + ("mount it, or remove the case from the dataset"
                            if link else "restore it (re-download or re-extract the case) or remove the case from "
                            "the dataset"))
            continue
        try:
            f.header = nib.load(f.path)
            shape = tuple(int(s) for s in f.header.shape)
        except Exception as e:  # any reader failure is reported, never raised
            add(f, "error", f"cannot be read as NIfTI ({type(e).__name__}: {e}); the file is corrupt, empty or not "
                            "NIfTI: re-download or re-extract it")
            continue
        if f.kind == "image" and four_d:
            need = len(case.channel_index or ())
            if len(shape) == 4 and shape[3] != need and need in shape[:3]:
                # LoadImaged(ensure_channel_first) takes a 4D NIfTI's LAST axis as the channels: (4, X, Y, Z) or
                # (X, Y, 4, Z) would become Z "channels" of slabs, and the channel index would pick 4 of them
                f.channel_axis = shape[:3].index(need)
                where = "first" if f.channel_axis == 0 else f"on axis {f.channel_axis}"
                add(f, "error", f"is stored with its channels {where}, shape {shape}; the Decathlon layout keeps the "
                                f"{need} contrasts on the last axis, (X, Y, Z, {need}), and the loader takes the last "
                                "axis as the channels, so the contrasts would be mixed up: move the channel axis last "
                                f"(e.g. numpy.moveaxis(data, {f.channel_axis}, -1), saved with nibabel under the same "
                                "affine)")
            elif len(shape) != 4 or shape[3] < need:
                add(f, "error", f"is {len(shape)}D with shape {shape}; expected a 4D (X, Y, Z, {need}) image holding "
                                "the 4 contrasts (Decathlon layout): re-export the case as one 4D file, or use the "
                                "BraTS layout with one 3D file per contrast")
            elif shape[3] != need:
                # its volumes are named by position (dataset.json's modality table, a datalist's channel_index): with
                # more volumes than names, which is which is a guess
                add(f, "error", f"holds {shape[3]} volumes, shape {shape}, where its description names {need} "
                                "(dataset.json's modality table, or the datalist's channel_index): which volume is "
                                f"which contrast cannot be told; save the case with its {need} contrasts only, in "
                                "the modality table's order")
            else:
                f.ok_dims = True
        elif len(shape) != 3:
            add(f, "error", f"is {len(shape)}D with shape {shape}; expected a 3D (X, Y, Z) "
                            f"{'label map' if f.kind == 'label' else 'volume'}{_not_3d_advice(shape, f.kind, nnunet)}")
        else:
            f.ok_dims = True
        # MONAI (like ITK) takes the voxel size from the affine; nibabel already replaces a zero or negative pixdim
        affine = np.asarray(f.header.affine, dtype=np.float64)
        zooms = tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
        if not np.isfinite(affine).all() or not all(z > 1e-6 for z in zooms):
            f.ok_dims = False  # its grid cannot be compared: the spacing is the fix to offer
            add(f, "error", f"has voxel spacing {tuple(round(z, 4) for z in zooms)} mm (from its affine); every "
                            "spacing must be a positive number: fix the header's affine (sform/qform), e.g. copy it "
                            "from another file of the case")
        elif not spacing_warned and any(abs(z - EXPECTED_SPACING) > SPACING_TOLERANCE * EXPECTED_SPACING
                                        for z in zooms):
            spacing_warned = True
            add(f, "warning", f"has voxel spacing {tuple(round(z, 4) for z in zooms)} mm, not the "
                              f"{EXPECTED_SPACING:g} mm of BraTS; the pipeline does not resample, so the network sees "
                              "structures at another size: resample the case to 1 mm isotropic")


def _check_grid(files: list[_File], add: _Add) -> None:
    """Pass 2, from the headers: every file on the grid of the first readable image with a sane header (the same
    shape and affine, or the same voxel grid in another voxel orientation), with advice that keeps voxels intact."""
    grid = [f for f in files if f.header is not None and f.ok_dims]
    ref = next((f for f in grid if f.kind == "image"), None)
    if ref is None:
        return
    ref_shape, ref_affine = tuple(ref.header.shape[:3]), np.asarray(ref.header.affine, dtype=np.float64)
    for f in grid:
        if f is ref:
            continue
        shape, affine = tuple(f.header.shape[:3]), np.asarray(f.header.affine, dtype=np.float64)
        if reorientation(shape, affine, ref_shape, ref_affine) is not None:
            add(f, *_reoriented(f, ref, affine, ref_affine))
            continue
        resample = (f"resample {_display(f.path)} onto {_display(ref.path)}'s grid (e.g. "
                    f"nibabel.processing.resample_from_to{', order=0 for a label' if f.kind == 'label' else ''}"
                    ", or 3D Slicer) or re-export the case")
        if shape != ref_shape:
            add(f, "error", f"has shape {shape} but {_display(ref.path)} has {ref_shape}; every file of a case "
                            f"must be on one grid: {resample}")
            continue
        diff = float(np.abs(affine - ref_affine).max())
        if f.kind == "image":
            same, tol = np.allclose(affine, ref_affine), "numpy.allclose, the test MONAI's loader applies"
        else:
            same, tol = diff <= AFFINE_TOLERANCE, f"{AFFINE_TOLERANCE:g} mm"
        if same:
            continue
        distance = grid_distance(shape, affine, ref_affine)
        if distance <= HEADER_ROUNDING:  # rounding only: copying moves no voxel centre by more than this
            fix = (f"its voxel centres are within {distance:.2g} mm of {_display(ref.path)}'s (header rounding): "
                   f"copy {_display(ref.path)}'s affine (sform and qform) into it")
        else:
            fix = (f"its voxel centres lie up to {distance:.3g} mm from {_display(ref.path)}'s, another grid: "
                   f"{resample}")
        add(f, "error", f"has a different affine from {_display(ref.path)} (largest entry difference {diff:.3g}, "
                        f"allowed {tol}); {fix}")


def _check_voxels(files: list[_File], case: Case, scheme: str, add: _Add, *, labels: bool,
                  layout: str | None) -> None:
    """Pass 3, each file's voxels read once (`read_voxels`): truncation, NaN/Inf and all-zero contrasts in
    the images; NaN/Inf, non-integer, out-of-scheme (``scheme``, with ``layout``'s hint) and empty label maps."""
    four_d = case.channel_index is not None
    allowed = allowed_labels(scheme) if labels else set()
    for f in files:
        if f.header is None:
            continue
        try:
            arr = read_voxels(f.path)
        except VoxelTypeError as e:  # complex or RGB voxels: read whole, but no image or label map of ours
            add(f, "error", str(e).replace(str(f.path), "", 1).strip())
            continue
        except Exception as e:  # EOFError, OSError (gzip), zlib.error, ValueError, nibabel's: all reported
            add(f, "error", f"is truncated or corrupt ({type(e).__name__}: {e}); the header reads but the voxel data "
                            "do not: re-download or re-extract the file")
            continue
        if f.kind == "image":
            vols = ([(np.take(arr, i, axis=f.channel_axis), f" channel {i} ({_channel_name(case, i, scheme)})")
                     for i in range(arr.shape[f.channel_axis])] if four_d and arr.ndim == 4 else [(arr, "")])
            for vol, where in vols:
                if vol.dtype.kind == "f" and not np.isfinite(vol).all():
                    n_nan, n_inf = int(np.isnan(vol).sum()), int(np.isinf(vol).sum())
                    add(f, "error", f"contains {n_nan} NaN and {n_inf} infinite voxel(s){where}; the intensity "
                                    "normalisation would spread them over the whole case: replace them (e.g. with 0, "
                                    "the background) or re-export the case")
                elif not vol.any():
                    add(f, "error", f"is all zero{where}: the contrast is blank (a failed export?); re-export it or "
                                    "remove the case")
                elif vol.min() == vol.max():
                    add(f, "error", f"holds one value everywhere ({float(vol.flat[0]):g}){where}: the contrast is "
                                    "blank (a failed export?); re-export it or remove the case")
        else:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                add(f, "error", f"contains {int((~np.isfinite(arr)).sum())} NaN or infinite voxel(s); a label map "
                                "holds whole numbers: re-export the segmentation")
                continue
            values, whole = _label_values(arr)
            if not whole:
                add(f, "error", f"holds non-integer values (e.g. {sorted(values)[:5]}); a label map holds whole "
                                "numbers: threshold or re-export the segmentation")
                continue
            extra = values - allowed
            if extra:
                shown = ", ".join(str(v) for v in sorted(extra))
                add(f, "error", f"contains label {shown}; expected {{{', '.join(map(str, sorted(allowed)))}}} for "
                                f"label scheme '{scheme}'{scheme_hint(values, scheme, layout, case=case.case_id)}")
            elif values <= {0}:
                add(f, "warning", "contains only background (0): no tumour to learn from; check that it is the "
                                  "right file")


def _reoriented(f: _File, ref: _File, affine: np.ndarray, ref_affine: np.ndarray) -> tuple[str, str]:
    """``(severity, text)`` for a file holding ``ref``'s voxel grid in another voxel orientation.

    A label is loaded as its own key and ``Orientationd`` (``common.yaml``) turns each key to RAS by its own
    affine, so it lines up with the image: a warning. The contrasts are stacked by ``LoadImaged`` as stored, and
    MONAI's readers refuse files whose affines differ (``_copy_compatible_dict`` in ``monai/data/image_reader.py``,
    a RuntimeError "affine matrix of all images should be the same for channel-wise concatenation"): an error,
    with advice that keeps the voxels where they are. Copying the affine would mirror (or transpose) the image.

    A label within `HEADER_ROUNDING` of the image's voxel centres is accepted although the same label in
    the image's orientation is held to `AFFINE_TOLERANCE` per entry: ``Orientationd`` only flips and
    permutes axes (it never resamples), so each label voxel lands on its image voxel whatever the rounding.
    """
    codes, ref_codes = axcodes(affine), axcodes(ref_affine)
    name, ref_name = _display(f.path), _display(ref.path)
    same = f"is stored in voxel orientation {codes}, {ref_name} in {ref_codes}: the same voxel grid in another order"
    if f.kind == "label":
        return "warning", (f"{same}; training loads it as its own key and reorients it and the image to RAS "
                           "(Orientationd) and the evaluation reorders predictions onto it, so they line up. Do not "
                           "edit its affine (that would flip or transpose the label)")
    return "error", (f"{same}, and MONAI's loader stacks the contrasts as stored (it refuses files whose affines "
                     f"differ): reorient {name} to {ref_name}'s orientation {ref_codes} (nibabel: img.as_reoriented("
                     f"ornt_transform(io_orientation(img.affine), axcodes2ornt({tuple(ref_codes)!r}))), or 3D Slicer), "
                     "or every file of the case to one orientation (nibabel.as_closest_canonical or fslreorient2std "
                     "on each); do not edit its affine: that would flip or transpose the image")


def _channel_name(case: Case, i: int, scheme: str) -> str:
    """The name of a 4D file's channel ``i``: the description's channel that ``channel_index`` puts there."""
    index = list(case.channel_index or ())
    return describe(scheme).channels[index.index(i)] if i in index else "unused"


def check_cases(cases: Sequence[Case], scheme: str = "brats", *, jobs: int = 1, labels: bool = True,
                data: bool = True, progress: Callable[[int, int], None] | None = None,
                layout: str | None = None) -> list[Problem]:
    """`check_case` for every case, ``jobs`` processes at a time; the problems in case order."""
    fn = partial(check_case, scheme=scheme, labels=labels, data=data, layout=layout)
    results: list[list[Problem]] = [[] for _ in cases]
    if jobs <= 1 or len(cases) <= 1:
        for i, case in enumerate(cases):
            results[i] = fn(case)
            if progress:
                progress(i + 1, len(cases))
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(cases))) as pool:
            futures = {pool.submit(fn, case): i for i, case in enumerate(cases)}
            for done, fut in enumerate(as_completed(futures), 1):
                results[futures[fut]] = fut.result()
                if progress:
                    progress(done, len(cases))
    problems = [p for r in results for p in r]
    return problems + duplicate_cases(cases) if labels else problems


def _ends_digest(path: str, size: int = 1 << 20) -> bytes:
    """A cheap fingerprint of a file: its first and last ``size`` bytes (sha256). Two patients' files of one size
    (uncompressed NIfTI of one grid and type all have it) differ there; only files that match are hashed whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(size))
        f.seek(max(0, os.fstat(f.fileno()).st_size - size))
        digest.update(f.read(size))
    return digest.digest()


def duplicate_cases(cases: Sequence[Case]) -> list[Problem]:
    """An error for each labelled case whose images are, byte for byte, an earlier case's (the same files, or copies:
    among files of the same sizes, the same first and last MiB, then the same sha256,
    `pipeline.core.provenance.file_digest`). One patient under two ids was validated against its own copy in
    training, and counts twice in a mean."""
    def narrowed(groups: Iterable[list[Case]], key: Callable[[Case], object]) -> list[list[Case]]:
        out = []
        for group in groups:
            by_key: dict[object, list[Case]] = {}
            for case in group:
                try:
                    by_key.setdefault(key(case), []).append(case)
                except OSError:  # an unreadable file is the case's own problem
                    continue
            out += [g for g in by_key.values() if len(g) > 1]
        return out

    labelled = [c for c in cases if c.label]
    groups = narrowed([labelled], lambda c: (tuple(os.path.getsize(p) for p in c.images), c.channel_index))
    groups = narrowed(groups, lambda c: tuple(_ends_digest(p) for p in c.images))
    problems = []
    for group in narrowed(groups, lambda c: tuple(file_digest(p) for p in c.images)):
        first = group[0]
        for case in group[1:]:
            problems.append(Problem(case.case_id, case.images[0], "error", (
                f"case {case.case_id}: its images are, byte for byte, case {first.case_id}'s "
                f"({_display(case.images[0])} and {_display(first.images[0])} are the same): one patient "
                "under two ids would be validated against its own copy in training and counted twice in a mean; "
                "remove one of the two cases")))
    return problems


def progress_logger(started: float) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        step = max(1, total // 10)
        if total >= 20 and (done % step == 0 or done == total):
            logger.info("checked %d/%d cases (%.0f s)", done, total, time.perf_counter() - started)
    return report


def check_dataset(root: str | os.PathLike, *, layout: str | None = None, label_scheme: str | None = "auto",
                  jobs: int = 1, data: bool = True) -> CheckReport:
    """Discover the cases under ``root`` and check them all: every problem, none raised.

    Args:
        root: the dataset folder (any layout of `pipeline.data.layouts`), or one BraTS case's folder
            (`pipeline.data.layouts.brats.single_case`, as inference takes it).
        layout: None/``auto`` detects it.
        label_scheme: ``auto``/None: the layout's (``brats2021`` -> ``brats``, ``brats2023``, ``msd``, an nnU-Net
            dataset's ``nnunet:<root>/dataset.json``; refused for BraTS-PED cases, whose names do not tell
            ``brats2023`` from ``ped``: `pipeline.data.layouts.resolve_scheme`); or a built-in name (``brats2024``
            for post-treatment glioma, ``ped`` for BraTS-PED 2024+) or ``nnunet:<dataset.json>``.
        jobs: worker processes.
        data: read the voxels (False: headers only).

    Raises:
        DatasetError: ``root`` is missing, or no layout can be detected in it (nothing to check).
        UserError: a scheme `pipeline.data.layouts.resolve_scheme` refuses (``auto`` on BraTS-PED cases).
    """
    started = time.perf_counter()
    one = single_case(root) if layout in (None, "auto") else None
    if one is not None:  # a case folder (or a flat folder of one case's files), as inference takes it
        case, info = one
        scheme = resolve_scheme(info, label_scheme)
        case = in_scheme_order(DatasetScan(Path(root), info, [case]), label_scheme).cases[0]  # channels by name
        problems = check_cases([case], scheme, jobs=1, data=data, layout=info.layout)
        return CheckReport(str(Path(root).expanduser()), info, scheme, [case.case_id], problems,
                           time.perf_counter() - started)
    scan = in_scheme_order(scan_dataset(root, layout), label_scheme)  # the scheme's channel order, by name
    scheme = resolve_scheme(scan.layout, label_scheme)
    problems = list(scan.problems)
    if not scan.cases and not scan.errors:
        example = LAYOUTS[scan.layout.layout].example
        problems.append(Problem("", str(scan.root), "error",
                                f"dataset {scan.root}: no case found for layout {scan.layout.layout} ({example})"))
    problems += check_cases(scan.cases, scheme, jobs=jobs, data=data, progress=progress_logger(started),
                            layout=scan.layout.layout)
    ids = list(dict.fromkeys([*(c.case_id for c in scan.cases), *(p.case for p in scan.problems if p.case)]))
    return CheckReport(str(scan.root), scan.layout, scheme, ids, problems, time.perf_counter() - started)


def log_problems(problems: Sequence[Problem]) -> None:
    for p in problems:
        (logger.error if p.severity == "error" else logger.warning)("%s", p.message)


def is_label_folder(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a flat folder of ``<case>.nii.gz`` label maps (predictions or references), not a dataset."""
    from pipeline.core.nifti import nifti_files

    folder = Path(root).expanduser()
    return folder.is_dir() and bool(nifti_files(folder)) and not any(p.is_dir() and not p.name.startswith(".")
                                                                      and p.name != "probabilities"
                                                                      for p in folder.iterdir()) \
        and single_case(folder) is None  # one case's images and label, named as such, are a case


def check_label_folder(root: str | os.PathLike, label_scheme: str, *, data: bool = True) -> CheckReport:
    """Check a flat folder of ``<case>.nii.gz`` label maps under ``label_scheme``: each file is whole and readable,
    3D, and (``data``) holds whole numbers of the scheme only; every problem, none raised.

    Raises:
        DatasetError: ``label_scheme`` is ``auto`` (a folder of labels does not say its numbering).
    """
    from pipeline.core.nifti import nifti_files

    started = time.perf_counter()
    if label_scheme in (None, "auto"):
        raise DatasetError(f"{root} is a folder of label files, which does not say its numbering: pass "
                           f"--label_scheme with one of: {scheme_choices()}")
    scheme = scheme_name(label_scheme)
    allowed = describe(scheme).allowed
    files = nifti_files(Path(root).expanduser())
    problems = []
    for case, path in sorted(files.items()):
        def add(text: str, severity: str = "error", case: str = case, path: Path = path) -> None:
            problems.append(Problem(case, str(path), severity, f"case {case}: {path.name} {text}"))

        try:
            img = nib.load(path)
            if len(img.shape) != 3:
                add(f"has shape {tuple(img.shape)}: a label map is 3D (X, Y, Z)")
                continue
            if not data:
                continue
            values, whole = _label_values(read_voxels(path))
        except Exception as e:  # noqa: BLE001 - an unreadable file is this case's problem, the others go on
            add(f"cannot be read ({type(e).__name__}: {e}); write it again")
            continue
        if not whole:
            add(f"holds non-integer values {sorted(values)[:5]}: a label map is expected (threshold probabilities "
                "first)")
        elif values - allowed:
            add(f"holds label values {sorted(values - allowed)} outside {scheme} (allowed {sorted(allowed)}): "
                "check --label_scheme or the file")
    return CheckReport(str(Path(root).expanduser().resolve()), None, scheme, sorted(files), problems,
                       time.perf_counter() - started, kind="labels folder")
