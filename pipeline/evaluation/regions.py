"""Our (legacy) protocol: per case and region Dice, sensitivity, specificity, HD95, NSD and voxel counts,
``metrics.csv`` and ``summary.json``. Conventions (empty regions, statistics) are in `docs/metrics.md`."""

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

import numpy as np
import torch

from pipeline.core.errors import UserError
from pipeline.core.files import atomic_write_text
from pipeline.core.nifti import load_labels
from pipeline.data.check import scheme_hint
from pipeline.data.labels import NNUNET_PREFIX, allowed_labels, describe, region_masks
from pipeline.evaluation.metrics import HD95_EMPTY_PENALTY_MM, METRIC_KEYS, bounding_box, region_metrics
from pipeline.evaluation.reference import (
    FOLDER_SCHEMES,
    CasePairs,
    on_reference_grid,
    pair_cases,
)

logger = logging.getLogger(__name__)


#: What the readers of an evaluation's ``metrics.csv`` (box plot, pictures, report, comparison, the out-of-fold
#: table) call it when refusing another file (`pipeline.core.files.read_table`).
METRICS_TABLE = "an evaluation's metrics.csv (python -m pipeline evaluate PRED DATA --out DIR writes DIR/metrics.csv)"


#: BraTS region names in evaluation (and CSV/summary) order.
BRATS_EVAL_REGIONS: tuple[str, ...] = ("ET", "TC", "WT")


#: Columns of ``metrics.csv``, in order.
CSV_COLUMNS: tuple[str, ...] = ("case", "region", *METRIC_KEYS)


#: Metrics summarised in ``summary.json``.
SUMMARY_METRICS: tuple[str, ...] = ("dice", "sensitivity", "specificity", "hd95", "nsd")


CONVENTIONS: dict[str, str] = {
    "regions": "brats/brats2023: ET = ET label, TC = NCR + ET, WT = NCR + ED + ET; labels: one region per value",
    "dice": "2TP/(2TP+FP+FN); both empty -> 1, exactly one empty -> 0 (BraTS challenge)",
    "sensitivity": "TP/(TP+FN); empty reference -> 1 (no positive to miss)",
    "specificity": "TN/(TN+FP) over the whole image; no negative voxel in the reference -> 1",
    "hd95": (
        "MONAI compute_hausdorff_distance(percentile=95, spacing from the affine): max of the 95th percentiles "
        "of the two directed surface distances, in mm; both empty -> 0, exactly one empty -> 373.13 mm (BraTS)"
    ),
    "nsd": ("normalised surface Dice: the share of both surfaces within 1 mm of the other (NSD_TOLERANCE_MM, "
            "spacing from the affine); both empty -> 1, exactly one empty -> 0"),
    "missing_prediction": "evaluated as an empty prediction",
    "statistics": ("std is the sample standard deviation (ddof=1, as pandas and the official evaluation; NaN for one "
                   "case); q1/median/q3 by linear interpolation"),
}


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
        if not bool(torch.all(torch.isfinite(x))):
            raise ValueError(f"the {what} holds infinite or NaN values: a label map of whole numbers is expected")
        if not bool(torch.all(x == torch.round(x))):
            msg = f"the {what} holds non-integer values: a label map is expected, threshold probabilities first"
            raise ValueError(msg)
        return x.to(torch.int64)
    return x


def label_values_problem(values: Iterable[int], scheme: str, what: str, layout: str | None = None, *,
                         official: bool = False, case: str = "") -> str | None:
    """The message for label ``values`` outside ``scheme`` (None when they all fit), with the fix the scheme
    detector gives (`pipeline.data.check.scheme_hint`: the scheme the values and the layout's naming fit).

    Args:
        values: the label values found (background 0 may be among them).
        scheme: the scheme scored with.
        what: ``reference`` (or a file name), or ``prediction``: its reference (checked first) fits ``scheme``, so the
            fix is to write the prediction in it.
        layout: the reference dataset's layout, or None for a folder of labels.
        case: the case id, whose names may not tell the numbering (BraTS-PED: the hint names brats2023 or ped).
        official: for the official protocol, which scores a challenge's numbering only (no ``--scheme labels``).
    """
    found = {int(v) for v in values}
    allowed = allowed_labels(scheme)
    bad = sorted(found - allowed)
    if not bad:
        return None
    if what == "prediction":  # the reference, checked first, is in this scheme: the prediction is not in its numbering
        hint = (f"; the reference is numbered in scheme {scheme}: the prediction must be too. Inference writes the "
                "numbering of the data it segments unless given a label_scheme override (then that scheme's, "
                "recorded in provenance.json), so segment the reference dataset's own images without one (python -m "
                f"pipeline infer -i REFERENCE_DATASET --run RUN), or relabel the prediction to scheme {scheme}")
        return (f"the {what} holds label value(s) {bad} that scheme {scheme!r} does not use "
                f"(allowed {sorted(allowed)}){hint}")
    hint = scheme_hint(found, scheme, layout, option="--scheme", case=case)
    if hint.startswith(". Relabel") and not official:
        hint = "; score every value with --scheme labels (legacy protocol), or relabel the file"
    return (f"the {what} holds label value(s) {bad} that scheme {scheme!r} does not use "
            f"(allowed {sorted(allowed)}){hint}")

