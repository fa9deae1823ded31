"""Pictures: training curves, per-case overlays in three planes, and the box plot of Dice per region.

All functions write a PNG and return its path; they use matplotlib's non-interactive Agg backend, so they
run on a machine without a display. Volumes are shown in RAS orientation (``nib.as_closest_canonical``),
axial slices with anterior up, as a radiologist scrolls them, whatever the file's voxel order.

Region colours are the viewers' colours of the evaluation's scheme (`pipeline.data.colours`: ET yellow, TC red,
WT green for BraTS), the same in the overlays and the box plot; under the ``labels`` scheme label value ``v`` takes a
colour of its own in every picture (`pipeline.core.figures.region_colour`: tab20, 20 values apart).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.patches
import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import OrientationError

from pipeline.core.errors import UserError
from pipeline.core.figures import drawn_here, plt, region_colour, save_figure
from pipeline.core.files import atomic_write_text, column_numbers, holding, read_json, read_table
from pipeline.core.kinds import kinds_in
from pipeline.core.nifti import load_labels, nifti_files, read_voxels
from pipeline.data.colours import region_colours, scheme_colours
from pipeline.data.labels import NNUNET_PREFIX, canonical_channel, describe, region_masks
from pipeline.evaluation.reference import (
    FOLDER_SCHEMES,
    OVERLAYS,
    Reference,
    check_evaluation_folders,
    claim_output,
    evaluation_record,
    read_reference,
    refuse_rescored,
    scoring_scheme,
)
from pipeline.evaluation.regions import METRICS_TABLE, label_values_problem

logger = logging.getLogger(__name__)


def plot_dice_boxplot(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, metric: str = "dice",
                      name: str = "", scheme: str | None = None) -> Path:
    """Box plot of ``metric`` per region from the evaluation's long-form ``metrics.csv``, one dot per case;
    ``name`` (the run or algorithm) in the title; dots in the colours of ``scheme`` (by default the one the
    evaluation beside the table recorded, `pipeline.data.colours.scheme_colours`)."""
    if scheme is None:
        scheme = (evaluation_record(Path(metrics_csv).parent) or {}).get("scheme")
    colours = scheme_colours(scheme)
    rows = read_table(metrics_csv, ("case", "region", metric), METRICS_TABLE)
    if not rows:
        raise UserError(f"{metrics_csv} holds no case: nothing to draw")
    regions = list(dict.fromkeys(row["region"] for row in rows))  # the evaluation's order (the description's)
    values = column_numbers(rows, metric, metrics_csv)
    data = [[v for row, v in zip(rows, values, strict=True) if row["region"] == r and not math.isnan(v)]
            for r in regions]
    fig, ax = plt.subplots(figsize=(1.6 * len(regions) + 2, 4))
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(regions) + 1), regions)
    rng = np.random.default_rng(0)  # fixed jitter: the same CSV always gives the same picture
    for i, (region, values) in enumerate(zip(regions, data, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=14, alpha=0.8, edgecolors="black",
                   linewidths=0.4, color=region_colour(region, i, colours), zorder=3)
    ax.set_ylabel(metric)
    if metric in ("dice", "sensitivity", "specificity"):
        ax.set_ylim(-0.02, 1.02)
    n = len(data[0]) if data else 0
    ax.set_title(f"{name + ': ' if name else ''}{metric} per region ({n} cases)")
    return save_figure(fig, out_png, dpi=150)


def _canonical(path: str | os.PathLike | tuple[str | os.PathLike, int | None]) -> np.ndarray:
    """A volume in RAS voxel order; ``(path, c)`` picks channel ``c`` of a 4D file (MSD's images)."""
    path, channel = path if isinstance(path, tuple) else (path, None)
    try:
        image = nib.load(os.fspath(path))
        image = nib.Nifti1Image(read_voxels(path), image.affine, image.header)  # the whole gzip stream checked
        volume = np.asarray(nib.as_closest_canonical(image).dataobj)
        if volume.ndim != (3 if channel is None else 4):
            raise ValueError(f"shape {volume.shape}: expected a {'3D' if channel is None else '4D'} volume")
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError, OrientationError) as e:
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, gzip.BadGzipFile):
            raise  # a disk's error, not the file's content: the error funnel names it
        raise UserError(f"{path} cannot be drawn ({type(e).__name__}: {str(e)[:120]}); check the case with: "
                        "python -m pipeline check") from None
    return volume if channel is None else volume[..., channel]


