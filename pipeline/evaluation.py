"""BraTS region evaluation: per case and region Dice, sensitivity, specificity, HD95 and voxel counts.

``python -m pipeline evaluate PRED_DIR REF_DIR --out OUT_DIR [--scheme auto|brats|brats2023|msd|labels]`` calls
:func:`evaluate_folders` and prints :func:`format_table`; so does the bundle's ``evaluate.yaml``.

The reference is read from its layout only (:func:`reference_files`): a dataset folder gives its cases' label
files (``_seg``, ``-seg``, ``labelsTr/``), never stray NIfTI files at its root; only a folder that is not a
dataset is read as ``<case>.nii.gz`` labels. ``auto`` takes the label scheme of the dataset's layout. Before
anything is read or written, the prediction folder must not be, contain or lie inside the reference folder,
and the output folder must hold no input and lie outside the dataset (:func:`check_evaluation_folders`).

Regions, by label scheme (:mod:`pipeline.labels`):
    ``brats``/``brats2023``/``msd``  ET (enhancing tumour), TC (tumour core = NCR + ET), WT (whole tumour =
                             NCR + ED + ET), in that order, as BraTS papers print them; ET is label 4 (``brats``) or
                             3 (``brats2023``, ``msd``; MSD numbers ED 1 and the non-enhancing core 2).
    ``labels``               one region per non-zero label value present in the prediction or the reference of
                             a case, named ``label_<value>``, in increasing order.

Empty regions follow the BraTS challenge (see :func:`pipeline.metrics.region_metrics` and ``docs/metrics.md``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from pipeline.datasets import (
    LAYOUTS,
    NIFTI_EXTENSIONS,
    DatasetError,
    LayoutInfo,
    _brats_matches,
    _case_folders,
    _nifti_names,
    detect_layout,
    discover_cases,
)
from pipeline.errors import UserError
from pipeline.files import atomic_write_text, check_output_location, is_within
from pipeline.labels import LABEL_SCHEMES, NNUNET_PREFIX, allowed_labels, describe, region_masks
from pipeline.metrics import HD95_EMPTY_PENALTY_MM, METRIC_KEYS, bounding_box, region_metrics

logger = logging.getLogger(__name__)

#: Label schemes accepted by :func:`evaluate_case`.
SCHEMES: tuple[str, ...] = (*LABEL_SCHEMES, "labels")

#: Label schemes accepted by :func:`evaluate_folders` and the ``evaluate`` command: ``auto`` is the reference
#: dataset's layout's (:data:`pipeline.datasets.LAYOUTS`).
FOLDER_SCHEMES: tuple[str, ...] = ("auto", *SCHEMES)

#: BraTS region names in evaluation (and CSV/summary) order.
BRATS_EVAL_REGIONS: tuple[str, ...] = ("ET", "TC", "WT")

#: Columns of ``metrics.csv``, in order.
CSV_COLUMNS: tuple[str, ...] = ("case", "region", *METRIC_KEYS)

#: Metrics summarised in ``summary.json``.
SUMMARY_METRICS: tuple[str, ...] = ("dice", "sensitivity", "specificity", "hd95", "nsd")

#: Largest difference between the prediction's and the reference's affine entries (mm) still taken as equal.
AFFINE_TOLERANCE: float = 1e-3

CONVENTIONS: dict[str, str] = {
    "regions": "brats/brats2023: ET = ET label, TC = NCR + ET, WT = NCR + ED + ET; labels: one region per value",
    "dice": "2TP/(2TP+FP+FN); both empty -> 1, exactly one empty -> 0 (BraTS challenge)",
    "sensitivity": "TP/(TP+FN); empty reference -> 1 (no positive to miss)",
    "specificity": "TN/(TN+FP) over the whole image; no negative voxel in the reference -> 1",
    "hd95": (
        "MONAI compute_hausdorff_distance(percentile=95, spacing from the header): max of the 95th percentiles "
        "of the two directed surface distances, in mm; both empty -> 0, exactly one empty -> 373.13 mm (BraTS)"
    ),
    "missing_prediction": "evaluated as an empty prediction",
    "statistics": "std is the population standard deviation (ddof=0); q1/median/q3 by linear interpolation",
}


# ----------------------------------------------------------------------------------------------------------------
# One case
# ----------------------------------------------------------------------------------------------------------------


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device) if device is not None else t


def _integer_labels(x: torch.Tensor, what: str) -> torch.Tensor:
    """Floating label maps (``get_fdata``) -> int64; an error if a value is not a whole number.

    Booleans become uint8, and uint16/32/64 (which few torch operations support) int64.
    """
    if x.dtype == torch.bool:
        return x.to(torch.uint8)
    if x.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return x.to(torch.int64)
    if x.is_floating_point():
        if not bool(torch.all(x == torch.round(x))):
            msg = f"the {what} holds non-integer values: a label map is expected, threshold probabilities first"
            raise ValueError(msg)
        return x.to(torch.int64)
    return x


def label_values_problem(values: Iterable[int], scheme: str, what: str, layout: str | None = None) -> str | None:
    """The message for label ``values`` outside ``scheme`` (None when they all fit), with the fix.

    Args:
        values: the label values found (background 0 may be among them).
        scheme: ``brats``, ``brats2023`` or ``msd``.
        what: ``prediction`` or ``reference`` (or a file name), for the message.
        layout: the reference dataset's layout (:data:`pipeline.datasets.LAYOUTS`), or None for a folder of
            labels; when its scheme is not ``scheme``, the hint names the scheme of the layout.
    """
    allowed = allowed_labels(scheme)
    bad = sorted({int(v) for v in values} - allowed)
    if not bad:
        return None
    other = [s for s in LABEL_SCHEMES if s != scheme and set(bad) <= allowed_labels(s)]
    spec = LAYOUTS.get(layout) if layout else None
    if spec is not None and spec.label_scheme != scheme:
        hint = f"; the reference dataset is in the {spec.title} layout: pass --scheme {spec.label_scheme}"
    elif spec is not None and what == "reference":
        hint = (f"; the dataset's labels do not follow the {spec.title} numbering: check it with "
                "python -m pipeline check, or pass --scheme labels to score every value")
    elif spec is not None:
        fits = f" (its values fit scheme {other[0]})" if other else ""
        hint = (f"; the reference dataset ({spec.title} layout) is numbered in scheme {scheme}{fits}: write the "
                f"{what} in scheme {scheme} (re-run inference with --label_scheme {scheme})")
    else:
        hint = f"; the values fit --scheme {other[0]}" if other else "; use --scheme labels to score every value"
    return (f"the {what} holds label value(s) {bad} that scheme {scheme!r} does not use "
            f"(allowed {sorted(allowed)}){hint}")


def _check_scheme_values(x: torch.Tensor, scheme: str, what: str, layout: str | None = None) -> None:
    allowed = torch.tensor(sorted(allowed_labels(scheme)), dtype=x.dtype, device=x.device)
    bad = x[~torch.isin(x, allowed)]
    if bad.numel():
        msg = label_values_problem(torch.unique(bad).tolist(), scheme, what, layout)
        raise UserError(msg)


def _region_masks(x: torch.Tensor, scheme: str, values: Sequence[int] = ()) -> torch.Tensor:
    """Label map ``(H, W, D)`` -> bool ``(R, H, W, D)``: the scheme's evaluated regions (ET, TC, WT for the BraTS
    schemes; :attr:`pipeline.labels.Description.evaluated`) or, under ``labels``, one channel per value."""
    if scheme == "labels":
        if not values:
            return torch.zeros((0, *x.shape), dtype=torch.bool, device=x.device)
        return torch.stack([x == v for v in values])
    return region_masks(x, describe(scheme).evaluated)


def _spatial_values(x: torch.Tensor) -> set[int]:
    return {int(v) for v in torch.unique(x).tolist()} - {0}


def evaluate_case(
    pred: np.ndarray | torch.Tensor,
    ref: np.ndarray | torch.Tensor,
    spacing: float | Sequence[float] | None,
    scheme: str = "brats",
    device: torch.device | str | None = None,
    *,
    layout: str | None = None,
) -> list[dict]:
    """Metrics of every region of one case.

    Label maps are cut to the bounding box of their non-zero voxels first (everything outside is background
    in both, so it only adds true negatives, which are counted), then the regions are scored by
    :func:`pipeline.metrics.region_metrics`: exact counts, BraTS empty-region rules, MONAI's HD95 in mm.
    Everything runs on the tensors' device; on CUDA nothing goes through NumPy.

    Args:
        pred: the prediction, ``(H, W, D)`` label map (any integer dtype, or floats holding whole numbers);
            under a BraTS scheme also ``(3, H, W, D)`` binary region channels in the network's order
            TC, WT, ET (:data:`pipeline.labels.REGIONS`).
        ref: the reference, same shape and kind as ``pred``.
        spacing: voxel size in mm along each spatial axis (the NIfTI header's zooms), one number, or None for 1.
        scheme: ``brats`` (NCR 1, ED 2, ET 4), ``brats2023`` (ET 3), ``msd`` (ED 1, NET 2, ET 3) or ``labels``
            (every non-zero value).
        device: where to compute (e.g. ``"cuda"``); None: ``pred``'s device if it is a tensor, else the CPU.
        layout: the reference dataset's layout, named in the fix when a label value does not fit ``scheme``.

    Returns:
        One dict per region: ``region`` (ET, TC, WT; or ``label_<v>``), ``dice``, ``sensitivity``,
        ``specificity``, ``hd95`` (mm) as floats, ``pred_voxels``, ``ref_voxels`` as ints. Under ``labels``,
        a value absent from both gives no row.

    Raises:
        ValueError: unknown scheme, shapes differ, non-integer labels, or label values outside the scheme.
    """
    if scheme != "labels":
        desc = describe(scheme)  # an unknown scheme is refused here, naming the choices
    if device is None and isinstance(ref, torch.Tensor) and not isinstance(pred, torch.Tensor):
        device = ref.device
    p = _as_tensor(pred, device)
    r = _as_tensor(ref, p.device)
    if p.shape != r.shape:
        msg = f"prediction shape {tuple(p.shape)} differs from reference shape {tuple(r.shape)}"
        raise ValueError(msg)

    if scheme != "labels" and p.ndim == 4 and p.shape[0] == len(desc.regions):  # the network's region channels
        network = list(desc.regions)
        missing = [name for name in desc.evaluated if name not in network]
        if missing:
            raise ValueError(f"regions {missing} of scheme {desc.name} are not network outputs: evaluate label maps")
        order = [network.index(name) for name in desc.evaluated]  # -> the evaluated order (ET, TC, WT)
        rows = region_metrics(p[order] != 0, r[order] != 0, spacing)
        return [{"region": name, **row} for name, row in zip(desc.evaluated, rows, strict=True)]

    if p.ndim != 3:
        msg = f"expected (H, W, D) label maps (or (3, H, W, D) region channels), got shape {tuple(p.shape)}"
        raise ValueError(msg)
    n_voxels = p.numel()
    box = bounding_box((p != 0) | (r != 0))
    if box is None:
        pc = rc = torch.zeros((1, 1, 1), dtype=torch.uint8, device=p.device)
    else:
        pc, rc = _integer_labels(p[box], "prediction"), _integer_labels(r[box], "reference")

    if scheme == "labels":
        values = sorted(_spatial_values(pc) | _spatial_values(rc))
        names = [f"label_{v}" for v in values]
    else:
        _check_scheme_values(pc, scheme, "prediction", layout)
        _check_scheme_values(rc, scheme, "reference", layout)
        values, names = [], list(desc.evaluated)
    if not names:
        return []
    rows = region_metrics(
        _region_masks(pc, scheme, values), _region_masks(rc, scheme, values), spacing, n_voxels=n_voxels
    )
    return [{"region": name, **row} for name, row in zip(names, rows, strict=True)]


# ----------------------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------------------


def _case_id(path: Path) -> str | None:
    for ext in NIFTI_EXTENSIONS:
        if path.name.endswith(ext):
            return path.name[: -len(ext)]
    return None


def _nifti_files(folder: Path) -> dict[str, Path]:
    """``{case id: file}`` of the ``*.nii.gz``/``*.nii`` files directly in ``folder`` (``.nii.gz`` wins a tie)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        cid = _case_id(path)
        if cid is None or not path.is_file():
            continue
        if cid not in found or path.name.endswith(".nii.gz"):
            found[cid] = path
    return found


#: Where a layout keeps its label files, for messages.
_LABEL_FILES: dict[str, str] = {
    "brats2021": "<case>/<case>_seg.nii.gz", "brats2023": "<case>/<case>-seg.nii.gz", "msd": "labelsTr/<case>.nii.gz",
}


@dataclass(frozen=True)
class Reference:
    """The reference labels: ``files`` ``{case id: label file}`` read from ``root`` through ``layout``
    (None: ``root`` is a folder of ``<case>.nii.gz`` labels, not a dataset)."""

    root: Path
    files: dict[str, Path]
    layout: LayoutInfo | None = None


def _holds_cases(root: Path) -> bool:
    """Whether ``root`` has case folders named as in a BraTS layout (as :func:`detect_layout` sees them)."""
    specs = [spec for spec in LAYOUTS.values() if spec.suffixes]
    return any(_brats_matches(folder, _nifti_names(folder), spec) for folder in _case_folders(root) for spec in specs)


def read_reference(ref_dir: str | os.PathLike) -> Reference:
    """The reference labels of ``ref_dir``, read through its layout when it is a dataset.

    A dataset folder (one :func:`pipeline.datasets.detect_layout` recognises: BraTS case folders, or MSD's
    ``imagesTr``/``imagesTs``) gives its labelled cases' label files only; NIfTI files lying at its root (predictions
    written there by mistake, say) are never taken as labels, and a warning names them. Only a folder that
    is not a dataset is read as a folder of ``<case>.nii[.gz]`` labels (case id = file name without extension).

    Raises:
        UserError: the folder is missing or holds no reference label; :class:`pipeline.datasets.DatasetError`
            for a dataset that cannot be read (two layouts mixed, a case missing a contrast).
    """
    root = Path(ref_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"reference folder {root} does not exist; pass a dataset folder or a folder of "
                        "<case>.nii.gz labels")
    try:
        layout = detect_layout(root)
    except DatasetError:
        if _holds_cases(root):  # a dataset, but a broken one (e.g. two layouts mixed): say why
            raise
        layout = None
    flat = _nifti_files(root)
    if layout is None:
        if not flat:
            raise UserError(
                f"no reference label in {root}: it is neither a dataset (BraTS case folders, or MSD imagesTr/ and "
                "labelsTr/) nor a folder of <case>.nii.gz label files; pass the dataset folder or the labels' folder")
        return Reference(root, flat, None)
    labelled = {c.case_id: Path(c.label) for c in discover_cases(root, layout.layout) if c.label is not None}
    if not labelled:
        raise UserError(f"no reference label in the dataset {root} ({LAYOUTS[layout.layout].title} layout): none of "
                        f"its cases has a label file {_LABEL_FILES[layout.layout]}; pass a labelled dataset")
    if flat:
        names = sorted(f.name for f in flat.values())
        logger.warning(
            "reference dataset %s (%s layout): ignoring %d NIfTI file(s) at its root (%s): the reference labels are "
            "its cases' %s files only; move files that are not part of the dataset out of it",
            root, LAYOUTS[layout.layout].title, len(names), ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""),
            _LABEL_FILES[layout.layout])
    return Reference(root, labelled, layout)


