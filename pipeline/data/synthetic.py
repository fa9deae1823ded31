"""Synthetic BraTS-like cases: the embedded default dataset of the demo and of every test.

Each case is a skull-stripped brain with CSF, grey and white matter texture and one glioma (necrotic core, enhancing
rim, oedema; one case in eight non-enhancing), four contrasts with bias fields and Rician noise, arrays ``(X, Y, Z)``
as in BraTS 2021 (1 mm, affine `BRATS_AFFINE`). Case ``i`` depends only on ``(seed, i)`` and holds the same arrays in
every layout it is written in (`write_dataset`: the layouts' own writers and numbering). How the anatomy, the tumour
and the resection cavity are drawn: `docs/datasets.md`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock, atomic_write_text, file_sha256, read_json
from pipeline.data.labels import NUMBERING, contrast_of, contrast_spellings, relabel
from pipeline.data.layouts import brats, msd, nnunet, refuse_dataset_inside_dataset

logger = logging.getLogger(__name__)

#: The shape ``(X, Y, Z)`` of a default synthetic case: small enough for CPU training in minutes.
DEFAULT_SHAPE: tuple[int, int, int] = (96, 96, 64)

#: The header affine of real BraTS 2021 files (240 x 240 x 155): spacing 1 mm, x and y flipped, origin (0, 239, 0).
BRATS_AFFINE: np.ndarray = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)

#: What the generator's label codes are (its seg: 1 NCR, 2 ED, 4 ET, 3 RC), to be written in a dataset's numbering
#: (`pipeline.data.labels.NUMBERING`).
ROLES: dict[int, str] = {1: "NCR", 2: "ED", 4: "ET", 3: "RC"}
#: The numbering each layout is written in.
LAYOUT_NUMBERING: dict[str, str] = {"brats2021": "brats", "brats2023": "brats2023", "brats2024": "brats2024",
                                    "msd": "msd", "nnunet": "nnunet-brats21"}

#: Layouts `write_dataset` can write.
SUPPORTED_LAYOUTS: tuple[str, ...] = ("brats2021", "brats2023", "msd", "brats2024", "nnunet")


#: The channel name (`pipeline.data.labels.CHANNELS`) of each `CONTRASTS` entry.
CHANNEL_NAMES: dict[str, str] = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}

#: Fraction of the cases of a dataset with a resection cavity (``brats2024``, ``nnunet`` with ``rc``) that have one.
RC_FRACTION: float = 7 / 8
#: Third seed word of a case's resection-cavity generator ``np.random.default_rng([seed, i, RC_STREAM])``.
RC_STREAM: int = 0x5243

#: Image keys of `synth_case`, which are also the BraTS 2021 file suffixes, in channel order.
CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

#: Fraction of `write_dataset` cases drawn as non-enhancing (low-grade-like) tumours.
NON_ENHANCING_FRACTION: float = 1 / 8

#: Smallest accepted size of any axis: below it the anatomy and the tumour layers no longer fit.
MIN_AXIS: int = 16

# Internal tissue classes (not label values): the intensity tables below are indexed by them.
_BG, _CSF, _GM, _WM, _NCR, _ED, _ET, _NET, _RC = range(9)

# Base intensity of each class per contrast, columns BG CSF GM WM NCR ED ET NET (NET: a non-enhancing core).
_INTENSITY: dict[str, np.ndarray] = {
    "t1": np.array([0, 300, 600, 800, 280, 520, 650, 420], dtype=np.float32),
    "t1ce": np.array([0, 330, 640, 820, 300, 560, 1500, 450], dtype=np.float32),
    "t2": np.array([0, 2000, 1100, 750, 1900, 1500, 1300, 1700], dtype=np.float32),
    "flair": np.array([0, 180, 650, 480, 600, 1300, 1000, 1050], dtype=np.float32),
}
# Base intensity of a resection cavity (class _RC) per contrast: fluid, like CSF; FLAIR a little brighter
# (proteinaceous fluid). Kept apart from _INTENSITY so that cases without a cavity draw exactly as before.
_RC_INTENSITY: dict[str, float] = {"t1": 320.0, "t1ce": 350.0, "t2": 1950.0, "flair": 260.0}
# Relative amplitude of the within-class texture (tumour classes are more heterogeneous), columns as _INTENSITY, RC.
_TEXTURE = np.array([0, 0.03, 0.03, 0.03, 0.10, 0.07, 0.10, 0.07, 0.03], dtype=np.float32)
# Noise sigma as a fraction of the GM intensity of each contrast.
_NOISE = 0.03


def brats_affine(shape: Sequence[int] = DEFAULT_SHAPE) -> np.ndarray:
    """The BraTS 2021 style affine for an ``(X, Y, Z)`` grid: diag(-1, -1, 1), 1 mm, origin ``(0, Y - 1, 0)``.

    Equals `BRATS_AFFINE` for the real BraTS shape ``(240, 240, 155)``.
    """
    aff = BRATS_AFFINE.copy()
    aff[1, 3] = float(int(shape[1]) - 1)
    return aff


#: The largest axis of a synthetic case (a BraTS case is 240 x 240 x 155 at 1 mm).
MAX_AXIS = 512


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise UserError(f"shape must be three integers (X, Y, Z), got {shape!r}") from None
    if len(out) != 3 or min(out) < MIN_AXIS:
        raise UserError(f"shape must be three integers (X, Y, Z), each >= {MIN_AXIS}, got {tuple(shape)!r}")
    if max(out) > MAX_AXIS:  # a BraTS volume is 240 x 240 x 155; beyond this one volume needs gigabytes
        raise UserError(f"shape must be three integers (X, Y, Z), each at most {MAX_AXIS}, got {tuple(shape)!r}")
    return out  # type: ignore[return-value]


def _smooth_field(shape: Sequence[int], rng: np.random.Generator, spacing: float) -> np.ndarray:
    """A smooth random field ``shape`` float32 with zero mean and unit variance at every voxel.

    A lattice of Gaussian bumps ``spacing`` voxels apart with random weights, evaluated separably
    (three small matrix products), so even a 240 x 240 x 155 field costs a fraction of a second.
    """
    spacing = max(float(spacing), 1.0)
    mats = []
    for n in shape:
        k = int(np.ceil(n / spacing)) + 3
        centres = (np.arange(k, dtype=np.float64) - 1.0) * spacing - 0.5 * ((k - 3) * spacing - n)
        w = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / spacing) ** 2)
        w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
        mats.append(w.astype(np.float32))
    wx, wy, wz = mats
    coeffs = rng.standard_normal((wx.shape[1], wy.shape[1], wz.shape[1]), dtype=np.float32)
    f = np.tensordot(coeffs, wz, axes=(2, 1))  # (kx, ky, Z)
    f = np.tensordot(wy, f, axes=(1, 1)).transpose(1, 0, 2)  # (kx, Y, Z)
    f = np.tensordot(wx, np.ascontiguousarray(f), axes=(1, 0))  # (X, Y, Z)
    return f


def _axes(shape: Sequence[int], centre: Sequence[float], semi: Sequence[float]) -> list[np.ndarray]:
    """Normalised open-grid coordinates ``(i - centre) / semi`` per axis, shaped for broadcasting."""
    out = []
    for ax, (n, c, s) in enumerate(zip(shape, centre, semi, strict=True)):
        v = (np.arange(n, dtype=np.float32) - np.float32(c)) / np.float32(s)
        out.append(v.reshape([-1 if i == ax else 1 for i in range(3)]))
    return out


def _anatomy(shape: tuple[int, int, int], rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes ``(X, Y, Z)`` uint8 (BG, CSF, GM, WM) and the normalised brain radius ``rho`` float32."""
    size = np.array(shape, dtype=np.float64)
    # Ellipsoid filling about 70-85 % of each axis, longest front-to-back (Y), like a skull-stripped brain.
    semi = size * np.array([rng.uniform(0.36, 0.40), rng.uniform(0.38, 0.41), rng.uniform(0.36, 0.40)])
    centre = (size - 1) / 2 + size * rng.uniform(-0.015, 0.015, 3)
    u, v, w = _axes(shape, centre, semi)
    deform = np.clip(_smooth_field(shape, rng, 0.3 * size.mean()), -2.5, 2.5)
    rho = np.sqrt(u * u + v * v + w * w) / (1 + 0.04 * deform)
    del deform
    brain = rho < 1
    cls = np.full(shape, _WM, dtype=np.uint8)

    # Cortical ribbon of varying thickness (gyri), sulcal CSF cutting into it, a thin CSF film at the surface.
    gyri = _smooth_field(shape, rng, 4.0 * scale)
    cls[rho > 0.86 + 0.06 * gyri] = _GM
    sulci = _smooth_field(shape, rng, 3.0 * scale)
    cls[(rho > 0.90) & (np.abs(sulci) < 0.2)] = _CSF
    cls[rho > 0.975] = _CSF
    del gyri, sulci

    # Deep grey nuclei and lateral ventricles, mirrored about the mid-sagittal plane, both deformed.
    au = np.abs(u)
    lumps = _smooth_field(shape, rng, 0.12 * size.mean())
    nuclei = ((au - 0.30) / 0.13) ** 2 + (v / 0.22) ** 2 + ((w + 0.12) / 0.22) ** 2
    cls[nuclei * (1 + 0.15 * lumps) < 1] = _GM
    ventricles = ((au - 0.13) / rng.uniform(0.08, 0.12)) ** 2 + (v / 0.42) ** 2 + ((w - 0.08) / 0.18) ** 2
    cls[ventricles * (1 + 0.15 * lumps) < 1] = _CSF
    third = (u / 0.025) ** 2 + (v / 0.18) ** 2 + ((w + 0.05) / 0.15) ** 2  # third ventricle on the midline
    cls[third < 1] = _CSF
    # Interhemispheric fissure: a thin CSF sheet on the midline, upper part of the brain.
    half_width = max(0.6, 0.5 * scale) / semi[0]
    cls[(au < half_width) & (w > 0.0) & (rho > 0.35)] = _CSF
    del au, lumps, nuclei, ventricles, third

    cls[~brain] = _BG
    return cls, rho.astype(np.float32)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _tumour(cls: np.ndarray, rho: np.ndarray, rng: np.random.Generator, scale: float, enhancing: bool) -> None:
    """Paint one glioma into the class map ``cls`` in place (NCR or NET core, ET rim, ED around)."""
    shape = cls.shape
    brain = cls != _BG
    n_brain = int(brain.sum())
    # Whole tumour about 2-10 % of the brain (target log-uniform in 1.8-8.5 %; the oedema's irregular outline
    # adds about 15 % on average, CSF spaces take some away). A random ellipsoid orientation and elongation.
    frac = float(np.exp(rng.uniform(np.log(0.018), np.log(0.085))))
    r_wt = (3 * frac * n_brain / (4 * np.pi)) ** (1 / 3)
    elong = np.exp(rng.uniform(-0.2, 0.2, 3))
    elong /= np.prod(elong) ** (1 / 3)
    mat = (_rotation(rng) / elong[:, None]).astype(np.float32)

    thin = False
    if enhancing:
        thin = rng.random() < 0.25
        r_tc = r_wt * (rng.uniform(0.35, 0.50) if thin else rng.uniform(0.60, 0.85))
        rim = max(1.0, (rng.uniform(0.8, 1.2) if thin else rng.uniform(1.5, 3.0)) * scale)
        r_ncr = r_tc - rim
    else:
        has_core = rng.random() < 0.6
        r_tc = r_wt * rng.uniform(0.25, 0.50) if has_core else 0.0
        r_ncr = r_tc
    r_tc = max(r_tc, 2.0) if (enhancing or r_tc > 0) else 0.0

    # Centre: deep enough in the brain (rho is the brain radius normalised to 1) that the core stays inside it.
    deep = np.flatnonzero((rho < max(0.2, 0.92 - 1.3 * r_tc / (0.37 * min(shape)))).ravel())
    centre = np.array(np.unravel_index(deep[rng.integers(deep.size)], shape), dtype=np.float64)
    centre += rng.uniform(-0.5, 0.5, 3)

    # Work in the tumour's bounding box only.
    reach = 1.6 * r_wt * float(elong.max()) + 3
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    bshape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    d = _axes(bshape, centre - lo, (1.0, 1.0, 1.0))
    p = [mat[i, 0] * d[0] + mat[i, 1] * d[1] + mat[i, 2] * d[2] for i in range(3)]
    q = np.sqrt(p[0] ** 2 + p[1] ** 2 + p[2] ** 2)
    del p
    # Irregular outlines: the radius is displaced by smooth noise (the same for the core and the necrosis,
    # so the enhancing rim keeps its thickness); the oedema's outline is rougher and wider-ranging.
    q_core = q - 0.15 * max(r_tc, 2.0) * np.clip(_smooth_field(bshape, rng, max(2.0, 0.4 * r_tc)), -2.5, 2.5)
    q_ed = q - 0.22 * r_wt * np.clip(_smooth_field(bshape, rng, max(2.5, 0.35 * r_wt)), -2.5, 2.5)

    sub = cls[box]
    inside = sub != _BG
    tc = (q_core < r_tc) & inside
    ncr = (q_core < r_ncr) & inside if r_ncr > 0 else np.zeros_like(tc)
    # Oedema spreads through tissue but not into CSF spaces; the core displaces whatever was there.
    wt = ((q_ed < r_wt) & inside & (sub != _CSF)) | tc
    sub[wt] = _ED
    if enhancing:
        sub[tc] = _ET
        sub[ncr] = _NCR
    else:
        sub[tc] = _NET


