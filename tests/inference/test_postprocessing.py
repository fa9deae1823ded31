"""Post-processing of the region masks: small enhancing tumours, small islands; each against an independent count."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import RemoveSmallObjectsd

from pipeline.inference.postprocessing import SmallEnhancingToNecrosisd


@pytest.mark.parametrize("scheme", ["brats", "brats2023", "msd", "brats2024", "ped"])
@pytest.mark.parametrize(
    ("et_voxels", "min_voxels", "et_kept"),
    [
        pytest.param(10, 20, False, id="small_et_becomes_necrosis"),
        pytest.param(30, 20, True, id="large_et_is_kept"),
        pytest.param(10, 0, True, id="zero_threshold_is_off"),
        pytest.param(0, 20, True, id="no_et_stays_empty"),
    ],
)
def test_small_enhancing_tumour_is_written_as_the_necrosis_label_of_its_scheme(
        scheme: str, et_voxels: int, min_voxels: int, et_kept: bool) -> None:
    import numpy as np

    from pipeline.data.labels import describe, labels_to_regions, regions_to_labels

    desc = describe(scheme)
    code = desc.roles
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:8, 2:8, 2:8] = code["ED"]
    labels[3:7, 3:7, 3:7] = code["NCR"]
    labels.reshape(-1)[np.flatnonzero(labels == code["NCR"])[:et_voxels]] = code["ET"]
    if "RC" in code:
        labels[0, 0, :4] = code["RC"]  # a cavity beside the tumour: untouched
    expected = labels.copy()
    if not et_kept:
        expected[labels == code["ET"]] = code["NCR"]  # BraTS 1, MSD 2
    regions = torch.as_tensor(labels_to_regions(labels, desc))
    out = SmallEnhancingToNecrosisd("pred", min_voxels, description=desc)({"pred": regions})["pred"]
    np.testing.assert_array_equal(regions_to_labels(out.numpy() > 0.5, desc), expected)


def test_small_enhancing_tumour_needs_the_roles_of_its_labels() -> None:
    from pipeline.core.errors import UserError
    from pipeline.data.labels import from_dataset_json

    desc = from_dataset_json({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": 1, "b": 2}})
    with pytest.raises(UserError, match=r"min_et_voxels needs an enhancing-tumour region .* leave --min_et_voxels 0"):
        SmallEnhancingToNecrosisd("pred", 50, description=desc)  # which label is necrosis? nothing says
    assert SmallEnhancingToNecrosisd("pred", 0, description=desc).min_voxels == 0  # off: nothing to find


def test_small_enhancing_tumour_of_nnunets_brats_regions_becomes_their_core_label() -> None:
    """nnU-Net's Dataset137 (whole tumor [1, 2, 3] > tumor core [2, 3] > enhancing tumor [3]) states ET 3 and the
    core's own label 2 by its regions: the rule runs there too (it was refused for want of roles)."""
    import numpy as np

    from pipeline.data.labels import from_dataset_json, labels_to_regions, regions_to_labels

    desc = from_dataset_json(DATASET137_RC)
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    labels[3:7, 3:7, 3:7] = 2
    labels[4, 4, 4:6] = 3            # two enhancing voxels
    labels[0, 0, :4] = 4             # a resection cavity: untouched
    regions = torch.as_tensor(labels_to_regions(labels, desc))
    out = SmallEnhancingToNecrosisd("pred", 50, description=desc)({"pred": regions})["pred"]
    expected = np.where(labels == 3, 2, labels)
    np.testing.assert_array_equal(regions_to_labels(out.numpy() > 0.5, desc), expected)


def test_component_removal_drops_small_islands_per_region() -> None:
    r = torch.zeros(3, 12, 12, 12)
    r[1, 1:6, 1:6, 1:6] = 1  # a 125-voxel WT component
    r[1, 10, 10, 10] = 1     # a 1-voxel WT island
    r[2, 10, 1, 1] = 1       # a 1-voxel ET island
    out = RemoveSmallObjectsd("pred", min_size=5, connectivity=3, independent_channels=True)({"pred": r})["pred"]
    assert int(out[1].sum()) == 125 and int(out[2].sum()) == 0