def reference_files(ref_dir: str | os.PathLike) -> dict[str, Path]:
    """``{case id: label file}`` of ``ref_dir``: a dataset's labelled cases, or a folder's ``<case>.nii.gz`` labels.

    See :func:`read_reference`: a dataset is read through its layout only, never through NIfTI files at its root.
    """
    return read_reference(ref_dir).files


def resolve_evaluation_scheme(scheme: str, reference: Reference) -> str:
    """The label scheme to score with: ``scheme`` itself, or for ``auto`` the reference dataset's layout's.

    An explicit BraTS-like scheme other than the layout's is used as asked, with a warning (the values
    are still checked strictly).

    Raises:
        UserError: an unknown scheme, or ``auto`` with a folder of labels (no layout tells the numbering);
            the message lists the values of its first file and the schemes they fit.
    """
    if scheme not in FOLDER_SCHEMES and not str(scheme).startswith(NNUNET_PREFIX):
        raise UserError(f"unknown scheme {scheme!r}; expected one of {', '.join(FOLDER_SCHEMES)} or "
                        f"{NNUNET_PREFIX}<dataset.json>")
    layout = reference.layout
    if scheme != "auto":
        if layout is not None and scheme in LABEL_SCHEMES and scheme != layout.label_scheme:
            logger.warning("scoring with scheme %s, although the reference dataset %s is in the %s layout (scheme %s)",
                           scheme, reference.root, LAYOUTS[layout.layout].title, layout.label_scheme)
        return scheme
    if layout is not None:
        return layout.label_scheme
    first = next(iter(sorted(reference.files.items())))[1]
    values = sorted(int(v) for v in np.unique(_load_labels(first)[0]) if v != 0)
    fits = [s for s in LABEL_SCHEMES if set(values) <= allowed_labels(s)]
    raise UserError(
        f"--scheme auto cannot tell the label numbering of {reference.root}: it is a folder of <case>.nii.gz labels, "
        f"not a dataset with a layout ({first.name} holds {values}, which fit {', '.join(fits) or 'no BraTS scheme'}); "
        "pass --scheme brats (ET 4), brats2023 (ET 3), msd (1 ED, 2 NET, 3 ET) or labels")


