"""The label table: regions and labels convert both ways, exactly as MONAI's BraTS transform does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from pipeline.data.labels import REGIONS, allowed_labels, labels_to_regions, regions_to_labels, scheme_labels


def _random_labels(scheme: str, shape=(12, 10, 8), seed=0) -> np.ndarray:
    values = sorted(allowed_labels(scheme))
    return np.random.default_rng(seed).choice(values, size=shape).astype(np.uint8)


@pytest.mark.parametrize("scheme", [pytest.param("brats", id="brats2021_et_is_4"),
                                    pytest.param("brats2023", id="brats2023_et_is_3")])
def test_labels_to_regions_matches_monai_brats_transform(scheme: str) -> None:
    label = _random_labels(scheme)
    ours = labels_to_regions(label, scheme)
    monai = ConvertToMultiChannelBasedOnBratsClasses(et_label=scheme_labels(scheme)["ET"])(torch.as_tensor(label))
    np.testing.assert_array_equal(ours, np.asarray(monai).astype(bool))


@pytest.mark.parametrize("scheme", ["brats", "brats2023"])
def test_regions_to_labels_inverts_labels_to_regions(scheme: str) -> None:
    label = _random_labels(scheme, seed=3)
    back = regions_to_labels(labels_to_regions(label, scheme), scheme)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, label)


@pytest.mark.parametrize(
    ("tc", "wt", "et", "expected"),
    [
        pytest.param(0, 0, 0, 0, id="nothing_is_background"),
        pytest.param(0, 1, 0, 2, id="wt_only_is_oedema"),
        pytest.param(1, 1, 0, 1, id="tc_is_necrosis"),
        pytest.param(1, 1, 1, 4, id="et_wins_over_tc_and_wt"),
        pytest.param(0, 0, 1, 4, id="et_outside_wt_still_et"),
        pytest.param(1, 0, 0, 1, id="tc_outside_wt_still_necrosis"),
    ],
)
def test_regions_to_labels_puts_et_over_tc_over_wt(tc: int, wt: int, et: int, expected: int) -> None:
    regions = np.array([tc, wt, et], dtype=bool).reshape(3, 1, 1, 1)
    assert regions_to_labels(regions, "brats")[0, 0, 0] == expected


def test_region_order_is_monais_tc_wt_et() -> None:
    assert REGIONS == ("TC", "WT", "ET")


def test_unknown_scheme_error_names_the_choices() -> None:
    with pytest.raises(ValueError, match="brats2023"):
        scheme_labels("brats2020")
