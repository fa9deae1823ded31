"""BraTS region evaluation: per case and region Dice, sensitivity, specificity, HD95 and voxel counts.

``python -m pipeline evaluate PRED_DIR REF_DIR --out OUT_DIR [--scheme brats|brats2023|labels]`` calls
:func:`evaluate_folders` and prints :func:`format_table`; the bundle's evaluation calls :func:`evaluate_case`.

Regions, by label scheme (:mod:`pipeline.labels`):
    ``brats``/``brats2023``  ET (enhancing tumour), TC (tumour core = NCR + ET), WT (whole tumour = NCR + ED + ET),
                             in that order, as BraTS papers print them; ET is label 4 (``brats``) or 3 (``brats2023``).
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
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from pipeline.datasets import NIFTI_EXTENSIONS, discover_cases
from pipeline.labels import LABEL_SCHEMES, scheme_labels
from pipeline.metrics import HD95_EMPTY_PENALTY_MM, METRIC_KEYS, bounding_box, region_metrics

logger = logging.getLogger(__name__)

#: Label schemes accepted by :func:`evaluate_case` and the ``evaluate`` command.
SCHEMES: tuple[str, ...] = (*LABEL_SCHEMES, "labels")

#: BraTS region names in evaluation (and CSV/summary) order.
BRATS_EVAL_REGIONS: tuple[str, ...] = ("ET", "TC", "WT")

#: Columns of ``metrics.csv``, in order.
CSV_COLUMNS: tuple[str, ...] = ("case", "region", *METRIC_KEYS)

#: Metrics summarised in ``summary.json``.
SUMMARY_METRICS: tuple[str, ...] = ("dice", "sensitivity", "specificity", "hd95")

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


def _check_scheme_values(x: torch.Tensor, scheme: str, what: str) -> None:
    allowed = torch.tensor(sorted({0, *scheme_labels(scheme).values()}), dtype=x.dtype, device=x.device)
    bad = x[~torch.isin(x, allowed)]
    if bad.numel():
        values = sorted(int(v) for v in torch.unique(bad).tolist())
        other = [s for s in LABEL_SCHEMES if s != scheme and set(values) <= {0, *scheme_labels(s).values()}]
        hint = f"; the values fit --scheme {other[0]}" if other else "; use --scheme labels to score every value"
        msg = (
            f"the {what} holds label value(s) {values} that scheme {scheme!r} does not use "
            f"(allowed {sorted(allowed.tolist())}){hint}"
        )
        raise ValueError(msg)


def _region_masks(x: torch.Tensor, scheme: str, values: Sequence[int] = ()) -> torch.Tensor:
    """Label map ``(H, W, D)`` -> bool ``(R, H, W, D)``: ET, TC, WT (BraTS schemes) or one channel per value."""
    if scheme == "labels":
        if not values:
            return torch.zeros((0, *x.shape), dtype=torch.bool, device=x.device)
        return torch.stack([x == v for v in values])
    lab = scheme_labels(scheme)
    et = x == lab["ET"]
    tc = et | (x == lab["NCR"])
    wt = tc | (x == lab["ED"])
    return torch.stack([et, tc, wt])


def _spatial_values(x: torch.Tensor) -> set[int]:
    return {int(v) for v in torch.unique(x).tolist()} - {0}


def evaluate_case(
    pred: np.ndarray | torch.Tensor,
    ref: np.ndarray | torch.Tensor,
    spacing: float | Sequence[float] | None,
    scheme: str = "brats",
    device: torch.device | str | None = None,
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
        scheme: ``brats`` (NCR 1, ED 2, ET 4), ``brats2023`` (ET 3) or ``labels`` (every non-zero value).
        device: where to compute (e.g. ``"cuda"``); None: ``pred``'s device if it is a tensor, else the CPU.

    Returns:
        One dict per region: ``region`` (ET, TC, WT; or ``label_<v>``), ``dice``, ``sensitivity``,
        ``specificity``, ``hd95`` (mm) as floats, ``pred_voxels``, ``ref_voxels`` as ints. Under ``labels``,
        a value absent from both gives no row.

    Raises:
        ValueError: unknown scheme, shapes differ, non-integer labels, or label values outside the scheme.
    """
    if scheme not in SCHEMES:
        msg = f"unknown scheme {scheme!r}; expected one of {list(SCHEMES)}"
        raise ValueError(msg)
    if device is None and isinstance(ref, torch.Tensor) and not isinstance(pred, torch.Tensor):
        device = ref.device
    p = _as_tensor(pred, device)
    r = _as_tensor(ref, p.device)
    if p.shape != r.shape:
        msg = f"prediction shape {tuple(p.shape)} differs from reference shape {tuple(r.shape)}"
        raise ValueError(msg)

    if scheme != "labels" and p.ndim == 4 and p.shape[0] == 3:  # network-order region channels TC, WT, ET
        order = [2, 0, 1]  # -> ET, TC, WT
        rows = region_metrics(p[order] != 0, r[order] != 0, spacing)
        return [{"region": name, **row} for name, row in zip(BRATS_EVAL_REGIONS, rows, strict=True)]

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
        _check_scheme_values(pc, scheme, "prediction")
        _check_scheme_values(rc, scheme, "reference")
        values, names = [], list(BRATS_EVAL_REGIONS)
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