def check_evaluation_folders(pred_dir: str | os.PathLike, reference: Reference) -> Path:
    """Refuse a prediction folder that is, lies inside, or contains the reference folder.

    Predictions written into a dataset could be taken for its files (and the reference for predictions).

    Returns:
        ``pred_dir``, as given (user-expanded).

    Raises:
        UserError: the prediction folder is missing, or overlaps the reference folder.
    """
    pred_root = Path(pred_dir).expanduser()
    if not pred_root.is_dir():
        raise UserError(f"prediction folder {pred_root} does not exist; pass the inference output folder of "
                        "<case>.nii.gz files")
    pred, ref = pred_root.resolve(), reference.root.resolve()
    kind = "reference dataset folder" if reference.layout is not None else "reference folder"
    fix = "keep predictions in a folder of their own, outside the reference (e.g. runs/<name>/seg), and pass that"
    if pred == ref:
        raise UserError(f"the prediction folder {pred} is the {kind}: predictions would be scored against "
                        f"themselves or mixed with the labels; {fix}")
    if is_within(pred, ref):
        raise UserError(f"the prediction folder {pred} lies inside the {kind} {ref}: predictions must never be "
                        f"written among the reference files; {fix}")
    if is_within(ref, pred):
        raise UserError(f"the {kind} {ref} lies inside the prediction folder {pred}; {fix}")
    return pred_root


