"""Post-processing of the predicted region masks, after thresholding and before the labels are written.

`KeepMainTumourd` (``--min_tumour_fraction``) and `SmallEnhancingToNecrosisd` (``--min_et_voxels``, inference.yaml)
work on binary masks ``(R, H, W, D)`` of
the network's region channels (TC, WT, ET for the BraTS schemes; `pipeline.data.labels.Description.regions`).
Test-time augmentation is part of the prediction (`pipeline.inference.predict`), fold ensembles are in
`pipeline.inference.ensemble`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pipeline.core.config import as_fraction, as_int
from pipeline.core.errors import UserError
from pipeline.data.labels import Description, describe, roles_by_value

logger = logging.getLogger(__name__)


class KeepMainTumourd(MapTransform):
    """Drop the whole-tumour components smaller than ``fraction`` of the largest one, with the core and enhancing
    voxels inside them: scattered false positives away from the tumour (nnU-Net's "largest component"
    post-processing, softened so that a second lesion of comparable size stays).

    On binary regions ``(R, H, W, D)`` in the order of ``description.regions``, which must have a whole-tumour
    region (`Description.whole_tumour`: WT, or an nnU-Net dataset's ``whole tumor``): its 26-connected
    components are measured, and the regions whose labels lie within it (WT, TC, ET) are cleared outside the kept
    ones, so TC and ET stay inside WT; a region outside it (BraTS 2024's resection cavity) is left as it is.
    ``fraction = 0`` turns it off; 1 keeps the largest component only (and those of equal size).
    """

    def __init__(self, keys: KeysCollection, fraction: float | str = 0.0, allow_missing_keys: bool = False,
                 description: Description | str = "brats") -> None:
        super().__init__(keys, allow_missing_keys)
        self.fraction = as_fraction(fraction, "min_tumour_fraction")
        desc = describe(description)
        self.whole = desc.whole_tumour
        if self.fraction and self.whole is None:
            raise UserError(f"min_tumour_fraction needs a whole-tumour region (one holding the others); this network "
                            f"has {list(desc.regions)}: leave --min_tumour_fraction 0")
        self.wt = list(desc.regions).index(self.whole) if self.whole is not None else -1
        self.cleared = desc.within(self.whole) if self.whole is not None else []

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        from scipy import ndimage

        d = dict(data)
        if self.fraction == 0:
            return d
        for key in self.key_iterator(d):
            regions = d[key]
            components, n = ndimage.label(np.asarray(regions[self.wt].detach().cpu()) > 0.5,
                                          structure=np.ones((3, 3, 3)))
            if n <= 1:
                continue
            sizes = np.bincount(components.ravel())[1:]
            kept = np.flatnonzero(sizes >= self.fraction * sizes.max()) + 1
            if len(kept) == n:
                continue
            keep = torch.as_tensor(np.isin(components, kept), device=regions.device).to(regions.dtype)
            regions = regions.clone()
            regions[self.cleared] = regions[self.cleared] * keep
            d[key] = regions
            logger.info("%s: %d of %d whole-tumour components (%d voxels) smaller than %g of the largest removed",
                        d.get("case", key), n - len(kept), n, int(sizes.sum() - sizes[kept - 1].sum()),
                        self.fraction)
        return d


class SmallEnhancingToNecrosisd(MapTransform):
    """Relabel an enhancing tumour smaller than ``min_voxels`` as necrosis (the non-enhancing core).

    On binary regions ``(R, H, W, D)`` in the order of ``description.regions``, whose roles must name the enhancing
    (``ET``) and the non-enhancing core (``NCR``: NCR, NETC, MSD's NET) labels (`roles_by_value`: a built-in scheme's,
    or an nnU-Net dataset.json's label names or BraTS regions): when ``0 < |ET| < min_voxels``
    the enhancing voxels take the core's label, so each region keeps them exactly when it holds the core's label
    (TC and WT keep them, ET loses them; BraTS 2024's RC is untouched) and they are written as the core's value
    (1 in BraTS, 2 in MSD). BraTS scores an empty ET as Dice 1 when the reference ET is empty too, and a few
    false-positive ET voxels as 0, so a small predicted ET is more often a loss than a gain (Jiang et al., BraTS
    2020 winner, used 500 voxels at 1 mm). ``min_voxels = 0`` turns it off.
    """

    def __init__(self, keys: KeysCollection, min_voxels: int | str = 0, allow_missing_keys: bool = False,
                 description: Description | str = "brats") -> None:
        super().__init__(keys, allow_missing_keys)
        self.min_voxels = as_int(min_voxels, "min_et_voxels", minimum=0)
        desc = describe(description)
        by_role: dict[str, int] = {}
        for value, role in sorted(roles_by_value(desc).items()):  # built-in roles, or what a dataset.json states
            by_role.setdefault(role, value)
        et, ncr = by_role.get("ET"), by_role.get("NCR")
        values = list(desc.regions.values())
        self.et = [i for i, v in enumerate(values) if et in v and ncr not in v]  # the voxels leave these regions
        self.ncr = [i for i, v in enumerate(values) if ncr in v]                  # and join (stay in) these
        self.counted = next((i for i, v in enumerate(values) if v == (et,)), None)  # the enhancing region itself
        if self.min_voxels and (ncr is None or self.counted is None):
            raise UserError(f"min_et_voxels needs an enhancing-tumour region and to know which label is the necrosis; "
                            f"{desc.title} names no such roles (its regions: {list(desc.regions)}): leave "
                            "--min_et_voxels 0")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        if self.min_voxels == 0:
            return d
        for key in self.key_iterator(d):
            regions = d[key]
            moved = regions[self.counted] > 0.5
            n_et = int(moved.sum())
            if 0 < n_et < self.min_voxels:
                regions = regions.clone()
                for i in self.ncr:
                    regions[i][moved] = 1
                for i in self.et:
                    regions[i][moved] = 0
                d[key] = regions
                logger.info("%s: enhancing tumour of %d voxels (< %d) relabelled as necrosis",
                            d.get("case", key), n_et, self.min_voxels)
        return d