def _cavity(cls: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """Paint a resection cavity (class ``_RC``) into ``cls`` in place, drawn from ``rng`` only: an irregular
    ellipsoid about 0.35-0.6 times the whole tumour's radius, inside the brain, centred 1-3 voxels beyond its own
    radius from the tumour, so it lies beside the tumour and never on it. Left out when nothing fits."""
    tumour = np.isin(cls, (_NCR, _ED, _ET, _NET))
    brain = cls != _BG
    if not tumour.any():
        return
    r_wt = (3 * float(tumour.sum()) / (4 * np.pi)) ** (1 / 3)
    radius = max(1.5, rng.uniform(0.35, 0.6) * r_wt)
    elong = np.exp(rng.uniform(-0.2, 0.2, 3))
    elong /= np.prod(elong) ** (1 / 3)
    mat = (_rotation(rng) / elong[:, None]).astype(np.float32)
    from_tumour = ndimage.distance_transform_edt(~tumour)
    from_edge = ndimage.distance_transform_edt(brain)
    for r in (max(1.5, f * radius) for f in (1.0, 0.7, 0.5, 0.0)):  # smaller when the tumour leaves no room
        near = (from_tumour >= r + 1) & (from_tumour <= r + 3) & (from_edge >= r + 1.5)
        if near.any():
            break
    else:
        return
    flat = np.flatnonzero(near.ravel())
    centre = np.array(np.unravel_index(flat[rng.integers(flat.size)], cls.shape), dtype=np.float64)
    reach = 1.5 * r * float(elong.max()) + 2
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, cls.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    bshape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    d = _axes(bshape, centre - lo, (1.0, 1.0, 1.0))
    p = [mat[i, 0] * d[0] + mat[i, 1] * d[1] + mat[i, 2] * d[2] for i in range(3)]
    q = np.sqrt(p[0] ** 2 + p[1] ** 2 + p[2] ** 2)
    q -= 0.12 * r * np.clip(_smooth_field(bshape, rng, max(2.0, 0.5 * r * scale)), -2.5, 2.5)
    blob = (q < r) & brain[box] & ~tumour[box]
    cls[box][blob] = _RC


def synth_case(
    shape: Sequence[int] = DEFAULT_SHAPE, *, rng: np.random.Generator, enhancing: bool = True,
    rc_rng: np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generate one synthetic BraTS-like case.

    Args:
        shape: grid size ``(X, Y, Z)``, each axis >= `MIN_AXIS`; voxels are 1 mm.
        rng: the only source of randomness: the same generator state gives identical arrays.
        enhancing: ``True`` for a high-grade-like tumour (necrotic core 1 inside an enhancing rim 4,
            about a quarter of them with only a thin rim and a small core); ``False`` for a
            low-grade-like one with no label 4 and a small non-enhancing core (label 1) or none.
        rc_rng: when given, a resection cavity (label 3 of ``seg``) is painted beside the tumour, drawn from
            this generator only: ``rng`` makes the same draws with or without it, so the rest of the case is
            unchanged (but for the blur at the cavity's border).

    Returns:
        ``(images, seg)``: ``images`` maps ``"t1"``, ``"t1ce"``, ``"t2"``, ``"flair"`` to ``(X, Y, Z)``
        int16 arrays, exactly 0 outside the brain and >= 1 inside it; ``seg`` is ``(X, Y, Z)`` uint8 with
        0 background, 1 NCR (necrotic / non-enhancing core), 2 ED (oedema), 4 ET (enhancing tumour) and,
        with ``rc_rng`` only, 3 RC (resection cavity; `write_dataset` renumbers it).
        ET lies within TC (1|4), TC within WT (1|2|4), WT within the brain (non-zero images); RC within the
        brain, outside WT.

    Raises:
        ValueError: ``shape`` is not three integers >= `MIN_AXIS`.
    """
    shape = _check_shape(shape)
    scale = float(np.mean(shape) / np.mean(DEFAULT_SHAPE))
    cls, rho = _anatomy(shape, rng, scale)
    _tumour(cls, rho, rng, scale, enhancing)
    del rho
    if rc_rng is not None:
        _cavity(cls, rc_rng, scale)
    brain = cls != _BG

    lut = np.array([0, 0, 0, 0, 1, 2, 4, 1, 3], dtype=np.uint8)
    seg = lut[cls]

    texture = _smooth_field(shape, rng, 2.5 * scale)
    texture *= _TEXTURE[cls]
    texture += 1
    images: dict[str, np.ndarray] = {}
    for name in CONTRASTS:
        table = _INTENSITY[name] * (1 + 0.04 * rng.standard_normal(8)).astype(np.float32)
        table[_BG] = 0
        if rc_rng is not None:
            table = np.append(table, np.float32(_RC_INTENSITY[name] * (1 + 0.04 * rc_rng.standard_normal())))
        img = table[cls]
        img *= texture
        # Partial-volume blur at tissue borders, then a smooth bias field and a per-case global scale.
        img = ndimage.gaussian_filter(img, sigma=0.5, truncate=3.0)
        bias = _smooth_field(shape, rng, 0.5 * float(np.mean(shape)))
        img *= np.exp(0.12 * bias) * np.float32(rng.uniform(0.8, 1.25))
        del bias
        # Rician noise: magnitude of the signal plus complex Gaussian noise.
        sigma = np.float32(_NOISE * _INTENSITY[name][_GM])
        n1 = rng.standard_normal(shape, dtype=np.float32)
        n1 *= sigma
        img += n1
        np.square(img, out=img)
        rng.standard_normal(shape, dtype=np.float32, out=n1)
        n1 *= sigma
        np.square(n1, out=n1)
        img += n1
        del n1
        np.sqrt(img, out=img)
        np.rint(img, out=img)
        np.clip(img, 1, np.iinfo(np.int16).max, out=img)
        out = img.astype(np.int16)
        out[~brain] = 0
        images[name] = out
    return images, seg


def case_is_enhancing(seed: int, index: int) -> bool:
    """Whether case ``index`` of `write_dataset` with ``seed`` has an enhancing tumour.

    The first draw of the case's generator ``np.random.default_rng([seed, index])`` decides it: about
    `NON_ENHANCING_FRACTION` of the cases are non-enhancing. With ``seed=0`` the non-enhancing
    cases among the first 16 are exactly indices 2 and 7.
    """
    return bool(np.random.default_rng([seed, index]).random() >= NON_ENHANCING_FRACTION)


def _rc_generator(seed: int, index: int) -> np.random.Generator | None:
    """The resection-cavity generator of case ``index``, or None when the case has no cavity (its first draw)."""
    rng = np.random.default_rng([int(seed), int(index), RC_STREAM])
    return rng if rng.random() < RC_FRACTION else None


def case_has_rc(seed: int, index: int) -> bool:
    """Whether case ``index`` of `write_dataset` with ``seed`` has a resection cavity when the layout draws
    them (``brats2024``, ``nnunet`` with ``rc``): about `RC_FRACTION` of the cases."""
    return _rc_generator(seed, index) is not None


def contrasts_of(channels: Sequence[str] | None) -> tuple[str, ...]:
    """The `CONTRASTS` keys of ``channels`` (names such as ``T1ce``, ``t1c``, ``FLAIR``, ``t2f``), in order;
    all four for None.

    Raises:
        ValueError: an unknown name, a name given twice, or no name.
    """
    if channels is None:
        return CONTRASTS
    if isinstance(channels, str):
        channels = [channels]
    by_name = {name: key for key, name in CHANNEL_NAMES.items()}
    out = [by_name.get(contrast_of(c) or "") for c in channels]
    if not out or None in out or len(set(out)) != len(out):
        raise UserError(f"channels {list(channels)}: expected one or more of the four contrasts, each once, named "
                        f"({contrast_spellings()}; any case), e.g. T1ce or T1 T1ce T2 FLAIR")
    return tuple(c for c in out if c)


def write_dataset(
    out_dir: str | os.PathLike,
    cases: int = 16,
    shape: Sequence[int] = DEFAULT_SHAPE,
    seed: int = 0,
    layout: str = "brats2021",
    *,
    force: bool = False,
    channels: Sequence[str] | None = None,
    rc: bool = False,
    option: str = "OUT_DIR",
) -> list[Path]:
    """Write ``cases`` synthetic cases under ``out_dir`` in one of the layouts of `pipeline.data.layouts`.

    The layout's own writer writes each case (names, channel packing), and its seg in the layout's numbering
    (`LAYOUT_NUMBERING`): ``brats2021`` ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz`` (images
    int16, seg uint8 1 NCR, 2 ED, 4 ET); ``brats2023`` ``BraTS-GLI-00000-000/...-{t1n,t1c,t2w,t2f,seg}`` (ET 3);
    ``brats2024`` the same names with a resection cavity (4 RC); ``msd`` ``imagesTr/BRATS_001.nii.gz`` 4D float32
    (FLAIR, T1w, T1gd, T2w), ``labelsTr/`` (1 ED, 2 NET, 3 ET) and ``dataset.json``; ``nnunet`` nnU-Net v2's raw
    format in nnU-Net's Dataset137 numbering (1 oedema, 2 non-enhancing, 3 enhancing, 4 RC with ``rc``).

    Args:
        channels: ``nnunet`` only: the contrasts to write, in this order (e.g. ``("T1ce",)``). Default: all four.
        rc: ``nnunet`` only: a resection cavity in `RC_FRACTION` of the cases; ``brats2024`` always has one.
        option: how the caller names ``out_dir`` in a refusal (``--data-dir`` for the demo).
        force: write into a folder that already holds NIfTI files (overwriting cases of the same name).

    A folder this function wrote with the same settings (``synthetic.json``) is left as it is; a folder holding
    other NIfTI files is refused unless ``force`` (synthetic names are BraTS's own).

    Returns:
        The case folders (``msd``: the 4D image files; ``nnunet``: the ``_0000`` image files), in case order.

    Raises:
        ValueError: an unknown ``layout``, a negative ``cases`` or ``seed``, a bad ``shape``, ``channels`` or ``rc``
            with a layout that does not take them, or an unknown channel name.
        UserError: ``out_dir`` already holds NIfTI files other than these synthetic cases and not ``force``.
    """

    if layout not in SUPPORTED_LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; supported layouts: {', '.join(SUPPORTED_LAYOUTS)}")
    if int(cases) < 0:
        raise UserError(f"cases must be >= 0, got {cases}")
    if int(seed) < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    if channels is not None and layout != "nnunet":
        raise UserError(f"channels {list(channels)} apply to layout nnunet only; the {layout} layout holds the four "
                         "contrasts")
    if rc and layout not in ("nnunet", "brats2024"):
        raise UserError(f"rc (a resection cavity, label 4) applies to layout nnunet; for BraTS names use layout "
                         f"brats2024 (it always adds one): in the {layout} layout's numbering 4 means something else "
                         "or nothing")
    contrasts = contrasts_of(channels)
    with_rc = bool(rc) or layout == "brats2024"
    shape = _check_shape(shape)
    affine = brats_affine(shape)
    out = Path(out_dir).expanduser()
    refuse_dataset_inside_dataset(out, "synthetic cases", option)  # not among another dataset's files
    settings: dict = {"cases": int(cases), "shape": list(shape), "seed": int(seed), "layout": layout}
    if layout == "nnunet":  # new options only where they apply, so earlier folders' settings still match
        settings["channels"] = [CHANNEL_NAMES[c] for c in contrasts]
    if with_rc:
        settings["rc"] = True
    existing = _existing_cases(out, settings)  # (read only: a read-only folder of these cases is used as it is)
    if existing is not None:
        return existing
    with FolderLock(out, what="synthetic data"):  # one writer: two at once would mix their cases
        existing = _existing_cases(out, settings)  # written by the holder of the lock just released
        if existing is not None:
            return existing
        ids = [f"BRATS_{i + 1:03d}" if layout == "msd" else f"BraTS2021_{i:05d}" if layout in ("brats2021", "nnunet")
               else f"BraTS-GLI-{i:05d}-000" for i in range(int(cases))]
        planned = _planned(out, layout, ids)
        _refuse_occupied(out, force, planned, resumed=_interrupted(out, settings))
        before, ours_before = set(_files(out)), _ours(out)  # synth's own, by the record it is about to replace
        if force and not _interrupted(out, settings):  # --force replaces synth's earlier cases, not only some
            for f in ours_before - {out / SETTINGS_FILE}:
                f.unlink(missing_ok=True)
            _remove_empty_folders(out)
            before, ours_before = set(_files(out)), set()
        out.mkdir(parents=True, exist_ok=True)
        kept = {f.relative_to(out).as_posix(): file_sha256(f) for f in ours_before if f != out / SETTINGS_FILE}
        atomic_write_text(out / SETTINGS_FILE, json.dumps({  # first: a stopped synth's files are known as its own
            **settings, "cases_written": [], "files_written": kept,
            WRITING: [f.relative_to(out).as_posix() for f in planned]}))
        written = []
        roles = {code: role for code, role in ROLES.items() if with_rc or role != "RC"}
        for i in range(int(cases)):
            rng = np.random.default_rng([int(seed), i])
            enhancing = bool(rng.random() >= NON_ENHANCING_FRACTION)
            rc_rng = _rc_generator(seed, i) if with_rc else None
            images, seg = synth_case(shape, rng=rng, enhancing=enhancing, rc_rng=rc_rng)
            by_channel = {CHANNEL_NAMES[key]: image for key, image in images.items()}
            labels = relabel(seg, roles, LAYOUT_NUMBERING[layout])
            if layout == "msd":
                written.append(msd.write_case(out, f"BRATS_{i + 1:03d}", by_channel, labels, affine))
            elif layout == "nnunet":
                written.append(nnunet.write_case(out, f"BraTS2021_{i:05d}", [images[c] for c in contrasts], labels,
                                                 affine))
            elif layout == "brats2021":
                written.append(brats.write_case(out, f"BraTS2021_{i:05d}", by_channel, labels, affine, brats.BRATS2021))
            else:
                written.append(brats.write_case(out, f"BraTS-GLI-{i:05d}-000", by_channel, labels, affine,
                                                brats.BRATS2023))
        if layout == "msd":
            msd.write_dataset_json(out, [p.name for p in written])
        if layout == "nnunet":
            nnunet.write_dataset_json(out, nnunet_dataset_json(contrasts, len(written), with_rc))
        names = [p.relative_to(out).as_posix() for p in written]
        files = sorted({f for f in _files(out) if f not in before} | {
            f for f in ours_before if f.exists() and f != out / SETTINGS_FILE})
        digests = {f.relative_to(out).as_posix(): file_sha256(f) for f in files}  # what synth wrote, by content
        atomic_write_text(out / SETTINGS_FILE, json.dumps({**settings, "cases_written": names,
                                                           "files_written": digests}))
        return written


#: What `write_dataset` records in its folder: its settings and the cases it wrote.
SETTINGS_FILE = "synthetic.json"
#: The keys every such record holds: a file of that name without them is not synth's.
RECORD_KEYS = frozenset({"cases", "shape", "seed", "layout", "cases_written"})


def _files(folder: Path) -> list[Path]:
    """Every file below ``folder``, at any depth (a BraTS 2018 download keeps its images three levels down), and
    every link to a folder there (synth writes none: a case folder linked from a user's dataset is theirs, and
    writing through it would replace their files)."""
    if not folder.is_dir():
        return []
    lock = folder / FolderLock.NAME  # the writer's own lock (`write_dataset`) is no file of the data
    return sorted(p for root, dirs, names in os.walk(folder) for name in [*names, *dirs]
                  if (p := Path(root) / name) != lock and (name in names or p.is_symlink()))


def _ours(out: Path) -> set[Path]:
    """The files an earlier `write_dataset` wrote in ``out`` and that still hold what it wrote (its
    ``synthetic.json`` records each file's sha256: a file the user replaced or edited since is theirs), and that
    record itself. Records from before digests were kept name the files only; older ones, the case folders (then
    the NIfTI files in them named after their case count: a user's note beside them is theirs)."""
    try:
        recorded = read_json(out / SETTINGS_FILE)
    except (OSError, ValueError):
        return set()
    if not isinstance(recorded, dict) or not RECORD_KEYS <= set(recorded):
        return set()  # a synthetic.json of the user's own: not ours, and nothing it names is
    written = recorded.get("files_written")
    writing = [out / w for w in recorded.get(WRITING) or [] if _inside(w)]
    stopped = {f for f in _files(out) if any(_under(f, w) for w in writing)}  # a stopped synth's, not yet digested
    if isinstance(written, dict):
        return {out / SETTINGS_FILE, *stopped, *(out / f for f, digest in written.items()
                                                 if (out / f).is_file() and file_sha256(out / f) == digest)}
    ours = {out / SETTINGS_FILE, *(out / f for f in written or [] if _inside(f))}
    if written is None:  # records before files_written: the case folders' files
        for name in recorded.get("cases_written") or []:
            path = out / name
            ours |= {f for f in _files(path) if f.parent == path and f.name.startswith(path.name)
                     and f.name.endswith(".nii.gz")} if path.is_dir() else {path}
    return ours


#: The key of a record written before the cases: the places being written (a stopped synth leaves it).
WRITING = "writing"


def _inside(name: object) -> bool:
    """Whether a record's ``name`` is a place below its folder: relative, not empty, nothing above it (a record edited
    or made by hand never claims the folder itself, or anything outside it)."""
    parts = Path(name).parts if isinstance(name, str) else ()
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and parts != (".",)


def _under(f: Path, target: Path) -> bool:
    """Whether the file ``f`` is ``target``, lies below it, or is a file named after it (``imagesTr/<case>_0000``)."""
    return (f == target or target in f.parents
            or (f.parent == target.parent and f.name.startswith(target.name) and f.name[len(target.name):][:1] in "._"))


def _interrupted(out: Path, settings: dict) -> bool:
    """Whether ``out``'s record is that of a synth with ``settings`` stopped while writing (`WRITING`)."""
    try:
        recorded = read_json(out / SETTINGS_FILE)
    except (OSError, ValueError):
        return False
    return (isinstance(recorded, dict) and WRITING in recorded
            and {k: v for k, v in recorded.items() if k not in (WRITING, "cases_written", "files_written")} == settings)


def _planned(out: Path, layout: str, case_ids: list[str]) -> list[Path]:
    """Where the cases (and the dataset.json) will be written: a BraTS case folder, or the MSD/nnU-Net files."""
    if layout in ("msd", "nnunet"):
        return [out / "dataset.json", *(out / sub / cid for sub in ("imagesTr", "labelsTr") for cid in case_ids)]
    return [out / cid for cid in case_ids]

def _existing_cases(out: Path, settings: dict) -> list[Path] | None:
    """The cases of ``out`` when `write_dataset` already wrote them there with ``settings``, else None."""
    try:
        recorded = read_json(out / SETTINGS_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict):
        return None
    names = recorded.pop("cases_written", None)
    recorded.pop("files_written", None)
    if WRITING in recorded or recorded != settings or not names or not all((out / n).exists() for n in names):
        return None
    logger.info("%s already holds these %d synthetic case(s) (%s): nothing to write", out, len(names), SETTINGS_FILE)
    return [out / n for n in names]


def remove_synthetic(folder: str | os.PathLike) -> list[Path]:
    """Delete the files `write_dataset` wrote in ``folder`` (those its ``synthetic.json`` names, and that record),
    then the folders that became empty; files synth did not write stay (``synth --force`` writes beside them).
    Returns the files kept. ``make clean`` calls it (`pipeline.demo.clean_demo`).

    Raises:
        UserError: a live process writes the folder (synth, or a demo writing into it).
    """
    out = Path(folder)
    if not (out / SETTINGS_FILE).is_file():  # synth wrote nothing here: nothing to delete, nothing written either
        return _files(out)
    with FolderLock(out, what="clean"):  # refused while synth writes here
        ours = _ours(out)
        for f in ours:
            f.unlink(missing_ok=True)
        kept = [f for f in _files(out)]
        _remove_empty_folders(out)
    with contextlib.suppress(OSError):
        out.rmdir()
    return kept


def _remove_empty_folders(out: Path) -> None:
    """Remove the folders below ``out`` that are empty (the deepest first); ``out`` itself stays."""
    for root, _, _ in sorted(os.walk(out), key=lambda t: -len(Path(t[0]).parts)):
        if Path(root) != out:
            with contextlib.suppress(OSError):
                Path(root).rmdir()  # only an empty one


def _refuse_occupied(out: Path, force: bool, planned: list[Path], *, resumed: bool = False) -> None:
    """Refuse a folder holding files that synth did not write (at any depth, of any kind); with ``force`` write
    beside them, but never over one of them. Synth's own files of other settings need ``force`` too, not those of
    a synth with the same settings that was stopped (``resumed``: its cases are written again).

    Raises:
        UserError: naming a foreign file and the way out.
    """
    ours = _ours(out)
    existing = [f for f in _files(out) if f != out / SETTINGS_FILE or f not in ours]
    foreign = [f for f in existing if f not in ours]
    planned = [*planned, out / SETTINGS_FILE]  # written last, over nothing synth did not write
    if foreign and not force:
        raise UserError(f"{out} already holds {len(foreign)} file(s) that synth did not write (e.g. {foreign[0]}); "
                        "synthetic cases carry BraTS's own case names and could replace them: choose an empty folder "
                        "(--force writes beside them, never over them)")
    if existing and not force and not resumed:
        raise UserError(f"{out} already holds {len(existing)} file(s) of synthetic cases written with other settings "
                        f"(see {out / SETTINGS_FILE}): choose another folder, or pass --force to replace them")
    hit = [f for f in foreign for target in planned  # a linked folder above a file synth would write too
           if _under(f, target) or f in target.parents]
    if hit:
        raise UserError(f"{hit[0]} was not written by synth and synth would write over it: --force never "
                        "writes over a file synth did not write; choose an empty folder")

def nnunet_dataset_json(contrasts: Sequence[str] = CONTRASTS, cases: int = 0, rc: bool = False) -> dict:
    """The ``dataset.json`` of a synthetic nnU-Net dataset: nnU-Net v2 keys, the labels and regions of nnU-Net's
    own BraTS 2021 conversion (Dataset137_BraTS21: 1 oedema, 2 non-enhancing, 3 enhancing; regions whole tumour,
    tumour core, enhancing tumour written as 1, 2, 3), plus a fourth region "resection cavity" (label 4) with
    ``rc``."""
    n = NUMBERING["nnunet-brats21"]
    labels: dict[str, int | list[int]] = {"background": 0, "whole tumor": sorted([n["ED"], n["NCR"], n["ET"]]),
                                          "tumor core": sorted([n["NCR"], n["ET"]]), "enhancing tumor": n["ET"]}
    order = [n["ED"], n["NCR"], n["ET"]]
    if rc:
        labels["resection cavity"] = n["RC"]
        order.append(n["RC"])
    return {
        "name": "Dataset137_BraTS21_synthetic",
        "description": "Synthetic BraTS-like cases in nnU-Net v2's raw format (python -m pipeline synth --layout "
                       "nnunet), labelled as nnU-Net's Dataset137_BraTS21" + (" plus 4 resection cavity" if rc else ""),
        "channel_names": {str(k): CHANNEL_NAMES[c] for k, c in enumerate(contrasts)},
        "labels": labels,
        "regions_class_order": order,
        "numTraining": int(cases),
        "file_ending": ".nii.gz",
    }