def _on_reference_grid(cid: str, pred: np.ndarray, pred_affine: np.ndarray, pred_path: Path, ref: np.ndarray,
                       ref_affine: np.ndarray, ref_path: Path) -> np.ndarray:
    """``pred`` on the reference's voxel grid: as it is, or reordered when it holds the same grid in another voxel
    orientation (LPS vs RAS, say); any other difference is refused with advice that keeps the image intact."""
    from nibabel.orientations import apply_orientation

    from pipeline.check import HEADER_ROUNDING, grid_distance, reorientation

    if pred.shape == ref.shape and np.allclose(pred_affine, ref_affine, rtol=0.0, atol=AFFINE_TOLERANCE):
        return pred
    transform = reorientation(pred.shape, pred_affine, ref.shape, ref_affine)
    if transform is not None:
        logger.info("case %s: prediction %s is stored in another voxel orientation than the reference: reordered "
                    "onto the reference's grid", cid, pred_path)
        return np.ascontiguousarray(apply_orientation(pred, transform))
    if pred.shape != ref.shape:
        raise UserError(f"case {cid}: prediction {pred_path} has shape {pred.shape} but reference {ref_path} has "
                        f"shape {ref.shape}; predictions must be written on the reference grid (resample onto it or "
                        "re-run inference)")
    if grid_distance(pred.shape, pred_affine, ref_affine) <= HEADER_ROUNDING:
        fix = "the headers differ by rounding only: copy the reference's affine (sform and qform) into the prediction"
    else:
        fix = "resample the prediction onto the reference's grid (nearest neighbour) or re-run inference on it"
    raise UserError(f"case {cid}: prediction {pred_path} and reference {ref_path} are on different grids (largest "
                    f"affine difference {np.abs(pred_affine - ref_affine).max():.4g}); {fix}")


