"""BraTS 2024+ post-treatment glioma (label 4 = resection cavity): synthetic data, the check's hint, the
``brats2024`` scheme's regions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from pipeline.__main__ import main as check_main
from pipeline.data.check import check_dataset, scheme_hint
from pipeline.data.datalist import build_datalist, read_datalist
from pipeline.data.labels import CHANNELS, labels_to_regions, regions_to_labels
from pipeline.data.layouts import discover_cases
from pipeline.data.synthetic import case_has_rc, write_dataset
from tests.helpers import LAYOUT_SHAPE

SEED = 0  # with 4 cases: case 2 has no resection cavity, the others have one
N_CASES = 4


@pytest.fixture(scope="module")
def post_treatment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 4 synthetic cases (32 x 32 x 24, seed 0) in the ``brats2024`` and ``brats2023`` layouts."""
    base = tmp_path_factory.mktemp("brats2024")
    for layout in ("brats2024", "brats2023"):
        write_dataset(base / layout, cases=N_CASES, shape=LAYOUT_SHAPE, seed=SEED, layout=layout)
    return {layout: base / layout for layout in ("brats2024", "brats2023")}


def _load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _pairs(post_treatment: dict[str, Path]) -> list[tuple[int, object, object]]:
    with_rc, without = (discover_cases(post_treatment[k]) for k in ("brats2024", "brats2023"))
    return [(i, a, b) for i, (a, b) in enumerate(zip(with_rc, without, strict=True))]


# ---- synthetic data ------------------------------------------------------------------------------------------


def test_most_cases_have_a_cavity_and_the_fixture_has_one_without() -> None:
    assert [case_has_rc(SEED, i) for i in range(N_CASES)] == [True, True, False, True]
    assert np.mean([case_has_rc(s, i) for s in range(10) for i in range(16)]) == pytest.approx(7 / 8, abs=0.06)


def test_the_cavity_lies_beside_the_tumour_and_never_on_it(post_treatment) -> None:
    for i, a, b in _pairs(post_treatment):
        seg, tumour_only = _load(a.label), _load(b.label)
        cavity = seg == 4
        assert set(np.unique(seg)) <= {0, 1, 2, 3, 4}
        assert cavity.any() == case_has_rc(SEED, i)
        assert not tumour_only[cavity].any()  # the tumour of the same case is untouched
        np.testing.assert_array_equal(seg[~cavity], tumour_only[~cavity])
        if cavity.any():
            assert _load(a.images[0])[cavity].min() > 0  # inside the brain
            gap = ndimage.distance_transform_edt(tumour_only == 0)[cavity].min()
            assert 1 <= gap <= 5  # beside the tumour: not on it, not far from it


def test_the_cavity_is_fluid_dark_on_t1_and_flair_and_bright_on_t2(post_treatment) -> None:
    for i, a, _ in _pairs(post_treatment):
        if not case_has_rc(SEED, i):
            continue
        cavity, brain = _load(a.label) == 4, _load(a.images[0]) > 0
        for k, brighter in zip(range(4), (False, False, True, False), strict=True):  # T1, T1ce, T2, FLAIR
            image = _load(a.images[k]).astype(np.float64)
            assert (image[cavity].mean() > image[brain].mean()) == brighter, CHANNELS[k]


def test_the_images_away_from_the_cavity_are_those_of_the_case_without_it(post_treatment) -> None:
    for _, a, b in _pairs(post_treatment):
        near = ndimage.binary_dilation(_load(a.label) == 4, iterations=3)
        for pa, pb in zip(a.images, b.images, strict=True):
            np.testing.assert_array_equal(_load(pa)[~near], _load(pb)[~near])


# ---- the check -----------------------------------------------------------------------------------------------


def test_the_check_with_the_layouts_scheme_names_label_4_and_suggests_brats2024(post_treatment) -> None:
    report = check_dataset(post_treatment["brats2024"])
    assert (report.layout.layout, report.label_scheme) == ("brats2023", "brats2023")
    expected = [f"BraTS-GLI-{i:05d}-000" for i in range(N_CASES) if case_has_rc(SEED, i)]
    assert [p.case for p in report.errors] == expected and report.warnings == []
    for p in report.errors:
        assert p.file.endswith("-seg.nii.gz")
        assert ("contains label 4; expected {0, 1, 2, 3} for label scheme 'brats2023'. BraTS 2024+ post-treatment "
                "glioma: 4 is the resection cavity, so for such data set --label_scheme brats2024") in p.message
        assert "Relabel" not in p.message and "--label_scheme brats " not in p.message


