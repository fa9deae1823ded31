"""Segmentation metrics: the article's ``dice``/``sensitivity``/``specificity`` (fixed), its NIfTI loader, and the
per-region BraTS metrics (Dice, sensitivity, specificity, HD95, NSD) on torch tensors, CPU or CUDA.

The article's functions keep its signatures and semantics (one number per batch, its 1e-8 smoothing) with exact
integer counts; `region_metrics` applies the BraTS rules for empty regions and MONAI's HD95. Conventions and the
parity table against MONAI: `docs/metrics.md`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch

#: The article's smoothing term, added to the numerator and the denominator of its three metrics.
SMOOTH: float = 1e-8

#: HD95 when exactly one of prediction and reference is empty (BraTS 2021+ evaluation): the diagonal of the
#: 240 x 240 x 155 mm BraTS volume, sqrt(240**2 + 240**2 + 155**2) = 373.128... mm.
HD95_EMPTY_PENALTY_MM: float = 373.13

#: The Hausdorff percentile used for HD95.
HD95_PERCENTILE: float = 95.0

#: Keys of one region's metrics, in the CSV's order.
METRIC_KEYS: tuple[str, ...] = ("dice", "sensitivity", "specificity", "hd95", "nsd", "pred_voxels", "ref_voxels")
#: Tolerance (mm) of the normalised surface distance (surface Dice) of the legacy protocol.
NSD_TOLERANCE_MM: float = 1.0

# Largest temporary of the CUDA distance transform, in elements (float32): 64 Mi elements = 256 MiB.
_EDT_CHUNK_ELEMENTS = 64 * 1024 * 1024

Spacing = float | Sequence[float] | None


# ----------------------------------------------------------------------------------------------------------------
# The article's functions, fixed
# ----------------------------------------------------------------------------------------------------------------


def _pair(predict: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as tensors on ``predict``'s device, flattened per case to ``(B, N)``; same shape required."""
    p = torch.as_tensor(predict)
    t = torch.as_tensor(target, device=p.device)
    if p.shape != t.shape:
        msg = (
            f"predict and target must have the same shape (B, ...), got {tuple(p.shape)} and {tuple(t.shape)}; "
            "bring both to the same layout (labels (B, H, W, D) or one-hot (B, C, H, W, D)) first"
        )
        raise ValueError(msg)
    if p.ndim < 1:
        msg = "predict and target need a batch dimension: shape (B, ...), got a 0-d tensor"
        raise ValueError(msg)
    batch = p.shape[0]
    return p.reshape(batch, -1), t.reshape(batch, -1)


def _to_floats(*counts: torch.Tensor) -> list[float]:
    """Integer count tensors (0-d, any device) -> Python floats, with one device-to-host copy."""
    return [float(c) for c in torch.stack([c.to(torch.int64) for c in counts]).tolist()]


def dice(predict: torch.Tensor, target: torch.Tensor, val: float = 1.0) -> float:
    """Dice coefficient of the voxels equal to ``val``, pooled over the whole batch (the article's ``dice``).

    With ``P = (predict == val)`` and ``T = (target == val)`` over every element of the batch::

        dice = (2 * |P & T| + 1e-8) / (|P| + |T| + 1e-8)

    One number for the batch: counts are summed over all cases (a global Dice, weighted by region size;
    not MONAI's per-case mean) and, for a one-hot ``(B, C, ...)`` tensor, over all channels, background
    included. Both empty gives 1.0; exactly one empty gives ``1e-8 / n`` (0 to within 1e-8).

    Args:
        predict: ``(B, ...)`` tensor (or array) of labels, any dtype, any device, any memory layout.
        target: same shape as ``predict``; moved to ``predict``'s device.
        val: the label value that counts as foreground in both.

    Returns:
        The Dice coefficient as a Python float, computed in float64 from exact int64 counts.

    Raises:
        ValueError: shapes differ, or a 0-d input.
    """
    p, t = _pair(predict, target)
    p, t = p == val, t == val
    inter, n_p, n_t = _to_floats((p & t).sum(), p.sum(), t.sum())
    return (2.0 * inter + SMOOTH) / (n_p + n_t + SMOOTH)