def _load_labels(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(labels (H, W, D), affine (4, 4), spacing in mm)`` of a label file, read once, in its stored dtype."""
    image = nib.load(os.fspath(path))
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return data, np.asarray(image.affine, dtype=np.float64), spacing


def _json_safe(x: Any) -> Any:
    """NaN (a statistic over no value) -> None, so that ``summary.json`` is standard JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _stats(values: Iterable[float]) -> dict[str, float | int]:
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return {k: math.nan for k in ("mean", "std", "median", "q1", "q3", "min", "max")} | {"n": 0}
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def summarize(rows: Sequence[dict], scheme: str, n_cases: int) -> dict:
    """The summary dict (see :func:`evaluate_folders`) of long-form rows with a ``region`` key."""
    if scheme == "labels":
        names = sorted({r["region"] for r in rows}, key=lambda n: int(n.split("_", 1)[1]))
    else:
        names = list(describe(scheme).evaluated)
    regions = {
        name: {m: _stats(r[m] for r in rows if r["region"] == name) for m in SUMMARY_METRICS} for name in names
    }
    dices = [v["dice"]["mean"] for v in regions.values() if v["dice"]["n"]]
    return {
        "scheme": scheme,
        "cases": n_cases,
        "regions": regions,
        "mean_dice": float(np.mean(dices)) if dices else math.nan,
        "missing_predictions": [],
        "unmatched_predictions": [],
        "hd95_empty_penalty_mm": HD95_EMPTY_PENALTY_MM,
        "conventions": dict(CONVENTIONS),
    }


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    scheme: str = "brats",
    cases: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    *,
    out_option: str = "--eval_dir",
) -> dict:
    """Score every reference case against ``PRED_DIR/<case>.nii.gz``; write ``metrics.csv`` and ``summary.json``.

    Before anything is read or written: the prediction folder must not be, lie inside or contain the reference
    folder (:func:`check_evaluation_folders`); ``out_dir`` must hold no prediction or reference file and lie
    outside the reference dataset (:func:`pipeline.files.check_output_location`); at least one reference case
    must have a prediction. Each file is then read once. The spacing (mm) comes from the reference header's zooms.
    The three steps are functions of their own: :func:`pair_cases` (the refusals above), :func:`score_cases` and
    :func:`write_tables`.

    ``OUT_DIR/metrics.csv``: long form, one row per case and region, columns exactly
    ``case,region,dice,sensitivity,specificity,hd95,pred_voxels,ref_voxels`` (floats at full precision).
    ``OUT_DIR/summary.json``: ``{"scheme", "cases", "regions": {region: {metric: {"mean", "std", "median",
    "q1", "q3", "min", "max", "n"}}}, "mean_dice", "missing_predictions", "n_missing_predictions",
    "unmatched_predictions", "reference", "reference_layout", "hd95_empty_penalty_mm", "conventions"}``,
    metrics dice, sensitivity, specificity, hd95. Both files are written atomically.

    Args:
        pred_dir: folder of ``<case>.nii.gz`` (or ``.nii``) label maps, the inference output.
        ref_dir: a dataset folder, read through its layout (:func:`read_reference`), or a folder of
            ``<case>.nii.gz`` labels.
        out_dir: created if needed.
        scheme: ``auto`` (the reference dataset's layout's; a folder of labels needs an explicit scheme),
            ``brats``, ``brats2023``, ``msd`` or ``labels`` (see :func:`evaluate_case`).
        cases: only these case ids (e.g. a validation fold); each must have a reference.
        device: where to compute, see :func:`evaluate_case`.
        out_option: the option that chose ``out_dir``, named in a refusal (``--out`` on the command line).

    Returns:
        The summary dict written to ``summary.json`` (a statistic over no value is None, as in the file).
        A reference case without prediction is scored as an empty prediction and listed in
        ``missing_predictions`` (and counted in ``n_missing_predictions``).

    Raises:
        UserError (a ValueError): a folder is missing or overlaps another (see above), no reference case has a
            prediction, a requested case has no reference, a prediction's shape or affine differs from its
            reference's (the message names the case and both files), or a label value does not belong to
            ``scheme``. :class:`pipeline.datasets.DatasetError` for a dataset that cannot be read.
    """
    if scheme not in FOLDER_SCHEMES and not str(scheme).startswith(NNUNET_PREFIX):
        raise UserError(f"unknown scheme {scheme!r}; expected one of {', '.join(FOLDER_SCHEMES)} or "
                        f"{NNUNET_PREFIX}<dataset.json>")
    pairs = pair_cases(pred_dir, ref_dir, out_dir, cases, out_option=out_option)
    scheme = resolve_evaluation_scheme(scheme, pairs.reference)
    layout = pairs.reference.layout.layout if pairs.reference.layout is not None else None
    rows, missing = score_cases(pairs, scheme, device=device, layout=layout)

    summary = summarize(rows, scheme, len(pairs.refs))
    summary["missing_predictions"] = missing
    summary["n_missing_predictions"] = len(missing)
    summary["unmatched_predictions"] = pairs.unmatched
    summary["reference"] = str(pairs.reference.root)
    summary["reference_layout"] = layout or "labels folder"
    if missing:
        logger.warning("%d of %d case(s) have no prediction in %s and were scored as empty predictions",
                       len(missing), len(pairs.refs), pairs.pred_root)
    if pairs.unmatched:
        logger.warning("%d prediction(s) with no reference, not scored: %s", len(pairs.unmatched),
                       ", ".join(pairs.unmatched))
    return write_tables(out_dir, rows, summary)