def reference_files(ref_dir: str | os.PathLike) -> dict[str, Path]:
    """``{case id: label file}``: the NIfTI files directly in ``ref_dir``, else the labelled cases of a dataset.

    A folder holding ``<case>.nii[.gz]`` files is a folder of labels (case id = file name without extension);
    any other folder is read as a dataset by :func:`pipeline.datasets.discover_cases` and its cases with a
    ``_seg`` file are used.
    """
    root = Path(ref_dir).expanduser()
    if not root.is_dir():
        msg = f"reference folder {root} does not exist; pass a dataset folder or a folder of <case>.nii.gz labels"
        raise ValueError(msg)
    files = _nifti_files(root)
    if files:
        return files
    labelled = {c.case_id: Path(c.label) for c in discover_cases(root) if c.label is not None}
    if not labelled:
        msg = f"no reference label in {root}: its cases have no <case>_seg.nii.gz file"
        raise ValueError(msg)
    return labelled


def _load_labels(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(labels (H, W, D), affine (4, 4), spacing in mm)`` of a label file, read once, in its stored dtype."""
    image = nib.load(os.fspath(path))
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return data, np.asarray(image.affine, dtype=np.float64), spacing


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
        names = list(BRATS_EVAL_REGIONS)
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
) -> dict:
    """Score every reference case against ``PRED_DIR/<case>.nii.gz``; write ``metrics.csv`` and ``summary.json``.

    Each file is read once. The spacing (mm) comes from the reference header's zooms.

    ``OUT_DIR/metrics.csv``: long form, one row per case and region, columns exactly
    ``case,region,dice,sensitivity,specificity,hd95,pred_voxels,ref_voxels`` (floats at full precision).
    ``OUT_DIR/summary.json``: ``{"scheme", "cases", "regions": {region: {metric: {"mean", "std", "median",
    "q1", "q3", "min", "max", "n"}}}, "mean_dice", "missing_predictions", "unmatched_predictions",
    "hd95_empty_penalty_mm", "conventions"}``, metrics dice, sensitivity, specificity, hd95. Both files are
    written atomically (a temporary file, then ``os.replace``).

    Args:
        pred_dir: folder of ``<case>.nii.gz`` (or ``.nii``) label maps, the inference output.
        ref_dir: a dataset folder (:func:`pipeline.datasets.discover_cases`) or a folder of ``<case>.nii.gz`` labels.
        out_dir: created if needed.
        scheme: ``brats``, ``brats2023`` or ``labels`` (see :func:`evaluate_case`).
        cases: only these case ids (e.g. a validation fold); each must have a reference.
        device: where to compute, see :func:`evaluate_case`.

    Returns:
        The summary dict written to ``summary.json`` (a statistic over no value is None, as in the file).

    Raises:
        ValueError: a folder is missing, a requested case has no reference, or a prediction's shape or affine
            differs from its reference's (the message names the case and both files), or a label value does
            not belong to ``scheme``.
    """
    if scheme not in SCHEMES:
        msg = f"unknown scheme {scheme!r}; expected one of {list(SCHEMES)}"
        raise ValueError(msg)
    pred_root = Path(pred_dir).expanduser()
    if not pred_root.is_dir():
        msg = f"prediction folder {pred_root} does not exist; pass the inference output folder of <case>.nii.gz files"
        raise ValueError(msg)
    all_refs = reference_files(ref_dir)
    preds = _nifti_files(pred_root)
    refs = all_refs
    if cases is not None:
        unknown = [c for c in cases if c not in all_refs]
        if unknown:
            msg = f"case(s) {unknown} have no reference label in {ref_dir}; check the case ids or the folder"
            raise ValueError(msg)
        refs = {c: all_refs[c] for c in cases}
    unmatched = sorted(set(preds) - set(all_refs))

    rows: list[dict] = []
    missing: list[str] = []
    for cid in sorted(refs):
        ref_path = refs[cid]
        ref, ref_affine, spacing = _load_labels(ref_path)
        pred_path = preds.get(cid)
        if pred_path is None:
            expected = pred_root / f"{cid}.nii.gz"
            logger.warning("case %s: no prediction %s; evaluated as an empty prediction", cid, expected)
            missing.append(cid)
            pred = np.zeros_like(ref)
        else:
            pred, pred_affine, _ = _load_labels(pred_path)
            if pred.shape != ref.shape:
                msg = (
                    f"case {cid}: prediction {pred_path} has shape {pred.shape} but reference {ref_path} has shape "
                    f"{ref.shape}; predictions must be written on the reference grid (resample or re-run inference)"
                )
                raise ValueError(msg)
            if not np.allclose(pred_affine, ref_affine, rtol=0.0, atol=AFFINE_TOLERANCE):
                msg = (
                    f"case {cid}: prediction {pred_path} and reference {ref_path} have different affines "
                    f"(largest difference {np.abs(pred_affine - ref_affine).max():.4g} > {AFFINE_TOLERANCE}); "
                    "write the prediction with the reference's affine (e.g. copy its header) or resample it"
                )
                raise ValueError(msg)
        try:
            case_rows = evaluate_case(pred, ref, spacing, scheme=scheme, device=device)
        except ValueError as err:
            msg = f"case {cid} (prediction {pred_path or 'missing'}, reference {ref_path}): {err}"
            raise ValueError(msg) from err
        rows.extend({"case": cid, **row} for row in case_rows)

    summary = summarize(rows, scheme, len(refs))
    summary["missing_predictions"] = missing
    summary["unmatched_predictions"] = unmatched
    if unmatched:
        logger.warning("%d prediction(s) with no reference, not scored: %s", len(unmatched), ", ".join(unmatched))

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(row[k]) if isinstance(row[k], float) else row[k]) for k in CSV_COLUMNS})
    _atomic_write(out / "metrics.csv", buf.getvalue())
    summary = _json_safe(summary)
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


def _pm(stats: dict, digits: int) -> str:
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None or std is None or not (math.isfinite(mean) and math.isfinite(std)):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(summary: dict) -> str:
    """A plain-text table of a summary: one row per region, Dice/Sens/Spec/HD95 (mm) as ``mean ± std``."""
    header = f"{'Region':<10}{'Dice':>18}{'Sens':>18}{'Spec':>18}{'HD95 (mm)':>20}"
    lines = [header, "-" * len(header)]
    for name, m in summary["regions"].items():
        cells = [_pm(m["dice"], 4), _pm(m["sensitivity"], 4), _pm(m["specificity"], 4), _pm(m["hd95"], 2)]
        lines.append(f"{name:<10}{cells[0]:>18}{cells[1]:>18}{cells[2]:>18}{cells[3]:>20}")
    mean_dice = summary.get("mean_dice")
    mean_text = f"{mean_dice:.4f}" if isinstance(mean_dice, float) and math.isfinite(mean_dice) else "n/a"
    lines.append(f"mean Dice over regions: {mean_text} ({summary['cases']} cases, scheme {summary['scheme']})")
    if summary.get("missing_predictions"):
        missing = summary["missing_predictions"]
        lines.append(f"missing predictions (scored as empty): {len(missing)}: {', '.join(missing)}")
    if summary.get("unmatched_predictions"):
        lines.append(f"predictions without reference (not scored): {', '.join(summary['unmatched_predictions'])}")
    return "\n".join(lines)
