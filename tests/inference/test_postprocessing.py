"""Post-processing of the region masks: small enhancing tumours, small islands; each against an independent count."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import RemoveSmallObjectsd

from pipeline.inference.postprocessing import SmallEnhancingToNecrosisd


def _regions(et_voxels: int) -> torch.Tensor:
    r = torch.zeros(3, 10, 10, 10)
    r[1, 2:8, 2:8, 2:8] = 1  # WT
    r[0, 3:7, 3:7, 3:7] = 1  # TC
    r[2].view(-1)[torch.nonzero(r[0].view(-1)).squeeze(1)[:et_voxels]] = 1  # ET inside TC
    return r


@pytest.mark.parametrize(
    ("et_voxels", "min_voxels", "et_kept"),
    [
        pytest.param(10, 20, False, id="small_et_becomes_necrosis"),
        pytest.param(30, 20, True, id="large_et_is_kept"),
        pytest.param(10, 0, True, id="zero_threshold_is_off"),
        pytest.param(0, 20, True, id="no_et_stays_empty"),
    ],
)
def test_small_enhancing_tumour_is_relabelled_as_necrosis(et_voxels: int, min_voxels: int, et_kept: bool) -> None:
    r = _regions(et_voxels)
    out = SmallEnhancingToNecrosisd("pred", min_voxels)({"pred": r})["pred"]
    assert int(out[2].sum()) == (et_voxels if et_kept else 0)
    assert torch.equal(out[0], r[0]) and torch.equal(out[1], r[1])  # the voxels stay tumour core and WT
    from pipeline.data.labels import regions_to_labels

    labels = regions_to_labels(out.numpy() > 0.5)
    assert int((labels == 4).sum()) == (et_voxels if et_kept else 0)


def test_component_removal_drops_small_islands_per_region() -> None:
    r = torch.zeros(3, 12, 12, 12)
    r[1, 1:6, 1:6, 1:6] = 1  # a 125-voxel WT component
    r[1, 10, 10, 10] = 1     # a 1-voxel WT island
    r[2, 10, 1, 1] = 1       # a 1-voxel ET island
    out = RemoveSmallObjectsd("pred", min_size=5, connectivity=3, independent_channels=True)({"pred": r})["pred"]
    assert int(out[1].sum()) == 125 and int(out[2].sum()) == 0