@dataclass(frozen=True)
class CasePairs:
    """What :func:`pair_cases` found: the reference cases to score and the prediction files.

    ``refs`` ``{case id: reference label file}`` (the requested cases, or every labelled reference case);
    ``preds`` ``{case id: prediction file}``, every ``<case>.nii[.gz]`` directly in ``pred_root``, including those
    with no reference (:attr:`unmatched`).
    """

    reference: Reference
    pred_root: Path
    refs: dict[str, Path]
    preds: dict[str, Path]

    @property
    def unmatched(self) -> list[str]:
        """The predictions' case ids that have no reference case (not scored), sorted."""
        return sorted(set(self.preds) - set(self.reference.files))


def pair_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, out_dir: str | os.PathLike,
               cases: Sequence[str] | None = None, *, out_option: str = "--eval_dir") -> CasePairs:
    """Pair each reference case with its prediction ``PRED_DIR/<case>.nii.gz``, refusing what cannot be scored.

    Nothing is read but the folders' listings (and a dataset's layout): the reference through its layout
    (:func:`read_reference`), the prediction folder apart from it (:func:`check_evaluation_folders`), the output
    folder apart from both (:func:`pipeline.files.check_output_location`).

    Raises:
        UserError: a folder is missing or overlaps another, a requested case has no reference, or no reference
            case has a prediction (the folder and an expected file named). :class:`pipeline.datasets.DatasetError`
            for a dataset that cannot be read.
    """
    reference = read_reference(ref_dir)
    pred_root = check_evaluation_folders(pred_dir, reference)
    all_refs = reference.files
    preds = _nifti_files(pred_root)
    check_output_location(out_dir, [*preds.values(), *all_refs.values()], what="evaluation tables",
                          option=out_option, dataset_dir=reference.root if reference.layout is not None else None)
    refs = all_refs
    if cases is not None:
        unknown = [c for c in cases if c not in all_refs]
        if unknown:
            raise UserError(f"case(s) {unknown} have no reference label in {ref_dir}; check the case ids or the folder")
        refs = {c: all_refs[c] for c in cases}
    if refs and not any(cid in preds for cid in refs):
        first = sorted(refs)[0]
        found = (f"; it holds {len(preds)} NIfTI file(s) named after no reference case (e.g. {sorted(preds)[0]})"
                 if preds else "; it holds no .nii.gz file")
        raise UserError(f"no prediction in {pred_root} for any of the {len(refs)} reference case(s) (expected e.g. "
                        f"{pred_root / f'{first}.nii.gz'}){found}: pass the folder inference wrote its <case>.nii.gz "
                        "files to")
    return CasePairs(reference, pred_root, refs, preds)