def sensitivity(predict: torch.Tensor, target: torch.Tensor) -> float:
    """Sensitivity (recall, true-positive rate), pooled over the whole batch (the article's ``sensitivity``).

    Every non-zero value is foreground: ``P = (predict != 0)``, ``T = (target != 0)`` over every element of
    the batch (so labels 1 and 2 count alike; the article multiplied raw values, which weighs a 2 twice)::

        sensitivity = (|P & T| + 1e-8) / (|T| + 1e-8)

    An empty reference gives 1.0 (no positive to miss). Probabilities must be thresholded first: any
    non-zero value, 0.01 included, counts as foreground.

    Args:
        predict: ``(B, ...)`` tensor (or array), labels or 0/1 masks, any dtype, device and layout.
        target: same shape as ``predict``; moved to ``predict``'s device.

    Returns:
        The sensitivity as a Python float, computed in float64 from exact int64 counts.

    Raises:
        ValueError: shapes differ, or a 0-d input.
    """
    p, t = _pair(predict, target)
    p, t = p != 0, t != 0
    tp, n_t = _to_floats((p & t).sum(), t.sum())
    return (tp + SMOOTH) / (n_t + SMOOTH)


def specificity(predict: torch.Tensor, target: torch.Tensor) -> float:
    """Specificity (true-negative rate), pooled over the whole batch (the article's ``specificity``).

    Every non-zero value is foreground; over every element of the batch, ``TN = |predict == 0 & target == 0|``
    and ``FP = |predict != 0 & target == 0|``::

        specificity = (TN + 1e-8) / (TN + FP + 1e-8)

    A reference with no negative voxel (all foreground) gives 1.0 (no negative to mislabel).

    Args:
        predict: ``(B, ...)`` tensor (or array), labels or 0/1 masks, any dtype, device and layout.
        target: same shape as ``predict``; moved to ``predict``'s device.

    Returns:
        The specificity as a Python float, computed in float64 from exact int64 counts.

    Raises:
        ValueError: shapes differ, or a 0-d input.
    """
    p, t = _pair(predict, target)
    p, neg = p != 0, t == 0
    tn, fp = _to_floats((neg & ~p).sum(), (neg & p).sum())
    return (tn + SMOOTH) / (tn + fp + SMOOTH)


def load_nii_to_array(path: str | os.PathLike, dtype: type | np.dtype = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The article's loader for nibabel 5: ``(data, affine)`` of a NIfTI file.

    ``get_data()`` is gone from nibabel 5; ``get_fdata()`` returns the voxel values with the header's
    scaling (``scl_slope``/``scl_inter``) applied, as floating point.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        dtype: floating dtype of the returned data (float64, as ``get_fdata``, or float32 to halve the memory).

    Returns:
        ``data``: the array in the file's voxel order, e.g. ``(H, W, D)`` or ``(H, W, D, C)``, of ``dtype``;
        ``affine``: ``(4, 4)`` float64 voxel-to-world (RAS mm) matrix.
    """
    image = nib.load(os.fspath(path))
    data = image.get_fdata(dtype=dtype, caching="unchanged")
    return data, np.asarray(image.affine, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Surfaces and HD95 (MONAI's definition)
# ----------------------------------------------------------------------------------------------------------------


def _spacing(spacing: Spacing, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (int, float)):
        sp = (float(spacing),) * ndim
    else:
        sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or not all(math.isfinite(s) and s > 0 for s in sp):
        msg = f"spacing must be {ndim} positive numbers (mm per voxel along each axis), got {spacing!r}"
        raise ValueError(msg)
    return sp


def mask_edges(mask: torch.Tensor) -> torch.Tensor:
    """The surface of a binary mask: foreground voxels with a background face neighbour.

    Identical to MONAI's ``get_mask_edges`` (``binary_erosion(m) ^ m`` with SciPy's default cross-shaped
    structuring element, ``2 * ndim`` face neighbours, and ``border_value=0``): a foreground voxel on the
    image border is a surface voxel, as if the image were surrounded by background. Pure torch, any device.

    Args:
        mask: ``(H, W[, D])`` bool (or 0/1) tensor.

    Returns:
        ``(H, W[, D])`` bool tensor, on ``mask``'s device.
    """
    m = mask.bool()
    interior = m.clone()
    for ax, n in enumerate(m.shape):
        interior.narrow(ax, 0, 1).fill_(False)
        interior.narrow(ax, n - 1, 1).fill_(False)
        if n > 2:
            inner = interior.narrow(ax, 1, n - 2)
            inner &= m.narrow(ax, 0, n - 2)
            inner &= m.narrow(ax, 2, n - 2)
    return m & ~interior


def bounding_box(mask: torch.Tensor, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every True voxel, widened by ``margin`` and clipped to the image.

    Args:
        mask: ``(H, W[, D])`` bool tensor, any device.
        margin: voxels added on each side.

    Returns:
        One ``slice`` per axis, or None when the mask is empty. One device-to-host copy of ``2 * ndim + 1`` ints.
    """
    ends: list[torch.Tensor] = []
    for ax, n in enumerate(mask.shape):
        others = tuple(d for d in range(mask.ndim) if d != ax)
        proj = (mask.any(dim=others) if others else mask).to(torch.uint8)
        ends += [proj.argmax(), (n - 1) - proj.flip(0).argmax()]
    ends.append(proj.amax())  # any True voxel at all
    vals = torch.stack(ends).to(torch.int64).tolist()
    if not vals[-1]:
        return None
    return tuple(
        slice(max(vals[2 * ax] - margin, 0), min(vals[2 * ax + 1] + margin + 1, n)) for ax, n in enumerate(mask.shape)
    )