def tumour_centre(label: np.ndarray) -> tuple[int, int, int]:
    """Voxel of the whole tumour's centre of mass in ``label`` ``(H, W, D)``; the volume centre when empty."""
    idx = np.argwhere(label > 0)
    if idx.size == 0:
        return tuple(s // 2 for s in label.shape)
    return tuple(int(round(c)) for c in idx.mean(axis=0))


def _planes(volume: np.ndarray, centre: Sequence[int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through ``centre`` of a RAS volume, oriented for display."""
    x, y, z = centre
    return [volume[:, :, z].T, volume[:, y, :].T, volume[x, :, :].T]


#: The markers at the (left, right, bottom, top) edges of each plane as `_planes` orients it (``origin="lower"``,
#: RAS voxels): the patient's left on the left, as neurologists view (the legend says so).
MARKERS = {"axial": ("L", "R", "P", "A"), "coronal": ("L", "R", "I", "S"), "sagittal": ("P", "A", "I", "S")}


def brain_box(volume: np.ndarray, margin: int = 4) -> tuple[slice, slice, slice]:
    """The bounding box of the non-zero voxels of ``volume`` ``(H, W, D)`` (the skull-stripped brain), widened by
    ``margin`` voxels; the whole volume when it is empty."""
    idx = np.argwhere(volume != 0)
    if idx.size == 0:
        return tuple(slice(0, n) for n in volume.shape)  # type: ignore[return-value]
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return tuple(slice(max(0, int(a) - margin), min(n, int(b) + margin))  # type: ignore[return-value]
                 for a, b, n in zip(lo, hi, volume.shape, strict=True))


def _contour_regions(labels: dict[str, np.ndarray], scheme: str,
                     ignore: int | None = None) -> tuple[list[tuple[str, str]], dict[str, list]]:
    """``([(region, colour)], {which: [mask per region]})``: the evaluated regions of a scheme in the viewers'
    colours (`pipeline.data.colours`), largest first, or one region per non-zero value present in any of
    ``labels`` under ``labels``."""
    if scheme == "labels":
        values = sorted(set().union(*(np.unique(lab).tolist() for lab in labels.values())) - {0, ignore})
        names = [(f"label_{v:g}", region_colour(f"label_{v:g}")) for v in values]  # by value, as the box plot
        return names, {which: [lab == v for v in values] for which, lab in labels.items()}
    evaluated = describe(scheme).evaluated  # the regions the evaluation reports
    colours = region_colours(scheme)
    order = sorted(evaluated, key=lambda r: -len(evaluated[r]))  # filled largest first, the smaller on top
    names = [(r, region_colour(r, i, colours)) for i, r in enumerate(order)]
    masks = {which: list(region_masks(lab, {r: evaluated[r] for r in order})) for which, lab in labels.items()}
    return names, masks


def _mark(ax: plt.Axes, plane: str) -> None:
    """Write the plane's orientation letters at its edges."""
    left, right, bottom, top = MARKERS[plane]
    style = {"color": "white", "fontsize": 8, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)


def plot_case_overlay(images: dict[str, str | os.PathLike | tuple], out_png: str | os.PathLike,
                      reference: str | os.PathLike | None = None, prediction: str | os.PathLike | None = None,
                      scheme: str = "brats", title: str = "", ignore: int | None = None) -> Path:
    """Each region over FLAIR and T1ce, in three planes through the tumour's centre, cropped to the brain: the
    reference filled at low opacity, the prediction as a thick outline, in the viewers' colours; orientation
    letters at the edges; 2x resolution (200 dpi).

    Args:
        images: ``{"FLAIR": path, "T1ce": path}`` (any contrasts; one row each); a value may also be
            ``(path, channel)`` for one channel of a 4D file.
        reference, prediction: label files ``(H, W, D)`` on the images' grid; either may be ``None``.
        scheme: the label scheme of both label files (``brats``: ET = 4, ``brats2023``: ET = 3, ``msd``: 1 ED,
            2 NET, 3 ET; ``labels``: one region per label value).
        title: the picture's title (the run, the case and its rank, by `plot_evaluation`).
        ignore: under ``labels``, the reference data's ``ignore`` value (`Reference.ignore`): not drawn as a
            region (the unannotated voxels are scored in none).
    """
    labels = {name: _canonical(p) for name, p in (("reference", reference), ("prediction", prediction)) if p}
    if not labels:
        raise ValueError("plot_case_overlay needs a reference or a prediction to draw")
    centre = tumour_centre(labels.get("reference", labels.get("prediction")))
    names, regions = _contour_regions(labels, scheme, ignore)
    volumes = {contrast: _canonical(path).astype(np.float32) for contrast, path in images.items()}
    shapes = {str(images[c]): v.shape for c, v in volumes.items()} | {str(w): m.shape for w, m in labels.items()}
    if len(set(shapes.values())) > 1:
        raise UserError(f"the case's files are on different grids ({'; '.join(f'{k}: {v}' for k, v in shapes.items())})"
                        "; check the case with: python -m pipeline check")
    box = brain_box(np.sum([np.abs(v) for v in volumes.values()], axis=0))
    crops = [(box[0], box[1]), (box[0], box[2]), (box[1], box[2])]  # (horizontal, vertical) of each plane
    plane_names = ("axial", "coronal", "sagittal")
    fig, axes = plt.subplots(len(images), 3, figsize=(10, 3.6 * len(images)), squeeze=False)
    for row, (contrast, volume) in enumerate(volumes.items()):
        for col, (plane, name) in enumerate(zip(_planes(volume, centre), plane_names, strict=True)):
            ax = axes[row, col]
            h, v = crops[col]
            ax.imshow(plane[v, h], cmap="gray", origin="lower", interpolation="nearest")
            for which in ("reference", "prediction"):
                for (_, colour), region_mask in zip(names, regions.get(which, []), strict=False):
                    mask = _planes(region_mask.astype(np.float32), centre)[col][v, h]
                    if not mask.any():
                        continue
                    if which == "reference":
                        rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
                        rgba[..., :3] = matplotlib.colors.to_rgb(colour)
                        rgba[..., 3] = 0.35 * mask
                        ax.imshow(rgba, origin="lower", interpolation="nearest")
                    else:
                        ax.contour(mask, levels=[0.5], colors=colour, linewidths=2.0, origin="lower")
            _mark(ax, name)
            ax.set_title(f"{contrast} {name}", fontsize=9)
            ax.axis("off")
    handles = [matplotlib.patches.Patch(color=colour, label=region) for region, colour in names]
    if "reference" in regions:
        handles.append(matplotlib.patches.Patch(facecolor="grey", alpha=0.35, label="reference (filled)"))
    if "prediction" in regions:
        handles.append(plt.Line2D([], [], color="grey", lw=2, label="prediction (outline)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9)
    fig.suptitle((title or Path(out_png).stem) + "\n(patient's left on the left)", fontsize=10)
    return save_figure(fig, out_png, dpi=200)


def _check_label_file(path: str | os.PathLike, scheme: str, what: str, layout: str, case: str = "") -> None:
    """A `UserError` naming ``path`` when its values are not whole numbers of ``scheme``."""
    values = np.unique(load_labels(Path(path))[0])  # unreadable: a UserError naming the file
    if not np.all(values == np.round(values)):
        raise UserError(f"{what} {path} holds non-integer values: a label map is expected, threshold probabilities "
                        "first")
    problem = None if scheme == "labels" else label_values_problem(values.astype(np.int64).tolist(), scheme, what,
                                                                    layout, case=case)
    if problem:
        raise UserError(f"{path}: {problem}")


def run_name(pred_dir: str | os.PathLike) -> str:
    """The name of the predictions in titles: ``run/seg`` for a run's segmentation folder, else the folder's name."""
    p = Path(pred_dir).resolve()
    return f"{p.parent.name}/{p.name}" if "run" in kinds_in(p.parent) else p.name


#: What a pictures folder apart from its evaluation illustrates (``--out`` of ``plot evaluation``).
PICTURES_RECORD = "pictures.json"

def drawn_picture(path: Path) -> bool:
    """Whether ``path`` is a picture this package drew (`pipeline.core.figures.drawn_here`), a file of its own (no
    link): what a new evaluation or drawing may replace or delete."""
    return path.is_file() and not path.is_symlink() and drawn_here(path)


def _may_draw(path: Path) -> bool:
    """Whether a picture may be drawn at ``path``: nothing there, or a picture this package drew; a file of the
    user's of that name is kept, and said."""
    if not (path.exists() or path.is_symlink()) or drawn_picture(path):
        return True
    logger.warning("%s is not a picture this package drew (yours?): kept, and not drawn; move it aside to have it "
                   "drawn", path)
    return False


def drawn_overlays(out: str | os.PathLike) -> list[Path]:
    """The overlay pictures in ``out/overlays`` that this package drew (`pipeline.core.figures.drawn_here`): what a
    new evaluation or drawing replaces. A picture of the user's there (no mark) is never deleted; an ``overlays``
    that is a link is refused (`pipeline.evaluation.reference.claim_output`), never followed."""
    folder = Path(out) / OVERLAYS
    if folder.is_symlink() or not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("*.png")) if drawn_picture(p)]


def _pictures_of(out: Path, eval_dir: Path, option: str) -> dict | None:
    """The record of the pictures of ``eval_dir`` drawn into ``out`` (None when ``out`` is the evaluation's own
    folder); refused when ``out`` holds the pictures of another evaluation, or pictures no record names.

    Raises:
        UserError: naming the folder, what it illustrates and the option to change.
    """
    if out.resolve() == eval_dir.resolve():
        return None
    mine = {"evaluation": str(eval_dir.resolve())}
    try:
        earlier = read_json(out / PICTURES_RECORD)
    except FileNotFoundError:
        earlier = None
    except (OSError, ValueError):
        earlier = {"evaluation": "(an unreadable pictures.json)"}
    stray = earlier is None and (any((out / OVERLAYS).glob("*.png")) or (out / "dice_boxplot.png").exists())
    if (earlier is not None and earlier != mine) or stray:
        what = earlier["evaluation"] if earlier else "an evaluation no pictures.json names"
        raise UserError(f"{out} holds the pictures of {what}; those of {eval_dir} would mix with them: pass another "
                        f"{option}, or delete that folder's pictures first")
    return mine


@holding
def plot_evaluation(eval_dir: str | os.PathLike, pred_dir: str | os.PathLike,
                    dataset_dir: str | os.PathLike | Reference,
                    scheme: str = "auto", max_cases: int = 3, *, out_dir: str | os.PathLike | None = None,
                    out_option: str = "--eval_dir", name: str | None = None) -> list[Path]:
    """The evaluation's pictures: ``dice_boxplot.png`` and overlays of the worst, median and best cases.

    Cases are ranked by their mean Dice over regions in ``eval_dir/metrics.csv``; the pictures are written to
    ``out_dir`` (default ``eval_dir``): ``dice_boxplot.png`` and ``overlays/<case>.png`` with FLAIR and T1ce and
    the reference label read through ``dataset_dir``'s layout (never NIfTI files at its root).

    Everything is checked before anything is drawn: ``dataset_dir`` is a dataset, the prediction folder does
    not overlap it, the output folder holds no input and lies outside the dataset, and the label values of
    the pictured cases fit ``scheme``.

    Args:
        scheme: ``auto`` (the scheme the evaluation in ``eval_dir`` scored in; else the dataset layout's), ``brats``,
            ``brats2023``, ``msd`` or ``labels`` (one contour per value).
        out_option: the option that chose the output folder, named in a refusal (``--out`` on the command line).
        name: the run or algorithm in the titles (default: `run_name` of the prediction folder).

    Raises:
        UserError: no ``metrics.csv``, an unknown scheme, folders that overlap, or label values outside the scheme;
            `pipeline.data.layouts.DatasetError` when ``dataset_dir`` is not a dataset.
    """
    eval_dir = Path(eval_dir).expanduser()
    metrics = eval_dir / "metrics.csv"
    if not metrics.is_file():
        if (Path(pred_dir).expanduser() / "metrics.csv").is_file():  # EVAL_DIR and PRED_DIR given the other way
            raise UserError(f"no {metrics}, but {Path(pred_dir).expanduser() / 'metrics.csv'} is there: the order is "
                            f"EVAL_DIR PRED_DIR DATASET_DIR (plot evaluation {pred_dir} {eval_dir} ...)")
        raise UserError(f"no {metrics}: pass the evaluation folder that holds metrics.csv first (python -m pipeline "
                        "evaluate PRED_DIR DATASET_DIR writes one)")
    if scheme not in FOLDER_SCHEMES and not str(scheme).startswith(NNUNET_PREFIX):
        raise UserError(f"unknown scheme {scheme!r}; expected one of {', '.join(FOLDER_SCHEMES)}")
    # the reference as the evaluation read it (a dataset, a single case folder or a datalist), not re-resolved
    reference = dataset_dir if isinstance(dataset_dir, Reference) else read_reference(dataset_dir)
    if reference.layout is None or not reference.cases:
        raise UserError(f"pictures need the images of the reference cases: pass a dataset folder, not a folder of "
                        f"labels ({reference.root})")
    layout = reference.layout
    pred_root = check_evaluation_folders(pred_dir, reference)
    record = evaluation_record(eval_dir) or {}  # what the pictures illustrate: the evaluation's own pair and scheme
    for what, given, recorded in (("predictions", pred_root, record.get("predictions")),
                                  ("reference", reference.root, record.get("reference"))):
        if recorded and os.path.realpath(recorded) != os.path.realpath(given):
            raise UserError(f"{eval_dir} holds the evaluation of {record.get('predictions')} against "
                            f"{record.get('reference')}; its pictures need those folders, not the {what} {given}: pass "
                            "them, or evaluate these folders into another folder first")
    if scheme == "auto" and record.get("scheme"):  # another scheme, given, draws the labels otherwise (labels)
        scheme = str(record["scheme"])
    cases = reference.cases
    preds = nifti_files(pred_root)
    refuse_rescored(eval_dir, record, reference, pred_root, preds)  # the scores are of the files drawn
    scheme = scoring_scheme(scheme, reference, pred_root, sorted(c for c in preds if c in reference.files))
    guard = reference.guard(list(preds.values()), [pred_root])
    out = guard.folder(out_dir if out_dir is not None else eval_dir, what="pictures", option=out_option)
    elsewhere = evaluation_record(out) if out.resolve() != eval_dir.resolve() else None
    if elsewhere is not None and elsewhere != record:  # another evaluation's folder: its pictures are its own
        raise UserError(f"{out} holds the evaluation of {elsewhere['predictions']} against {elsewhere['reference']}; "
                        f"the pictures of {eval_dir} would replace its own: pass another {out_option}")
    claim_output(out, "pictures", out_option)

    drawn_from = _pictures_of(out, eval_dir, out_option)
    rows = read_table(metrics, ("case", "region", "dice"), METRICS_TABLE)
    by_case: dict[str, list[float]] = {}
    for row, dice in zip(rows, column_numbers(rows, "dice", metrics), strict=True):
        by_case.setdefault(row["case"], []).append(dice)
    ranked = sorted(by_case, key=lambda c: np.mean(by_case[c]))
    ranks = {ranked[0]: "worst", ranked[len(ranked) // 2]: "median", ranked[-1]: "best"} if ranked else {}
    picks = list(dict.fromkeys([ranked[0], ranked[len(ranked) // 2], ranked[-1]]))[:max_cases] if ranked else []
    # the images' channels are the data's own (its description), whichever scheme the labels are scored in
    channels = describe(reference.scheme or layout.label_scheme).channels
    drawn = []
    for case_id in picks:  # every check before an old picture is deleted: a refusal leaves them
        case, pred = cases.get(case_id), preds.get(case_id)  # .nii.gz or .nii, as the evaluation paired them
        if case is None or pred is None:
            continue
        if case.label:
            _check_label_file(case.label, scheme, "reference", layout.layout, case_id)
        _check_label_file(pred, scheme, "prediction", layout.layout, case_id)
        if len(case.channel_index if case.channel_index is not None else case.images) != len(channels):
            raise UserError(f"case {case_id}: {len(case.images)} image file(s) for the {len(channels)} channel(s) "
                            f"({', '.join(channels)}) of its data; check the dataset with python -m pipeline check")
        drawn.append((case_id, case, pred))

    for png in drawn_overlays(out):  # an earlier drawing's cases: not beside this one's (a user's picture stays)
        png.unlink()
    if drawn_from is not None:
        atomic_write_text(out / PICTURES_RECORD, json.dumps(drawn_from, indent=2) + "\n")
    name = name or run_name(pred_root)
    paths = [plot_dice_boxplot(metrics, out / "dice_boxplot.png", name=name, scheme=scheme)] if _may_draw(
        out / "dice_boxplot.png") else []
    for case_id, case, pred in drawn:
        if not _may_draw(out / OVERLAYS / f"{case_id}.png"):
            continue
        shown = [c for want in ("FLAIR", "T1ce") for c in channels if canonical_channel(c) == want] or channels[:2]
        images = {name: case.channel_file(name, channels) for name in shown}  # 3D files, or 4D + channel
        title = (f"{name}: {case_id}, {ranks[case_id]} of {len(ranked)} cases (mean Dice "
                 f"{np.mean(by_case[case_id]):.3f}, rank {ranked[::-1].index(case_id) + 1} of {len(ranked)})")
        try:
            paths.append(plot_case_overlay(images, out / OVERLAYS / f"{case_id}.png", case.label, pred, scheme,
                                           title, ignore=reference.ignore if scheme == "labels" else None))
        except UserError as err:  # the scores stand; one case's unreadable image costs its picture only
            logger.warning("case %s: no overlay picture: %s", case_id, err)
    return paths