def score_cases(pairs: CasePairs, scheme: str, *, device: torch.device | str | None = None,
                layout: str | None = None) -> tuple[list[dict], list[str]]:
    """Score every pair with :func:`evaluate_case`, each file read once, in case order.

    A prediction in another voxel orientation of the reference's grid is reordered onto it; a reference case
    without prediction is scored as an empty prediction (and logged).

    Returns:
        ``(rows, missing)``: one row per case and region (``{"case", "region", *METRIC_KEYS}``), and the case ids
        that had no prediction.

    Raises:
        UserError: a prediction on another grid, or a label value outside ``scheme`` (the case and both files named).
    """
    rows: list[dict] = []
    missing: list[str] = []
    for cid in sorted(pairs.refs):
        ref_path = pairs.refs[cid]
        ref, ref_affine, spacing = _load_labels(ref_path)
        pred_path = pairs.preds.get(cid)
        if pred_path is None:
            expected = pairs.pred_root / f"{cid}.nii.gz"
            logger.warning("case %s: no prediction %s; evaluated as an empty prediction", cid, expected)
            missing.append(cid)
            pred = np.zeros_like(ref)
        else:
            pred, pred_affine, _ = _load_labels(pred_path)
            pred = _on_reference_grid(cid, pred, pred_affine, pred_path, ref, ref_affine, ref_path)
        try:
            case_rows = evaluate_case(pred, ref, spacing, scheme=scheme, device=device, layout=layout)
        except ValueError as err:
            msg = f"case {cid} (prediction {pred_path or 'missing'}, reference {ref_path}): {err}"
            raise UserError(msg) from err
        rows.extend({"case": cid, **row} for row in case_rows)
    return rows, missing