def _check_scheme_values(x: torch.Tensor, scheme: str, what: str, layout: str | None = None, case: str = "") -> None:
    allowed = torch.tensor(sorted(allowed_labels(scheme)), dtype=x.dtype, device=x.device)
    bad = x[~torch.isin(x, allowed)]
    if bad.numel():
        msg = label_values_problem(torch.unique(bad).tolist(), scheme, what, layout, case=case)
        raise UserError(msg)


def _region_masks(x: torch.Tensor, scheme: str, values: Sequence[int] = ()) -> torch.Tensor:
    """Label map ``(H, W, D)`` -> bool ``(R, H, W, D)``: the scheme's evaluated regions (ET, TC, WT for the BraTS
    schemes; `pipeline.data.labels.Description.evaluated`) or, under ``labels``, one channel per value."""
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
    ignore: int | None = None,
    case: str = "",
) -> list[dict]:
    """Metrics of every region of one case.

    Label maps are cut to the bounding box of their non-zero voxels first (everything outside is background
    in both, so it only adds true negatives, which are counted), then the regions are scored by
    `pipeline.evaluation.metrics.region_metrics`: exact counts, BraTS empty-region rules, MONAI's HD95 in mm.
    Everything runs on the tensors' device; on CUDA nothing goes through NumPy.

    Args:
        pred: the prediction, ``(H, W, D)`` label map (any integer dtype, or floats holding whole numbers);
            under a BraTS scheme also ``(3, H, W, D)`` binary region channels in the network's order
            TC, WT, ET (`pipeline.data.labels.REGIONS`).
        ref: the reference, same shape and kind as ``pred``.
        spacing: voxel size in mm along each spatial axis (the affine's, `load_labels`), one number, or None for 1.
        scheme: ``brats`` (NCR 1, ED 2, ET 4), ``brats2023`` (ET 3), ``msd`` (ED 1, NET 2, ET 3), ``ped`` (ET 1,
            NET 2, CC 3, ED 4), any other scheme of `pipeline.data.labels.describe`, or ``labels`` (every non-zero
            value).
        device: where to compute (e.g. ``"cuda"``); None: ``pred``'s device if it is a tensor, else the CPU.
        layout: the reference dataset's layout, named in the fix when a label value does not fit ``scheme``.
        case: the case id, for that fix too (a BraTS-PED case's names do not tell its numbering).
        ignore: under ``labels``, the value of the reference data's ``ignore`` label (`Reference.ignore`): its
            voxels are scored in neither map and it is no class (a scheme's own ``ignore`` is read from it).

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
    n_voxels, excluded = p.numel(), 0
    box = bounding_box((p != 0) | (r != 0))
    if box is None:
        pc = rc = torch.zeros((1, 1, 1), dtype=torch.uint8, device=p.device)
    else:
        pc, rc = _integer_labels(p[box], "prediction"), _integer_labels(r[box], "reference")

    if scheme != "labels":
        _check_scheme_values(rc, scheme, "reference", layout, case)  # the reference first: it tells the fix
        _check_scheme_values(pc, scheme, "prediction", layout, case)
        ignore = desc.ignore
    if ignore is not None and bool((pc == ignore).any()):  # a prediction says what each voxel is, never "unannotated"
        raise UserError(f"the prediction holds the value {ignore}, the data's ignore label, which marks unannotated "
                        "voxels of a reference and is no class: write every predicted voxel as a class or background "
                        "(0); the pipeline's own predictions never hold it")
    if ignore is not None:  # nnU-Net's ignore label: those voxels are scored in neither (nor counted as negatives)
        scored = rc != ignore
        excluded = int((~scored).sum())
        pc, rc = torch.where(scored, pc, torch.zeros_like(pc)), torch.where(scored, rc, torch.zeros_like(rc))
    if scheme == "labels":
        # every value either holds but the data's ignore value, which is never a class (nnU-Net scores it in none)
        values = sorted((_spatial_values(pc) | _spatial_values(rc)) - ({ignore} if ignore is not None else set()))
        names = [f"label_{v}" for v in values]
    else:
        values, names = [], list(desc.evaluated)
    if not names:
        return []
    rows = region_metrics(
        _region_masks(pc, scheme, values), _region_masks(rc, scheme, values), spacing, n_voxels=n_voxels,
        excluded=excluded)
    return [{"region": name, **row} for name, row in zip(names, rows, strict=True)]


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
        "std": float(a.std(ddof=1)) if a.size > 1 else math.nan,
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def summarize(rows: Sequence[dict], scheme: str, n_cases: int) -> dict:
    """The summary dict (see `evaluate_folders`) of long-form rows with a ``region`` key."""
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
        "conventions": {**CONVENTIONS, "regions": regions_convention(scheme)},
    }


def regions_convention(scheme: str) -> str:
    """What each region of ``scheme`` is, by its label values (`Description.evaluated`), for ``summary.json``."""
    if scheme == "labels":
        return "labels: one region per non-zero value (an nnU-Net reference's ignore value excluded)"
    desc = describe(scheme)
    return f"{desc.name}: " + ", ".join(f"{r} = labels {list(v)}" for r, v in desc.evaluated.items()) + (
        f"; label {desc.ignore} (ignore) scored in neither" if desc.ignore is not None else "")


def dice_line(summary: dict) -> str:
    """``mean Dice 0.873 (ET 0.812, TC 0.861, WT 0.946)`` of a legacy summary (`summarize`, or its summary.json):
    its mean and the mean of every region it evaluated, in its order (the scheme's `Description.evaluated`; the
    values under ``labels``); ``n/a`` for a region no case had."""
    def number(x: object) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    regions = ", ".join(f"{r} {number(v['dice']['mean'])}" for r, v in summary["regions"].items())
    return f"mean Dice {number(summary['mean_dice'])} ({regions})"


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    scheme: str = "brats",
    cases: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    *,
    out_option: str = "--eval_dir",
    allow_mixed: bool | str = False,
    pairs: CasePairs | None = None,
) -> dict:
    """Score every reference case against ``PRED_DIR/<case>.nii.gz``; write ``metrics.csv`` and ``summary.json``.

    ``pairs``: the cases `pair_cases` already paired for these folders (`pipeline.evaluation.evaluate.evaluate`
    pairs them before it holds the output folder); None pairs them here.

    Before anything is read or written: the prediction folder must not be, lie inside or contain the reference
    folder (`check_evaluation_folders`); ``out_dir`` must hold no prediction or reference file and lie
    outside the reference dataset (`pipeline.core.files.check_output_location`); at least one reference case
    must have a prediction. Each file is then read once. The spacing (mm) comes from the reference's affine
    (`load_labels`).
    The three steps are functions of their own: `pair_cases` (the refusals above), `score_cases` and
    `write_tables`.

    ``OUT_DIR/metrics.csv``: long form, one row per case and region, columns exactly
    ``case,region,dice,sensitivity,specificity,hd95,nsd,pred_voxels,ref_voxels`` (floats at full precision).
    ``OUT_DIR/summary.json``: ``{"scheme", "cases", "regions": {region: {metric: {"mean", "std", "median",
    "q1", "q3", "min", "max", "n"}}}, "mean_dice", "missing_predictions", "n_missing_predictions",
    "unmatched_predictions", "reference", "reference_layout", "case_ids", "inputs_state", "hd95_empty_penalty_mm",
    "conventions"}``,
    metrics dice, sensitivity, specificity, hd95, nsd. Both files are written atomically.

    Args:
        pred_dir: folder of ``<case>.nii.gz`` (or ``.nii``) label maps, the inference output.
        ref_dir: a dataset folder, read through its layout (`read_reference`), or a folder of
            ``<case>.nii.gz`` labels.
        out_dir: created if needed.
        scheme: ``auto`` (the reference dataset's layout's; a folder of labels and BraTS-PED cases need an explicit
            scheme), ``brats``, ``brats2023``, ``brats2024``, ``msd``, ``ped`` or ``labels`` (see `evaluate_case`).
        cases: only these case ids (e.g. a validation fold); each must have a reference.
        device: where to compute, see `evaluate_case`.
        out_option: the option that chose ``out_dir``, named in a refusal (``--out`` on the command line).

    Returns:
        The summary dict written to ``summary.json`` (a statistic over no value is None, as in the file).
        A reference case without prediction is scored as an empty prediction and listed in
        ``missing_predictions`` (and counted in ``n_missing_predictions``).

    Raises:
        UserError (a ValueError): a folder is missing or overlaps another (see above), no reference case has a
            prediction, a requested case has no reference, a prediction's shape or affine differs from its
            reference's (the message names the case and both files), or a label value does not belong to
            ``scheme``. `pipeline.data.layouts.DatasetError` for a dataset that cannot be read.
    """
    if scheme not in FOLDER_SCHEMES and not str(scheme).startswith(NNUNET_PREFIX):
        raise UserError(f"unknown scheme {scheme!r}; expected one of {', '.join(FOLDER_SCHEMES)} or "
                        f"{NNUNET_PREFIX}<dataset.json>")
    pairs = pairs or pair_cases(pred_dir, ref_dir, out_dir, cases, out_option=out_option, allow_mixed=allow_mixed)
    scheme = pairs.scoring_scheme(scheme)  # resolved; the numbering the predictions were written in checked
    layout = pairs.reference.layout.layout if pairs.reference.layout is not None else None
    rows, missing = score_cases(pairs, scheme, device=device, layout=layout)

    summary = summarize(rows, scheme, len(pairs.refs))
    summary["missing_predictions"] = missing
    summary["models"] = {m: len(c) for m, c in pairs.models.items()}
    summary["n_missing_predictions"] = len(missing)
    summary["unmatched_predictions"] = pairs.unmatched
    summary["reference"] = str(pairs.reference.root)
    summary["predictions"] = str(pairs.pred_root)
    summary["reference_layout"] = layout or "labels folder"
    summary["case_ids"] = sorted(pairs.refs)  # what was scored: another subset is another evaluation
    summary["inputs_state"] = pairs.inputs_state()  # the files as scored (a table of files since rewritten is stale)
    if missing:
        logger.warning("%d of %d case(s) have no prediction in %s and were scored as empty predictions",
                       len(missing), len(pairs.refs), pairs.pred_root)
    if pairs.unmatched:
        logger.warning("%d prediction(s) with no reference, not scored: %s", len(pairs.unmatched),
                       ", ".join(pairs.unmatched))
    return write_tables(out_dir, rows, summary)


def score_cases(pairs: CasePairs, scheme: str, *, device: torch.device | str | None = None,
                layout: str | None = None) -> tuple[list[dict], list[str]]:
    """Score every pair with `evaluate_case`, each file read once, in case order.

    A prediction in another voxel orientation of the reference's grid is reordered onto it; a reference case
    without prediction is scored as an empty prediction (and logged).

    Returns:
        ``(rows, missing)``: one row per case and region (``{"case", "region", *METRIC_KEYS}``), and the case ids
        that had no prediction.

    Raises:
        UserError: a prediction on another grid, or a label value outside ``scheme`` (the case and both files named).
    """
    ignore = pairs.reference.ignore if scheme == "labels" else None  # the data's own, by its description
    rows: list[dict] = []
    missing: list[str] = []
    for cid in sorted(pairs.refs):
        ref_path = pairs.refs[cid]
        ref, ref_affine, spacing = load_labels(ref_path)
        pred_path = pairs.preds.get(cid)
        if pred_path is None:
            expected = pairs.pred_root / f"{cid}.nii.gz"
            logger.warning("case %s: no prediction %s; evaluated as an empty prediction", cid, expected)
            missing.append(cid)
            pred = np.zeros_like(ref)
        else:
            pred, pred_affine, _ = load_labels(pred_path)
            pred = on_reference_grid(cid, pred, pred_affine, pred_path, ref, ref_affine, ref_path)
        try:
            case_rows = evaluate_case(pred, ref, spacing, scheme=scheme, device=device, layout=layout,
                                      ignore=ignore, case=cid)
        except ValueError as err:
            msg = f"case {cid} (prediction {pred_path or 'missing'}, reference {ref_path}): {err}"
            raise UserError(msg) from err
        rows.extend({"case": cid, **row} for row in case_rows)
    return rows, missing


def write_tables(out_dir: str | os.PathLike, rows: Sequence[dict], summary: dict) -> dict:
    """Write ``OUT_DIR/metrics.csv`` (``rows``, columns `CSV_COLUMNS`, floats at full precision) and
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
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):  # one case: no spread to show
        return f"{mean:.{digits}f}"
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
