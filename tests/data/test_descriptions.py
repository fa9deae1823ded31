"""Dataset descriptions (pipeline.labels): one table per dataset drives channels, regions and label writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.data.labels import (
    BUILTIN,
    NNUNET_PREFIX,
    describe,
    from_dataset_json,
    labels_to_regions,
    regions_to_labels,
)

#: nnU-Net's own BraTS 2021 conversion (Dataset137_BraTS21): 1 oedema, 2 non-enhancing, 3 enhancing.
DATASET137 = {
    "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
    "regions_class_order": [1, 2, 3],
    "numTraining": 1251,
    "file_ending": ".nii.gz",
}
#: A plain-label table with a resection cavity and a single channel.
PLAIN_RC = {"channel_names": {"0": "T1c"}, "labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4},
            "file_ending": ".nii.gz"}


def _random_labels(values, shape=(12, 10, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).choice(sorted(values), size=shape).astype(np.uint8)


#: The value a description writes back for a label its regions cannot tell from another: ped's cystic component (3)
#: lies in TC and WT exactly as NET (2) does, so it comes back as 2.
WRITTEN_AS: dict[str, dict[int, int]] = {"ped": {3: 2}}

DESCRIPTIONS = [pytest.param(BUILTIN[name], id=name) for name in BUILTIN] + [
    pytest.param(from_dataset_json(DATASET137, "Dataset137"), id="nnunet_dataset137_regions"),
    pytest.param(from_dataset_json(PLAIN_RC, "plain_rc"), id="nnunet_plain_labels_with_rc_one_channel"),
]


@pytest.mark.parametrize("desc", DESCRIPTIONS)
def test_labels_to_regions_to_labels_gives_back_every_label_its_regions_tell_apart(desc):
    label = _random_labels(desc.allowed)
    regions = labels_to_regions(label, desc)
    assert regions.shape == (len(desc.regions), *label.shape) and regions.dtype == bool
    expected = label.copy()
    for value, written in WRITTEN_AS.get(desc.name, {}).items():
        expected[label == value] = written
    np.testing.assert_array_equal(regions_to_labels(regions, desc), expected)


@pytest.mark.parametrize("desc", DESCRIPTIONS)
def test_tensors_and_arrays_give_the_same_regions(desc):
    label = _random_labels(desc.allowed, seed=1)
    np.testing.assert_array_equal(labels_to_regions(torch.as_tensor(label), desc).numpy(),
                                  labels_to_regions(label, desc))


def test_brats2024_trains_wt_tc_et_rc_and_is_scored_on_six_regions():
    desc = describe("brats2024")
    assert list(desc.regions) == ["WT", "TC", "ET", "RC"] and desc.regions["RC"] == (4,)
    assert list(desc.evaluated) == ["ET", "NETC", "SNFH", "RC", "TC", "WT"]
    assert desc.allowed == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(("wt", "tc", "et", "rc", "expected"), [
    pytest.param(1, 0, 0, 0, 2, id="wt_only_is_snfh"),
    pytest.param(1, 1, 0, 0, 1, id="tc_is_netc"),
    pytest.param(1, 1, 1, 0, 3, id="et_over_tc_over_wt"),
    pytest.param(0, 0, 0, 1, 4, id="cavity"),
    pytest.param(1, 1, 1, 1, 4, id="cavity_written_after_et"),
])
def test_brats2024_regions_are_written_back_as_netc_snfh_et_rc(wt, tc, et, rc, expected):
    regions = np.array([wt, tc, et, rc], dtype=bool).reshape(4, 1, 1, 1)
    assert regions_to_labels(regions, "brats2024")[0, 0, 0] == expected


def test_ped_trains_tc_wt_et_of_the_official_config_and_is_scored_on_et_tc_wt():
    desc = describe("ped")
    assert dict(desc.regions) == {"TC": (1, 2, 3), "WT": (1, 2, 3, 4), "ET": (1,)}  # config_ped.yaml's tc, wt, et
    assert list(desc.evaluated) == ["ET", "TC", "WT"] and desc.allowed == {0, 1, 2, 3, 4}
    assert desc.whole_tumour == "WT"


@pytest.mark.parametrize(("tc", "wt", "et", "expected"), [
    pytest.param(0, 1, 0, 4, id="wt_only_is_ed"),
    pytest.param(1, 1, 0, 2, id="tc_not_et_is_net"),
    pytest.param(1, 1, 1, 1, id="et_over_tc_over_wt"),
    pytest.param(1, 0, 0, 2, id="tc_outside_wt_is_still_net"),
    pytest.param(0, 0, 0, 0, id="background"),
])
def test_ped_regions_are_written_back_as_et_net_ed_never_cc(tc, wt, et, expected):
    regions = np.array([tc, wt, et], dtype=bool).reshape(3, 1, 1, 1)
    assert regions_to_labels(regions, "ped")[0, 0, 0] == expected


def test_nnunet_dataset137_reads_as_nnunet_writes_it():
    desc = from_dataset_json(DATASET137, "Dataset137")
    assert desc.channels == ("T1", "T1ce", "T2", "Flair")
    assert dict(desc.regions) == {"whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,)}
    assert desc.regions_class_order == (1, 2, 3) and desc.allowed == {0, 1, 2, 3}
    # nnU-Net writes region i as regions_class_order[i], in order: the same as ours, largest first
    regions = np.array([[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]], dtype=bool).reshape(3, 4, 1, 1)
    nnunet = np.zeros((4, 1, 1), np.uint8)
    for i, value in enumerate(DATASET137["regions_class_order"]):
        nnunet[regions[i]] = value
    np.testing.assert_array_equal(regions_to_labels(regions, desc), nnunet)


def test_a_description_round_trips_through_dataset_json():
    for name in BUILTIN:
        desc = describe(name)
        again = from_dataset_json(desc.to_dataset_json(), name)
        assert again.channels == desc.channels and dict(again.regions) == dict(desc.regions)
        assert again.regions_class_order == desc.regions_class_order


def test_an_nnunet_scheme_string_loads_the_dataset_json(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(PLAIN_RC))
    desc = describe(f"{NNUNET_PREFIX}{path}")
    assert desc.channels == ("T1c",) and list(desc.regions) == ["NETC", "SNFH", "ET", "RC"]


@pytest.mark.parametrize(("meta", "message"), [
    pytest.param({"labels": {"background": 0, "a": 1}}, "needs 'channel_names' and 'labels'", id="no_channels"),
    pytest.param({**DATASET137, "regions_class_order": [1, 2]}, "one label value per region", id="short_order"),
    pytest.param({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": "x"}}, "not a whole number",
                 id="text_value"),
    pytest.param({"channel_names": {"0": "T1"}, "labels": {"background": 0, "ignore": 1}}, "no foreground label",
                 id="only_background_and_ignore"),
    pytest.param({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": 1, "ignore": [2, 3]}},
                 "'ignore' label must be one value", id="ignore_of_two_values"),
    pytest.param({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": 10 ** 30}}, "is above 255",
                 id="a_value_an_8_bit_label_map_cannot_hold"),
])
def test_a_broken_dataset_json_is_refused_naming_what_is_missing(meta, message):
    with pytest.raises(UserError, match=message):
        from_dataset_json(meta, "broken")


def test_an_unknown_scheme_names_every_choice():
    with pytest.raises(UserError, match="brats2024.*nnunet:<path to dataset.json>"):
        describe("brats2020")