def write_tables(out_dir: str | os.PathLike, rows: Sequence[dict], summary: dict) -> dict:
    """Write ``OUT_DIR/metrics.csv`` (``rows``, columns :data:`CSV_COLUMNS`, floats at full precision) and
    ``OUT_DIR/summary.json``, both atomically; return the summary as written (a NaN statistic becomes None)."""
    out = Path(out_dir).expanduser()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(row[k]) if isinstance(row[k], float) else row[k]) for k in CSV_COLUMNS})
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    summary = _json_safe(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


def _pm(stats: dict, digits: int) -> str:
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None or std is None or not (math.isfinite(mean) and math.isfinite(std)):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(summary: dict) -> str:
    """A plain-text table of a summary: one row per region, Dice/Sens/Spec/HD95 (mm) as ``mean ± std``."""
    width = max([10, *(len(name) + 2 for name in summary["regions"])])
    header = f"{'Region':<{width}}{'Dice':>18}{'Sens':>18}{'Spec':>18}{'HD95 (mm)':>20}"
    lines = [header, "-" * len(header)]
    for name, m in summary["regions"].items():
        cells = [_pm(m["dice"], 4), _pm(m["sensitivity"], 4), _pm(m["specificity"], 4), _pm(m["hd95"], 2)]
        lines.append(f"{name:<{width}}{cells[0]:>18}{cells[1]:>18}{cells[2]:>18}{cells[3]:>20}")
    mean_dice = summary.get("mean_dice")
    mean_text = f"{mean_dice:.4f}" if isinstance(mean_dice, float) and math.isfinite(mean_dice) else "n/a"
    missing = summary.get("missing_predictions") or []
    lines.append(f"mean Dice over regions: {mean_text} ({summary['cases']} cases, {len(missing)} without prediction, "
                 f"scheme {summary['scheme']})")
    if missing:
        lines.append(f"missing predictions (scored as empty): {len(missing)} of {summary['cases']} cases: "
                     f"{', '.join(missing)}")
    if summary.get("unmatched_predictions"):
        lines.append(f"predictions without reference (not scored): {', '.join(summary['unmatched_predictions'])}")
    return "\n".join(lines)
