"""Post-processing of the predicted region masks, after thresholding and before the labels are written.

`SmallEnhancingToNecrosisd` (``--min_et_voxels``, inference.yaml) works on binary masks ``(R, H, W, D)`` of
the network's region channels (TC, WT, ET for the BraTS schemes; `pipeline.data.labels.Description.regions`).
Test-time augmentation is part of the prediction (`pipeline.inference.predict`), fold ensembles are in
`pipeline.inference.ensemble`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pipeline.data.labels import REGIONS

logger = logging.getLogger(__name__)


class SmallEnhancingToNecrosisd(MapTransform):
    """Relabel an enhancing tumour smaller than ``min_voxels`` as necrosis (non-enhancing core).

    On binary regions ``(R, H, W, D)`` in ``regions`` order, which must hold TC, WT and ET (any order, other regions
    untouched): when ``0 < |ET| < min_voxels`` the ET channel is cleared
    and its voxels stay in TC (and WT), so they are written as label 1. BraTS scores an empty ET as Dice 1
    when the reference ET is empty too, and a few false-positive ET voxels as 0, so a small predicted ET
    is more often a loss than a gain (Jiang et al., BraTS 2020 winner, used 500 voxels at 1 mm).
    ``min_voxels = 0`` turns it off.
    """

    def __init__(self, keys: KeysCollection, min_voxels: int = 0, allow_missing_keys: bool = False,
                 regions: Sequence[str] = REGIONS) -> None:
        super().__init__(keys, allow_missing_keys)
        if min_voxels < 0:
            raise ValueError(f"min_voxels must be >= 0, got {min_voxels}")
        self.min_voxels = int(min_voxels)
        self.regions = list(regions)
        if self.min_voxels and not {"TC", "WT", "ET"} <= set(self.regions):
            raise ValueError(f"min_et_voxels needs the regions TC, WT and ET; this network has {self.regions}: "
                             "leave --min_et_voxels 0")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        if self.min_voxels == 0:
            return d
        tc, wt, et = (self.regions.index(r) for r in ("TC", "WT", "ET"))
        for key in self.key_iterator(d):
            regions = d[key]
            n_et = int((regions[et] > 0.5).sum())
            if 0 < n_et < self.min_voxels:
                regions = regions.clone()
                moved = regions[et] > 0.5
                regions[tc][moved] = 1
                regions[wt][moved] = 1
                regions[et] = 0
                d[key] = regions
                logger.info("%s: enhancing tumour of %d voxels (< %d) relabelled as necrosis",
                            d.get("case", key), n_et, self.min_voxels)
        return d