def test_the_check_with_brats2024_passes(post_treatment, capsys: pytest.CaptureFixture) -> None:
    assert check_dataset(post_treatment["brats2024"], label_scheme="brats2024").problems == []
    assert check_main(["check", str(post_treatment["brats2024"]), "--jobs", "1", "--label_scheme", "brats2024"]) == 0
    assert "label scheme brats2024): 0 error(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("values", "scheme", "layout", "suggested"), [
    pytest.param({0, 1, 2, 3, 4}, "brats2023", "brats2023", ["brats2024"], id="brats2023_names_with_rc"),
    pytest.param({0, 1, 2, 4}, "brats2023", "brats2023", ["brats2024"], id="brats2023_names_rc_without_et"),
    pytest.param({0, 1, 2, 4}, "brats2023", "brats2021", ["brats"], id="brats2021_names_4_is_et"),
    pytest.param({0, 1, 2, 4}, "msd", None, ["brats"], id="layout_unknown_narrowest_scheme"),
    pytest.param({0, 1, 2, 3}, "brats", "brats2023", ["brats2023"], id="brats2023_names_checked_as_brats"),
    pytest.param({0, 1, 2, 3}, "brats", None, ["brats2023", "msd"], id="layout_unknown_every_narrowest_scheme"),
    pytest.param({0, 1, 5}, "brats2024", "brats2023", [], id="nothing_fits_relabel"),
])
def test_a_wrong_label_value_suggests_the_scheme_the_file_naming_allows(values: set[int], scheme: str,
                                                                         layout: str | None,
                                                                         suggested: list[str]) -> None:
    hint = scheme_hint(values, scheme, layout)
    named = sorted(set(re.findall(r"--label_scheme (\w+)", hint)))
    assert named == sorted(suggested), hint
    assert ("Relabel the file" in hint) == (not suggested)
    # 4 without 3 under BraTS 2023+ names: the resection cavity of a case without ET, or ET in the old numbering
    assert ("relabel 4 -> 3" in hint) == ("brats2024" in suggested and 3 not in values), hint


def test_brats2021_data_checked_as_brats2023_is_sent_back_to_brats(layout_datasets) -> None:
    report = check_dataset(layout_datasets["brats2021"], label_scheme="brats2023")
    assert report.errors
    for p in report.errors:
        assert "For BraTS 2018-2021 data set --label_scheme brats" in p.message and "brats2024" not in p.message


# ---- the scheme: regions and datalists -----------------------------------------------------------------------


def test_labels_to_regions_and_back_gives_the_label_map_under_brats2024(post_treatment) -> None:
    labels = [_load(c.label) for c in discover_cases(post_treatment["brats2024"])]
    labels.append(np.random.default_rng(1).choice([0, 1, 2, 3, 4], size=(9, 8, 7)).astype(np.uint8))
    for label in labels:
        regions = labels_to_regions(label, "brats2024")
        assert regions.shape == (4, *label.shape)  # WT, TC, ET, RC
        np.testing.assert_array_equal(regions[3], label == 4)
        assert not (regions[0] & regions[3]).any()  # the cavity is not tumour
        np.testing.assert_array_equal(regions_to_labels(regions, "brats2024"), label)


def test_a_brats2024_datalist_records_its_four_regions_and_loads_unchanged(post_treatment, tmp_path: Path) -> None:
    dl = build_datalist(post_treatment["brats2024"], folds=2, label_scheme="brats2024")
    assert (dl["layout"], dl["label_scheme"]) == ("brats2023", "brats2024")
    assert (dl["channels"], dl["regions"]) == (list(CHANNELS), ["WT", "TC", "ET", "RC"])
    (tmp_path / "dl.json").write_text(json.dumps(dl))
    assert read_datalist(str(tmp_path / "dl.json")) == dl
