"""The MONAI transforms of the shared preprocessing: `SelectChannelsd` (an MSD 4D image's channels into the
description's order), `LabelsToRegionsd` (labels ``(1, H, W, D)`` -> regions ``(R, H, W, D)`` bool in the
description's order), `ResampleToSpacingd` (a coarser voxel for a budget, inverted onto the input's grid) and
`NormalizeBraind` (each channel's intensities inside the brain: z-score or 5th-95th percentiles)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import FgBgToIndicesd, InvertibleTransform, MapTransform, NormalizeIntensity
from monai.transforms.inverse import TraceableTransform
from monai.utils import TraceKeys

from pipeline.core.config import as_bool
from pipeline.core.errors import UserError
from pipeline.data.labels import describe, has_ignore, join_ignore, labels_to_regions, regions_with_ignore, split_ignore


class SelectChannelsd(MapTransform):
    """Reorder (or select) the channels of a loaded image: ``image[channel_index]``, when the item has an index.

    Args:
        keys: the image key(s), loaded channel-first ``(C, H, W, D)``.
        index_key: the item key holding the index (``channel_index``: position in the file of each channel
            of the data's description); it is removed from the item. An item without it is unchanged.
        n_channels: the description's channel count (``$len(@channels)`` in common.yaml), which the index must
            list; None: any count.

    Raises:
        ValueError: the index does not fit the image (naming the case and the file).
    """

    def __init__(self, keys: KeysCollection, index_key: str = "channel_index", allow_missing_keys: bool = False,
                 n_channels: int | None = None) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index_key = index_key
        self.n_channels = n_channels

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        index = d.pop(self.index_key, None)
        if index is None:
            return d
        order = [int(i) for i in (index.tolist() if hasattr(index, "tolist") else index)]
        for key in self.key_iterator(d):
            img = d[key]
            n = int(img.shape[0])
            wrong_count = self.n_channels is not None and len(order) != self.n_channels
            if wrong_count or not all(0 <= i < n for i in order) or n < len(order) or (
                    n != len(order) and len(order) in tuple(img.shape[1:])):
                source = getattr(img, "meta", {}).get("filename_or_obj", key)
                raise UserError(
                    f"case {d.get('case', '?')}: {source} loads as {n} channel(s) of shape {tuple(img.shape[1:])} but "
                    f"{self.index_key} is {order}: its {len(order)} contrasts must lie on the last axis of the file, "
                    f"(X, Y, Z, {len(order)}); check it with python -m pipeline check and move the channel axis last"
                )
            d[key] = img[order]
        return d


class LabelsToRegionsd(MapTransform):
    """Label map ``(1, H, W, D)`` or ``(H, W, D)`` in ``scheme`` -> regions ``(R, H, W, D)`` bool.

    The regions of the scheme's description (`pipeline.data.labels.describe`), in its order: for ``brats``,
    ``brats2023`` and ``msd`` TC = NCR | ET, WT = NCR | ED | ET, ET = ET with the scheme's values; ``brats2024``
    WT, TC, ET and RC; ``ped`` TC = ET | NET | CC (1, 2, 3), WT = TC | ED (4), ET = 1. Values outside the scheme
    count as background; ``python -m pipeline check`` reports them.
    """

    def __init__(self, keys: KeysCollection, scheme: str = "brats", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scheme = scheme
        # resolved once, when the config is built (an unknown scheme fails here): a dataset.json's regions are
        # part of what the on-disk cache's key describes (`pipeline.training.cache.transform_hash`)
        self.description = describe(scheme)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.regions(d[key])
        return d

    def regions(self, label: torch.Tensor) -> torch.Tensor:
        """``(1, H, W, D)``/``(H, W, D)`` -> ``(R, H, W, D)`` bool (a MetaTensor stays one, with its metadata)."""
        if label.ndim == 4 and label.shape[0] == 1:
            label = label[0]
        if self.description.ignore is not None:
            return regions_with_ignore(torch.as_tensor(label), self.description)
        return labels_to_regions(label, self.description)


#: The intensity normalisations of `NormalizeBraind` (common.yaml's ``normalization``), the default first.
NORMALIZATIONS = ("zscore", "percentile")


def parse_normalization(value: object) -> str:
    """The ``normalization`` id as a name of `NORMALIZATIONS` (None: the default, ``zscore``).

    Raises:
        UserError: another value, naming the choices.
    """
    if value is None:
        return NORMALIZATIONS[0]
    if str(value) not in NORMALIZATIONS:
        raise UserError(f"--normalization {value!r}: expected one of {', '.join(NORMALIZATIONS)}")
    return str(value)


class NormalizeBraind(MapTransform):
    """Normalise each channel of an image ``(C, H, W, D)`` inside the brain (its nonzero voxels; the background
    stays 0), to float32:

    - ``zscore``: ``(x - mean) / sd``, MONAI's ``NormalizeIntensity`` (``nonzero``, ``channel_wise``: its own
      arguments, True by default here), the recipe's;
    - ``percentile``: ``(x - p5) / (p95 - p5)``, the brain's 5th and 95th percentiles per channel: statistics a
      large tumour moves less than the mean and sd (docs/recipe.md), so that its oedema keeps its level.

    A channel without spread (sd or ``p95 - p5`` of 0) is only shifted.

    Raises:
        UserError: ``method`` is none of `NORMALIZATIONS`, or ``percentile`` with ``nonzero`` or ``channel_wise``
            off (it is computed per channel inside the brain only).
    """

    def __init__(self, keys: KeysCollection, method: str = "zscore", nonzero: bool = True,
                 channel_wise: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.method = parse_normalization(method)
        self.nonzero, self.channel_wise = as_bool(nonzero, "normalize#nonzero"), as_bool(channel_wise,
                                                                                           "normalize#channel_wise")
        if self.method == "percentile" and not (self.nonzero and self.channel_wise):
            raise UserError("--normalization percentile is computed per channel inside the brain: drop "
                            "normalize#nonzero / normalize#channel_wise false (they apply to zscore)")
        self._zscore = NormalizeIntensity(nonzero=self.nonzero, channel_wise=self.channel_wise)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._zscore(d[key]) if self.method == "zscore" else _percentile_normalize(d[key])
        return d


def _percentile_normalize(img: torch.Tensor) -> torch.Tensor:
    """``img`` ``(C, H, W, D)`` -> float32, each channel's nonzero voxels mapped by ``(x - p5) / (p95 - p5)`` of
    those voxels (a voxel at p5 becomes 0, as the background stays)."""
    out = img.to(torch.float32).clone()
    for c in range(out.shape[0]):
        channel = out[c]
        brain = channel != 0
        if not bool(brain.any()):
            continue
        low, high = np.percentile(channel[brain].double().cpu().numpy(), [5, 95])
        scale = float(high - low) or 1.0
        channel[brain] = ((channel[brain].double() - float(low)) / scale).to(torch.float32)
    return out


def parse_spacing(spacing: object) -> list[float] | None:
    """``--spacing`` as three voxel sizes in mm, or None (``null``, ``"none"``, ``""``: the data's own voxels); one
    number or ``"[2, 2, 2]"`` as text are read too. The one reading of the id: whether volumes are resampled (and
    label regions become soft, area-averaged targets), and what run.json records."""
    if spacing is None or spacing == "" or (isinstance(spacing, str) and spacing.strip().lower() in ("none", "null")):
        return None
    if isinstance(spacing, str) and spacing.strip().startswith("["):  # "[2, 2, 2]" as text
        spacing = [v for v in spacing.strip()[1:-1].split(",") if v.strip()]
    values = spacing if isinstance(spacing, (list, tuple)) else [spacing] * 3
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 3 or not all(n > 0 for n in numbers):
        raise UserError(f"--spacing {spacing!r}: give a voxel size in mm (2) or three ([2, 2, 2]), or null for the "
                        "data's own")
    return numbers


class ResampleToSpacingd(MapTransform, InvertibleTransform):
    """Resample ``(C, H, W, D)`` volumes to a voxel ``spacing`` (mm) by area averaging, and back by linear
    interpolation when inverted (a prediction made at that spacing returns to the input's grid).

    Area averaging is the right low-pass for a downsampling: a label region becomes the fraction of each coarse
    voxel it covers (a soft target), and a thin enhancing rim is not lost between samples. The grids share their
    outer corners (``align_corners=False``), and the affine follows. ``spacing`` None leaves the data as it is.
    Floating output (float32); an axis that would be upsampled is interpolated linearly instead.

    Args:
        keys: the image (and, in training, the label regions).
        spacing: the target voxel size in mm, one number or one per axis, or None.
    """

    def __init__(self, keys: KeysCollection, spacing: float | Sequence[float] | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing = parse_spacing(spacing)

    def _size(self, img: torch.Tensor) -> list[int]:
        pixdim = [float(p) for p in (img.pixdim if isinstance(img, MetaTensor) else [1.0, 1.0, 1.0])]
        return [max(1, round(n * p / s)) for n, p, s in zip(img.shape[1:], pixdim, self.spacing, strict=True)]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if not isinstance(img, MetaTensor):
                img = MetaTensor(img)
            old = [int(n) for n in img.shape[1:]]
            new = old if self.spacing is None else self._size(img)
            # label regions (integers, as LabelsToRegionsd makes them; images are floating) with unannotated voxels:
            # the marker is not interpolated
            if new != old and not torch.is_floating_point(img) and has_ignore(img):
                split = MetaTensor(split_ignore(img.as_tensor()), meta=dict(img.meta))
                split.applied_operations = list(img.applied_operations)
                res = _resample(split, new, old, transform_info=self.get_transform_info(), trace=True)
                out = MetaTensor(join_ignore(res.as_tensor()), meta=dict(res.meta))
                out.applied_operations = list(res.applied_operations)
                d[key] = out
                continue
            d[key] = _resample(img, new, old, transform_info=self.get_transform_info(), trace=True)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            transform = self.pop_transform(d[key])
            old = [int(n) for n in transform[TraceKeys.ORIG_SIZE]]
            with self.trace_transform(False):
                d[key] = _resample(d[key], old, [int(n) for n in d[key].shape[1:]], transform_info=None, trace=False)
        return d


def _resample(img: MetaTensor, new: Sequence[int], old: Sequence[int], *, transform_info: dict | None,
              trace: bool) -> MetaTensor:
    """``img`` ``(C, *old)`` resized to ``new``: area averaging where every axis shrinks, else linear; the affine
    scaled about the grids' common outer corners."""
    ratio = [o / n for o, n in zip(old, new, strict=True)]
    xform = torch.eye(4, dtype=torch.double)
    for axis, r in enumerate(ratio):
        xform[axis, axis], xform[axis, 3] = r, 0.5 * r - 0.5
    meta = TraceableTransform.track_transform_meta(img, sp_size=list(new), affine=xform, orig_size=list(old),
                                                   transform_info=transform_info, lazy=False) if trace else None
    x = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    if list(new) != list(old):
        x = x.float()[None]
        mode = "area" if all(n <= o for n, o in zip(new, old, strict=True)) else "trilinear"
        x = (F.interpolate(x, size=list(new), mode=mode) if mode == "area"
             else F.interpolate(x, size=list(new), mode=mode, align_corners=False))[0]
    out = MetaTensor(x, meta=dict(img.meta)) if isinstance(img, MetaTensor) else MetaTensor(x)
    out.applied_operations = list(img.applied_operations) if isinstance(img, MetaTensor) else []
    if meta is not None:
        return out.copy_meta_from(meta)
    out.affine = out.affine @ xform.to(out.affine.dtype)  # output voxel -> input voxel, as in the forward pass
    return out


class TumourIndicesd(FgBgToIndicesd):
    """MONAI's `FgBgToIndicesd` with the tumour as foreground: a voxel of any region, not an unannotated one.

    ``label``: regions ``(R, H, W, D)`` (0/1, area-averaged fractions, or `IGNORE_TARGET` where nnU-Net's ``ignore``
    label marks a voxel unannotated). MONAI counts every non-zero voxel as foreground, so the marker would make the
    unannotated area "tumour" and most tumour-centred crops would land there; here those voxels are neither
    foreground nor background centres. Writes ``<key>_fg_indices`` and ``<key>_bg_indices`` as MONAI does.
    """

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.image_key] if self.image_key else None
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key])
            if has_ignore(label):
                annotated = (label <= 1).all(0, keepdim=True)
                image = (torch.as_tensor(image) if image is not None else torch.ones_like(label[:1])) * annotated
                image = torch.where(annotated, image, torch.full_like(image, -torch.inf))  # below any threshold
                label = torch.where(label > 1, torch.zeros_like(label), label)
            d[str(key) + self.fg_postfix], d[str(key) + self.bg_postfix] = self.converter(label, image)
        return d