def _min_plus_axis(f: torch.Tensor, axis: int, step: float) -> torch.Tensor:
    """``g[x] = min_x' f[x'] + ((x - x') * step)**2`` along ``axis``: one pass of the exact separable squared EDT."""
    moved = f.movedim(axis, -1)
    shape = moved.shape
    n = shape[-1]
    lines = moved.reshape(-1, n)
    pos = torch.arange(n, device=f.device, dtype=f.dtype) * step
    cost = (pos[:, None] - pos[None, :]) ** 2  # (x, x')
    out = torch.empty_like(lines)
    chunk = max(1, _EDT_CHUNK_ELEMENTS // (n * n))
    for s in range(0, lines.shape[0], chunk):
        out[s : s + chunk] = (lines[s : s + chunk, None, :] + cost[None]).amin(dim=-1)
    return out.reshape(shape).movedim(-1, axis)


def _edt_distances(query: torch.Tensor, sites: torch.Tensor, spacing: tuple[float, ...]) -> torch.Tensor:
    """Euclidean distance (mm) from each True voxel of ``query`` to the nearest True voxel of ``sites``.

    Exact separable squared distance transform (three 1-D min-plus passes, as in Felzenszwalb & Huttenlocher),
    in torch on the tensors' device, float32. Both masks non-empty.
    """
    sq = torch.full(sites.shape, float("inf"), dtype=torch.float32, device=sites.device)
    sq[sites] = 0.0
    for ax, step in enumerate(spacing):
        sq = _min_plus_axis(sq, ax, step)
    return sq[query].sqrt()


def _directed_distances(
    query: torch.Tensor, sites: torch.Tensor, spacing: tuple[float, ...], method: str
) -> torch.Tensor:
    """MONAI's ``get_surface_distance(query, sites, "euclidean", spacing)`` on edge masks, float32, 1-D.

    MONAI's conventions for empty inputs are kept: no ``sites`` -> ``inf`` for each query voxel; no ``query``
    voxel but some ``sites`` -> ``inf`` for each site voxel (so one empty mask gives all-``inf`` distances);
    both empty -> an empty tensor.
    """
    if method == "monai":
        from monai.metrics.utils import get_surface_distance

        return torch.as_tensor(get_surface_distance(query, sites, "euclidean", spacing), dtype=torch.float32)
    n_query, n_sites = torch.stack([query.sum(), sites.sum()]).tolist()
    if n_sites == 0:
        return torch.full((n_query,), float("inf"), dtype=torch.float32, device=query.device)
    if n_query == 0:
        return torch.full((n_sites,), float("inf"), dtype=torch.float32, device=query.device)
    return _edt_distances(query, sites, spacing)


def _auto_method(device: torch.device) -> str:
    """``"torch"`` on CUDA (no NumPy round-trip), ``"monai"`` (MONAI's own KD-tree code) elsewhere."""
    return "torch" if device.type == "cuda" else "monai"


def surface_distances(
    pred: torch.Tensor, ref: torch.Tensor, spacing: Spacing = None, *, crop: bool = True, method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (mm) between the two surfaces, both ways: MONAI's ``get_edge_surface_distance(symmetric=True)``.

    Surfaces are `mask_edges`. With ``crop`` (as MONAI does) both masks are first cut to the bounding
    box of their union plus one voxel: every surface voxel lies inside, and a Euclidean distance between
    two voxels does not depend on the box, so the distances are unchanged (tested against MONAI's call on
    the full image).

    Args:
        pred: ``(H, W[, D])`` bool (or 0/1) tensor, any device.
        ref: same shape and device as ``pred``.
        spacing: voxel size in mm, one number or one per axis; None for 1.
        crop: cut to the union's bounding box first (faster; same result).
        method: ``"monai"`` calls ``monai.metrics.utils.get_surface_distance`` (a KD-tree on the CPU);
            ``"torch"`` is an exact distance transform in torch on the tensors' device (no NumPy);
            ``"auto"``: ``"torch"`` on CUDA, ``"monai"`` otherwise.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: 1-D float32 tensors on the input device, one distance per
        surface voxel of the first mask to the nearest surface voxel of the second (empty-mask conventions
        as MONAI's: see `hd95`).
    """
    if pred.shape != ref.shape:
        msg = f"pred and ref must have the same shape, got {tuple(pred.shape)} and {tuple(ref.shape)}"
        raise ValueError(msg)
    p, r = pred.bool(), ref.to(device=pred.device).bool()
    sp = _spacing(spacing, p.ndim)
    if method == "auto":
        method = _auto_method(p.device)
    if method not in ("torch", "monai"):
        msg = f"method must be 'auto', 'torch' or 'monai', got {method!r}"
        raise ValueError(msg)
    if crop:
        box = bounding_box(p | r, margin=1)
        if box is None:
            empty = torch.zeros(0, dtype=torch.float32, device=p.device)
            return empty, empty.clone()
        p, r = p[box], r[box]
    ep, er = mask_edges(p), mask_edges(r)
    if method == "monai":
        ep, er = ep.cpu(), er.cpu()
    d_pr = _directed_distances(ep, er, sp, method).to(pred.device)
    d_rp = _directed_distances(er, ep, sp, method).to(pred.device)
    return d_pr, d_rp


def _percentile(d: torch.Tensor, q: float | None) -> torch.Tensor:
    """MONAI's ``_compute_percentile_hausdorff_distance`` of 1-D distances ``d``, as a 0-d tensor.

    NaN for no distance; the maximum for ``q`` 0 or None; else ``torch.quantile(d, q / 100)`` (linear
    interpolation, which gives NaN when the distances are all ``inf``).
    """
    if d.numel() == 0:
        return torch.tensor(float("nan"), dtype=torch.float32, device=d.device)
    if not q:
        return d.max()
    return torch.quantile(d, q / 100.0)


def hd95(
    pred: torch.Tensor,
    ref: torch.Tensor,
    spacing: Spacing = None,
    *,
    percentile: float | None = HD95_PERCENTILE,
    crop: bool = True,
    method: str = "auto",
) -> float:
    """95th-percentile Hausdorff distance in mm, exactly MONAI's ``compute_hausdorff_distance(percentile=95)``.

    MONAI's definition (``directed=False``): the surface distances pred -> ref and ref -> pred
    (`surface_distances`), the 95th percentile of each (``torch.quantile``, linear interpolation,
    float32), and the larger of the two. Not the percentile of both sets pooled (MedPy's ``hd95``).
    Surface voxels on the image border count as surface (MONAI's erosion treats the outside as background).

    Empty masks as MONAI: both empty -> NaN; exactly one empty -> NaN as well (the directed distances are all
    ``inf`` and ``torch.quantile`` interpolates ``inf - inf``; the plain Hausdorff distance, ``percentile=None``,
    is ``inf``). `region_metrics` replaces these by the BraTS values (0 and `HD95_EMPTY_PENALTY_MM`).

    Args:
        pred: ``(H, W[, D])`` bool (or 0/1) tensor, any device.
        ref: same shape as ``pred``.
        spacing: voxel size in mm (one number, or one per axis, e.g. from the NIfTI header); None for 1.
        percentile: 0-100; 95 for HD95; None (or 0, as in MONAI) for the plain Hausdorff distance (maximum).
        crop: see `surface_distances`.
        method: see `surface_distances`.

    Returns:
        The distance in mm, a Python float.
    """
    d_pr, d_rp = surface_distances(pred, ref, spacing, crop=crop, method=method)
    return float(torch.max(torch.stack([_percentile(d_pr, percentile), _percentile(d_rp, percentile)])))


# ----------------------------------------------------------------------------------------------------------------
# Per-region metrics (BraTS rules)
# ----------------------------------------------------------------------------------------------------------------


def region_metrics(
    pred: torch.Tensor,
    ref: torch.Tensor,
    spacing: Spacing = None,
    *,
    n_voxels: int | None = None,
    excluded: int = 0,
    empty_penalty: float = HD95_EMPTY_PENALTY_MM,
    method: str = "auto",
) -> list[dict[str, float | int]]:
    """Dice, sensitivity, specificity, HD95 and voxel counts of each region of one case.

    For one region with ``TP, FP, TN, FN`` counted exactly (int64)::

        dice        = 2 TP / (2 TP + FP + FN)        both empty -> 1.0, exactly one empty -> 0.0
        sensitivity = TP / (TP + FN)                  empty reference -> 1.0 (no positive to miss)
        specificity = TN / (TN + FP)                  no negative voxel in the reference -> 1.0
        hd95        = hd95(pred, ref, spacing)        both empty -> 0.0, exactly one empty -> empty_penalty
        nsd         = (|d(P->R) <= t| + |d(R->P) <= t|) / (|surface P| + |surface R|)   t = NSD_TOLERANCE_MM
                                                      both empty -> 1.0, exactly one empty -> 0.0

    The Dice and HD95 rules are the BraTS challenge's (BraTS 2021+: 373.13 mm, the diagonal of the
    BraTS volume); sensitivity and specificity take the limit of the article's 1e-8 smoothing, which is
    1 in both cases. No smoothing otherwise: the values are exact ratios of the counts, in float64.

    Args:
        pred: ``(R, H, W[, D])`` bool (or 0/1) tensor, one channel per region, any device.
        ref: same shape as ``pred``.
        spacing: voxel size in mm of the spatial axes (one number, or one per axis); None for 1.
        n_voxels: voxel count of the whole image when ``pred``/``ref`` are a crop of it whose outside is
            background in both (the extra voxels are true negatives); default: the spatial size of ``pred``.
        excluded: voxels of the crop that are scored in neither (nnU-Net's ``ignore`` label, zero in both masks):
            not counted as true negatives.
        empty_penalty: HD95 in mm when exactly one of the two is empty.
        method: distance computation, see `surface_distances`.

    Returns:
        One dict per region, in channel order, with keys `METRIC_KEYS`: floats, and the voxel
        counts ``pred_voxels``/``ref_voxels`` as ints.
    """
    if pred.shape != ref.shape or pred.ndim < 2:
        msg = (
            "pred and ref must both be (R, H, W[, D]) with the same shape, "
            f"got {tuple(pred.shape)} and {tuple(ref.shape)}"
        )
        raise ValueError(msg)
    p, r = pred.bool(), ref.to(device=pred.device).bool()
    n_regions = p.shape[0]
    size = p[0].numel()
    total = size if n_voxels is None else int(n_voxels)
    if total < size:
        msg = f"n_voxels ({total}) cannot be smaller than the voxels given per region ({size})"
        raise ValueError(msg)
    sp = _spacing(spacing, p.ndim - 1)
    counts = torch.stack([(p & r).flatten(1).sum(1), p.flatten(1).sum(1), r.flatten(1).sum(1)], dim=1).tolist()
    rows: list[dict[str, float | int]] = []
    hd: list[torch.Tensor | float] = []
    for i in range(n_regions):
        tp, n_p, n_r = (int(c) for c in counts[i])
        fp, fn = n_p - tp, n_r - tp
        tn = total - int(excluded) - tp - fp - fn
        rows.append(
            {
                "dice": 2.0 * tp / (n_p + n_r) if n_p + n_r else 1.0,
                "sensitivity": tp / n_r if n_r else 1.0,
                "specificity": tn / (tn + fp) if tn + fp else 1.0,
                "pred_voxels": n_p,
                "ref_voxels": n_r,
            }
        )
        if n_p == 0 and n_r == 0:
            hd.append(0.0)
            rows[-1]["nsd"] = 1.0
        elif n_p == 0 or n_r == 0:
            hd.append(float(empty_penalty))
            rows[-1]["nsd"] = 0.0
        else:
            d_pr, d_rp = surface_distances(p[i], r[i], sp, crop=True, method=method)
            hd.append(torch.maximum(_percentile(d_pr, HD95_PERCENTILE), _percentile(d_rp, HD95_PERCENTILE)))
            within = int((d_pr <= NSD_TOLERANCE_MM).sum()) + int((d_rp <= NSD_TOLERANCE_MM).sum())
            rows[-1]["nsd"] = within / (d_pr.numel() + d_rp.numel())
    pending = [i for i, h in enumerate(hd) if isinstance(h, torch.Tensor)]
    if pending:
        values = torch.stack([hd[i].to(torch.float32) for i in pending]).tolist()  # type: ignore[union-attr]
        for i, v in zip(pending, values, strict=True):
            hd[i] = float(v)
    for row, h in zip(rows, hd, strict=True):
        row["hd95"] = float(h)
    return [{k: row[k] for k in METRIC_KEYS} for row in rows]