@pytest.mark.parametrize(
    ("fraction", "kept_islands"),
    [
        pytest.param(0.0, 2, id="zero_is_off"),
        pytest.param(0.03, 2, id="both_islands_above_the_share"),
        pytest.param(0.05, 1, id="the_smaller_island_goes"),
        pytest.param(0.2, 0, id="both_islands_go_with_their_core_and_et"),
        pytest.param(1.0, 0, id="largest_only"),
    ],
)
def test_whole_tumour_components_below_a_share_of_the_largest_are_dropped(fraction: float,
                                                                           kept_islands: int) -> None:
    from scipy import ndimage

    from pipeline.inference.postprocessing import KeepMainTumourd

    r = torch.zeros(3, 40, 40, 40)                 # TC, WT, ET
    r[1, 2:14, 2:14, 2:14] = 1                     # the tumour: 1,728 WT voxels
    r[0, 4:10, 4:10, 4:10] = r[2, 5:8, 5:8, 5:8] = 1
    r[1, 30:35, 30:35, 30:35] = 1                  # an island of 125 voxels (7 %), with core and ET inside
    r[0, 31:34, 31:34, 31:34] = r[2, 32, 32, 32] = 1
    r[1, 20:24, 30:34, 2:6] = 1                    # another of 64 (4 %)
    out = KeepMainTumourd("pred", fraction)({"pred": r})["pred"]
    _, n = ndimage.label(out[1].numpy() > 0.5, structure=torch.ones(3, 3, 3).numpy())
    assert n == 1 + kept_islands
    assert torch.equal(out[:, 2:14, 2:14, 2:14], r[:, 2:14, 2:14, 2:14])   # the tumour itself is untouched
    island = slice(30, 35)                                                  # the larger island, core and ET
    assert bool(out[:, island, island, island].any()) == (kept_islands >= 1)
    assert bool(out[2, island, island, island].any()) == (kept_islands >= 1)
    assert bool(((out[0] > 0) & (out[1] == 0)).any()) is False              # TC and ET stay inside WT
    assert bool(((out[2] > 0) & (out[0] == 0)).any()) is False


def test_dropping_components_needs_a_whole_tumour_region() -> None:
    from pipeline.core.errors import UserError
    from pipeline.data.labels import from_dataset_json
    from pipeline.inference.postprocessing import KeepMainTumourd

    plain = from_dataset_json({"channel_names": {"0": "T1"}, "labels": {"background": 0, "ET": 1, "RC": 2}})
    with pytest.raises(UserError, match=r"min_tumour_fraction needs a whole-tumour region .*\['ET', 'RC'\]"):
        KeepMainTumourd("pred", 0.1, description=plain)
    assert KeepMainTumourd("pred", 0, description=plain).fraction == 0  # off: nothing to find


DATASET137_RC = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
                 "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3,
                            "resection cavity": 4}, "regions_class_order": [1, 2, 3, 4]}


@pytest.mark.parametrize("scheme", ["brats", "brats2023", "msd", "brats2024", "ped", "nnunet_dataset137_rc"])
def test_a_far_lesion_goes_with_its_core_and_a_resection_cavity_outside_the_tumour_stays(scheme: str) -> None:
    import numpy as np

    from pipeline.data.labels import NUMBERING, describe, from_dataset_json, labels_to_regions, regions_to_labels
    from pipeline.inference.postprocessing import KeepMainTumourd

    desc = from_dataset_json(DATASET137_RC) if scheme.startswith("nnunet") else describe(scheme)
    code = desc.roles or NUMBERING["nnunet-brats21"]  # role -> label value in this numbering
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[2:14, 2:14, 2:14] = code["ED"]        # the tumour: oedema around a core with an enhancing rim
    labels[4:10, 4:10, 4:10] = code["NCR"]
    labels[5:8, 5:8, 5:8] = code["ET"]
    labels[30:34, 30:34, 30:34] = code["ED"]     # a far lesion of 64 voxels (4 %) with an enhancing centre
    labels[31:33, 31:33, 31:33] = code["ET"]
    expected = labels.copy()
    expected[30:34, 30:34, 30:34] = 0
    if "RC" in code and (code["RC"],) in desc.regions.values():  # a region of its own: BraTS 2024, Dataset137
        labels[20:30, 2:8, 30:38] = expected[20:30, 2:8, 30:38] = code["RC"]  # a cavity beside, not in, the tumour
    out = KeepMainTumourd("pred", 0.5, description=desc)({"pred": torch.as_tensor(labels_to_regions(labels, desc))})
    np.testing.assert_array_equal(regions_to_labels(out["pred"].numpy() > 0.5, desc), expected)
