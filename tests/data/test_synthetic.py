"""Tests of the synthetic BraTS-like generator: layout on disk, labels, determinism, contrasts, variety."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data.synthetic import (
    BRATS_AFFINE,
    CONTRASTS,
    DEFAULT_SHAPE,
    brats_affine,
    case_is_enhancing,
    synth_case,
    write_dataset,
)

SMALL = (48, 48, 32)
SUFFIXES = ("t1", "t1ce", "t2", "flair", "seg")


def _load(folder: Path, suffix: str) -> nib.Nifti1Image:
    return nib.load(folder / f"{folder.name}_{suffix}.nii.gz")


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    return {s: np.asanyarray(_load(folder, s).dataobj) for s in SUFFIXES}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("synth")
    return root, write_dataset(root, cases=2, shape=SMALL, seed=0)


CASE_PARAMS = [
    pytest.param(0, True, id="seed0-enhancing"),
    pytest.param(1, True, id="seed1-enhancing"),
    pytest.param(7, True, id="seed7-enhancing"),
    pytest.param(0, False, id="seed0-non-enhancing"),
    pytest.param(3, False, id="seed3-non-enhancing"),
]


# --- layout on disk -------------------------------------------------------------------------------------------


def test_write_dataset_uses_the_exact_brats2021_folder_and_file_names(small_dataset):
    root, folders = small_dataset
    assert folders == [root / "BraTS2021_00000", root / "BraTS2021_00001"]
    assert sorted(p.name for p in root.iterdir()) == ["BraTS2021_00000", "BraTS2021_00001", "synthetic.json"]
    for folder in folders:
        expected = sorted(f"{folder.name}_{s}.nii.gz" for s in SUFFIXES)
        assert sorted(p.name for p in folder.iterdir()) == expected


def test_images_are_int16_and_the_segmentation_is_uint8_on_disk(small_dataset):
    _, folders = small_dataset
    for folder in folders:
        for s in SUFFIXES:
            img = _load(folder, s)
            want = np.uint8 if s == "seg" else np.int16
            assert img.get_data_dtype() == want
            assert np.asanyarray(img.dataobj).dtype == want


def test_every_file_has_the_brats_affine_1mm_zooms_and_scanner_qform_sform(small_dataset):
    _, folders = small_dataset
    for folder in folders:
        for s in SUFFIXES:
            img = _load(folder, s)
            assert img.shape == SMALL
            np.testing.assert_array_equal(img.affine, brats_affine(SMALL))
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
            np.testing.assert_array_equal(img.get_qform(), brats_affine(SMALL))
            np.testing.assert_array_equal(img.get_sform(), brats_affine(SMALL))


def test_the_affine_is_the_real_brats_2021_one_at_the_brats_shape():
    np.testing.assert_array_equal(BRATS_AFFINE, [[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(brats_affine((240, 240, 155)), BRATS_AFFINE)
    default = brats_affine(DEFAULT_SHAPE)
    assert default[1, 3] == DEFAULT_SHAPE[1] - 1
    np.testing.assert_array_equal(default[:3, :3], BRATS_AFFINE[:3, :3])


def test_rewriting_overwrites_our_cases_and_leaves_other_files_alone(tmp_path):
    first = write_dataset(tmp_path, cases=1, shape=SMALL, seed=0)
    before = _arrays(first[0])
    (tmp_path / "notes.txt").write_text("keep me")
    (first[0] / "extra.txt").write_text("keep me too")
    second = write_dataset(tmp_path, cases=1, shape=SMALL, seed=0)
    assert second == first
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert (first[0] / "extra.txt").read_text() == "keep me too"
    after = _arrays(first[0])
    for s in SUFFIXES:
        np.testing.assert_array_equal(before[s], after[s])
    leftovers = [p.name for p in first[0].iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temporary files must be renamed or removed"


def test_an_unknown_layout_is_refused_with_a_message_naming_it_and_the_supported_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'decathlon'.*brats2021, brats2023, msd"):
        write_dataset(tmp_path, cases=1, shape=SMALL, layout="decathlon")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "shape",
    [pytest.param((48, 48), id="two-axes"), pytest.param((8, 48, 32), id="axis-too-small")],
)
def test_a_bad_shape_is_refused(shape):
    with pytest.raises(ValueError, match="shape"):
        synth_case(shape, rng=np.random.default_rng(0))


# --- labels and masks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "enhancing"), CASE_PARAMS)
def test_labels_are_brats_values_and_nest_et_in_tc_in_wt_in_the_brain(seed, enhancing):
    images, seg = synth_case(SMALL, rng=np.random.default_rng(seed), enhancing=enhancing)
    assert seg.shape == SMALL and seg.dtype == np.uint8
    assert set(np.unique(seg).tolist()) <= {0, 1, 2, 4}
    et, tc, wt = seg == 4, np.isin(seg, (1, 4)), seg > 0
    assert wt.any()
    assert not (et & ~tc).any() and not (tc & ~wt).any()
    brain = images["t1"] != 0
    for name in CONTRASTS:
        assert images[name].shape == SMALL and images[name].dtype == np.int16
        np.testing.assert_array_equal(images[name] != 0, brain)  # one brain mask, >= 1 inside, exactly 0 outside
        assert images[name].min() == 0
    assert not (wt & ~brain).any()


def test_the_brain_fills_most_of_each_axis_and_the_border_is_background():
    images, _ = synth_case(DEFAULT_SHAPE, rng=np.random.default_rng(0))
    brain = images["t1"] != 0
    for axis, n in enumerate(DEFAULT_SHAPE):
        others = tuple(a for a in range(3) if a != axis)
        extent = np.flatnonzero(brain.any(axis=others))
        assert 0.65 * n <= extent.size <= 0.9 * n
        assert extent[0] > 0 and extent[-1] < n - 1


def test_the_whole_tumour_is_a_few_percent_of_the_brain_at_the_default_shape():
    fractions = []
    for seed in range(3):
        images, seg = synth_case(DEFAULT_SHAPE, rng=np.random.default_rng(seed))
        fractions.append((seg > 0).sum() / (images["t1"] != 0).sum())
    assert all(0.01 <= f <= 0.13 for f in fractions), fractions


# --- determinism ----------------------------------------------------------------------------------------------


def test_the_same_seed_gives_identical_arrays_and_another_seed_different_ones():
    a_img, a_seg = synth_case(SMALL, rng=np.random.default_rng([4, 2]))
    b_img, b_seg = synth_case(SMALL, rng=np.random.default_rng([4, 2]))
    c_img, c_seg = synth_case(SMALL, rng=np.random.default_rng([5, 2]))
    np.testing.assert_array_equal(a_seg, b_seg)
    for name in CONTRASTS:
        np.testing.assert_array_equal(a_img[name], b_img[name])
        assert not np.array_equal(a_img[name], c_img[name])
    assert not np.array_equal(a_seg, c_seg)


def test_a_case_is_identical_whether_two_or_four_cases_are_written(tmp_path):
    two = write_dataset(tmp_path / "two", cases=2, shape=SMALL, seed=3)
    four = write_dataset(tmp_path / "four", cases=4, shape=SMALL, seed=3)
    other = write_dataset(tmp_path / "other", cases=2, shape=SMALL, seed=4)
    for i in range(2):
        a, b = _arrays(two[i]), _arrays(four[i])
        for s in SUFFIXES:
            np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(_arrays(two[1])["t1"], _arrays(other[1])["t1"])


# --- appearance -----------------------------------------------------------------------------------------------


def _region_means(images: dict[str, np.ndarray], seg: np.ndarray) -> dict[tuple[str, str], float]:
    normal = (images["t1"] != 0) & (seg == 0)
    regions = {"normal": normal, "NCR": seg == 1, "ED": seg == 2, "ET": seg == 4, "TC": np.isin(seg, (1, 4))}
    return {
        (name, region): float(images[name][mask].astype(np.float64).mean())
        for name in CONTRASTS
        for region, mask in regions.items()
        if mask.any()
    }


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in (0, 1, 2, 5, 11)])
def test_each_tumour_region_has_its_real_scan_contrast(seed):
    images, seg = synth_case(SMALL, rng=np.random.default_rng(seed), enhancing=True)
    assert (seg == 4).any() and (seg == 2).any()
    m = _region_means(images, seg)
    assert m["t1ce", "ET"] > 1.4 * m["t1ce", "normal"], "ET must be far brighter than normal tissue on T1ce"
    assert m["flair", "ED"] > 1.6 * m["flair", "normal"], "oedema must be bright on FLAIR"
    assert m["t2", "ED"] > 1.15 * m["t2", "normal"], "oedema must be bright on T2"
    assert m["t2", "TC"] > 1.15 * m["t2", "normal"], "the tumour core must be bright-ish on T2"
    if (seg == 1).any():
        assert m["t1ce", "NCR"] < 0.75 * m["t1ce", "ET"], "necrosis must be dark against the enhancing rim"
        assert m["t1", "NCR"] < 0.8 * m["t1", "normal"], "necrosis must be dark on T1"


def test_normal_tissue_is_bright_on_t1_where_it_is_dark_on_t2():
    # WM > GM > CSF on T1 and the reverse on T2: over normal brain the two contrasts are anti-correlated.
    images, seg = synth_case(SMALL, rng=np.random.default_rng(0))
    normal = (images["t1"] != 0) & (seg == 0)
    r = np.corrcoef(images["t1"][normal].astype(float), images["t2"][normal].astype(float))[0, 1]
    assert r < -0.5


# --- variety --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(4)])
def test_a_non_enhancing_case_has_no_label_4_but_still_a_tumour(seed):
    _, seg = synth_case(SMALL, rng=np.random.default_rng(seed), enhancing=False)
    assert not (seg == 4).any()
    assert (seg == 2).any()


def test_seed_0_with_16_cases_makes_exactly_cases_2_and_7_non_enhancing(tmp_path):
    shape = (32, 32, 24)
    folders = write_dataset(tmp_path, cases=16, shape=shape, seed=0)
    has_et = [bool((np.asanyarray(_load(f, "seg").dataobj) == 4).any()) for f in folders]
    assert [i for i, e in enumerate(has_et) if not e] == [2, 7]
    assert has_et == [case_is_enhancing(0, i) for i in range(16)]


def test_about_one_case_in_eight_is_non_enhancing():
    non = sum(not case_is_enhancing(seed, i) for seed in range(4) for i in range(100))
    assert 0.08 <= non / 400 <= 0.17


@settings(max_examples=12, deadline=None)
@given(
    shape=st.tuples(st.integers(16, 40), st.integers(16, 40), st.integers(16, 32)),
    seed=st.integers(0, 2**32 - 1),
    enhancing=st.booleans(),
)
def test_any_small_shape_and_seed_gives_nested_labels_inside_a_zero_background_brain(shape, seed, enhancing):
    images, seg = synth_case(shape, rng=np.random.default_rng(seed), enhancing=enhancing)
    brain = images["t1"] != 0
    assert seg.shape == shape and set(np.unique(seg).tolist()) <= {0, 1, 2, 4}
    et, tc, wt = seg == 4, np.isin(seg, (1, 4)), seg > 0
    assert not (et & ~tc).any() and not (tc & ~wt).any() and not (wt & ~brain).any()
    assert wt.any() and brain.any() and not brain[0].any() and not brain[-1].any()
    assert enhancing or not et.any()


@pytest.mark.parametrize("existing", [
    pytest.param("BraTS2021_00000/BraTS2021_00000_t1.nii.gz", id="a_real_case_of_the_same_name"),
    pytest.param("imagesTr/BRATS_001.nii.gz", id="a_decathlon_image"),
    pytest.param("scan.nii", id="a_nifti_at_the_root"),
    pytest.param("synthetic.json", id="a_synthetic_json_of_the_users"),
])
def test_synth_refuses_a_folder_that_already_holds_nifti_files_unless_forced(tmp_path, existing):
    from pipeline.__main__ import main

    target = tmp_path / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"real data")
    assert main(["synth", str(tmp_path), "--cases", "1", "--shape", *map(str, SMALL)]) == 2
    assert target.read_bytes() == b"real data"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [existing]
    forced = main(["synth", str(tmp_path), "--cases", "1", "--shape", *map(str, SMALL), "--force"])
    assert target.read_bytes() == b"real data"  # --force writes beside the user's files, never over one
    if existing.startswith("BraTS2021_00000/") or existing == "synthetic.json":
        assert forced == 2  # a synthetic case, or synth's record, of that name would replace it: refused
    else:
        assert forced == 0 and (tmp_path / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz").is_file()


@pytest.mark.parametrize("force", [False, True])
def test_synth_never_writes_through_a_linked_case_folder(tmp_path: Path, force: bool) -> None:
    """A folder assembled from links to a user's case folders: synth saw no file there (it did not follow the
    links) and wrote its case through the link, over the user's images and label."""
    from pipeline.__main__ import main

    real = tmp_path / "real" / "BraTS2021_00000"
    real.mkdir(parents=True)
    (real / "BraTS2021_00000_t1.nii.gz").write_bytes(b"real data")
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "BraTS2021_00000").symlink_to(real)
    args = ["synth", str(tmp_path / "mix"), "--cases", "1", "--shape", *map(str, SMALL)]
    assert main([*args, *(["--force"] if force else [])]) == 2
    assert [p.name for p in real.iterdir()] == ["BraTS2021_00000_t1.nii.gz"]
    assert (real / "BraTS2021_00000_t1.nii.gz").read_bytes() == b"real data"


@pytest.mark.parametrize("inside", ["a_case_folder", "the_root"])
def test_synth_never_writes_inside_another_dataset(tmp_path: Path, inside: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    """synth wrote a dataset into a user's case folder, or beside their cases at the dataset's root."""
    from pipeline.__main__ import main

    data = tmp_path / "data"
    write_dataset(data, cases=2, shape=SMALL, seed=0)
    (data / "synthetic.json").unlink()  # the user's dataset now
    before = sorted(data.rglob("*"))
    out = (data / "BraTS2021_00001" if inside == "a_case_folder" else data) / "extra"
    assert main(["synth", str(out), "--cases", "1", "--shape", *map(str, SMALL)]) == 2
    assert "lies inside the dataset folder" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(data.rglob("*")) == before


def test_synth_with_the_same_settings_again_leaves_its_cases_as_they_are(tmp_path):
    first = write_dataset(tmp_path, cases=1, shape=SMALL, seed=0)
    stamps = {p: p.stat().st_mtime_ns for p in first[0].iterdir()}
    assert write_dataset(tmp_path, cases=1, shape=SMALL, seed=0) == first
    assert {p: p.stat().st_mtime_ns for p in first[0].iterdir()} == stamps
    with pytest.raises(ValueError, match="already holds 5 file.s. of synthetic cases written with other settings"):
        write_dataset(tmp_path, cases=1, shape=SMALL, seed=1)


@pytest.mark.parametrize("content", [pytest.param(b'{"my": "settings I keep"}', id="json_of_another_shape"),
                                     pytest.param(b"not json", id="not_json")])
def test_clean_keeps_a_synthetic_json_synth_did_not_write(tmp_path, content: bytes):
    """`remove_synthetic` (make clean) deleted whatever synthetic.json a folder held, and synth wrote over it."""
    from pipeline.data.synthetic import remove_synthetic

    (tmp_path / "synthetic.json").write_bytes(content)
    assert remove_synthetic(tmp_path) == [tmp_path / "synthetic.json"]
    assert (tmp_path / "synthetic.json").read_bytes() == content


def _a_note_in_a_case_folder(root: Path, layout: str) -> Path:
    case = next(p for p in sorted(root.rglob("*")) if p.is_dir())
    (case / "notes.txt").write_text("the user's")
    return case / "notes.txt"


def _an_image_replaced(root: Path, layout: str) -> Path:
    image = sorted(p for p in root.rglob("*.nii.gz"))[0]
    image.write_bytes(b"the user's own image")
    return image


def _an_image_edited_in_place(root: Path, layout: str) -> Path:
    image = sorted(p for p in root.rglob("*.nii.gz"))[-1]
    with open(image, "r+b") as f:
        f.seek(200)
        f.write(b"edited")
    return image


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "msd", "nnunet"])
@pytest.mark.parametrize("change", [_a_note_in_a_case_folder, _an_image_replaced, _an_image_edited_in_place],
                         ids=["a_file_added_to_a_case", "a_written_file_replaced", "a_written_file_edited"])
def test_clean_keeps_every_file_synth_did_not_write_as_it_is(layout: str, change, tmp_path: Path) -> None:
    """`remove_synthetic` (clean) deleted every file in the case folders synth wrote, the user's beside them and in
    place of synth's; it now deletes the files synth wrote that still hold what it wrote (synthetic.json's
    digests), and nothing else."""
    from pipeline.data.synthetic import remove_synthetic

    write_dataset(tmp_path / "d", cases=2, shape=SMALL, seed=0, layout=layout)
    theirs = change(tmp_path / "d", layout)
    content = theirs.read_bytes()
    assert remove_synthetic(tmp_path / "d") == [theirs]
    assert theirs.read_bytes() == content
    assert [p for p in (tmp_path / "d").rglob("*") if p.is_file()] == [theirs]


def test_synth_forced_over_its_own_cases_records_and_cleans_them(tmp_path: Path) -> None:
    """`synth --force` with other settings over synth's own cases left them out of its new record (checked against
    the old digests after they were rewritten): clean kept them, and the next synth refused to write over them."""
    from pipeline.data.synthetic import remove_synthetic

    for seed in (0, 1, 2):
        write_dataset(tmp_path / "d", cases=2, shape=SMALL, seed=seed, force=True)
    assert remove_synthetic(tmp_path / "d") == [] and not (tmp_path / "d").exists()


@pytest.mark.parametrize("layout", ["brats2021", "msd", "nnunet"])
def test_synth_forced_with_fewer_cases_replaces_every_earlier_case(tmp_path: Path, layout: str) -> None:
    """`synth --force` with 3 cases over 6 of other settings left cases 3-5 of the old shape beside the new ones,
    and out of the record: a dataset of mixed shapes that its synthetic.json did not describe (red team)."""
    out = tmp_path / "d"
    write_dataset(out, cases=6, shape=(32, 32, 24), seed=0, layout=layout)
    (out / "my_notes.txt").write_text("mine")  # beside them: --force never touches it
    written = write_dataset(out, cases=3, shape=SMALL, seed=0, layout=layout, force=True)
    fresh = tmp_path / "fresh"
    write_dataset(fresh, cases=3, shape=SMALL, seed=0, layout=layout)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()} | {"my_notes.txt"}
    assert len(written) == 3


@pytest.mark.parametrize("layout", ["brats2021", "brats2023"])
def test_clean_under_a_record_without_file_digests_keeps_the_users_files_in_the_case_folders(
        layout: str, tmp_path: Path) -> None:
    """A synthetic.json from before synth listed its files names the case folders only: clean deleted every file in
    them, a user's note and a nested folder's files included. It now deletes the case's own NIfTI files there."""
    import json

    from pipeline.data.synthetic import SETTINGS_FILE, remove_synthetic

    write_dataset(tmp_path / "d", cases=2, shape=SMALL, seed=0, layout=layout)
    record = json.loads((tmp_path / "d" / SETTINGS_FILE).read_text())
    del record["files_written"]  # as synth wrote it before files were listed
    (tmp_path / "d" / SETTINGS_FILE).write_text(json.dumps(record))
    case = tmp_path / "d" / record["cases_written"][0]
    note, nested = case / "notes.txt", case / "mine" / "extra.nii.gz"
    nested.parent.mkdir()
    for f in (note, nested):
        f.write_text("the user's")
    assert sorted(remove_synthetic(tmp_path / "d")) == sorted([note, nested])
    assert sorted(p for p in (tmp_path / "d").rglob("*") if p.is_file()) == sorted([note, nested])


def test_a_shape_too_large_for_memory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--shape 100000 100000 100000`` ended in numpy's MemoryError traceback."""
    from pipeline.__main__ import main

    assert main(["synth", str(tmp_path / "d"), "--cases", "1", "--shape", "100000", "100000", "100000"]) == 2
    assert "each at most 512" in capsys.readouterr().err.strip().splitlines()[-1]


def _stopped_at_the_second_case(out: Path, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """synth stopped (Ctrl-C, a kill) after writing its first case, and in the middle of nothing else."""
    import pipeline.data.synthetic as synthetic

    made = synthetic.synth_case
    calls = []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return made(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(synthetic, "synth_case", stopping)
        with pytest.raises(KeyboardInterrupt):
            write_dataset(out, cases=3, shape=SMALL, seed=0, layout=layout)


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "msd", "nnunet"])
@pytest.mark.parametrize("then", ["the_same_again", "clean", "other_settings"])
def test_a_stopped_synth_is_finished_by_the_same_command_and_cleaned_by_clean(
        tmp_path: Path, layout: str, then: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """synth (and the demo's data step) stopped mid-way left cases and no synthetic.json: the same command was
    refused ("files that synth did not write"), so was --force, and clean deleted nothing (red team)."""
    from pipeline.data.synthetic import remove_synthetic

    out = tmp_path / "data"
    _stopped_at_the_second_case(out, layout, monkeypatch)
    assert any(p.is_file() and p.suffix == ".gz" for p in out.rglob("*"))
    if then == "the_same_again":
        written = write_dataset(out, cases=3, shape=SMALL, seed=0, layout=layout)
        fresh = write_dataset(tmp_path / "fresh", cases=3, shape=SMALL, seed=0, layout=layout)
        assert [p.name for p in written] == [p.name for p in fresh]
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
            p.relative_to(tmp_path / "fresh").as_posix() for p in (tmp_path / "fresh").rglob("*") if p.is_file())
        assert write_dataset(out, cases=3, shape=SMALL, seed=0, layout=layout) == written  # finished: left alone
    elif then == "clean":
        assert remove_synthetic(out) == [] and not out.exists()
    else:  # synth's own files, of other settings: --force replaces them, as for a finished synth
        with pytest.raises(ValueError, match="of synthetic cases written with other settings"):
            write_dataset(out, cases=3, shape=SMALL, seed=1, layout=layout)
        write_dataset(out, cases=3, shape=SMALL, seed=1, layout=layout, force=True)


@pytest.mark.parametrize("claimed", ["", ".", "/", "../..", "a/../.."])
def test_a_record_claims_nothing_but_places_below_its_folder(tmp_path: Path, claimed: str) -> None:
    """A synthetic.json made or edited by hand whose record of the places being written named the folder itself
    (or one above it) made clean delete every file there, the user's too (review)."""
    import json

    from pipeline.data.synthetic import SETTINGS_FILE, remove_synthetic

    out = tmp_path / "data"
    write_dataset(out, cases=1, shape=SMALL, seed=0)
    record = json.loads((out / SETTINGS_FILE).read_text())
    mine = out / "my_notes.txt"
    mine.write_text("mine")
    for edited in ({"writing": [claimed]}, {"files_written": [claimed, *record["files_written"]]}):  # (a list: older)
        (out / SETTINGS_FILE).write_text(json.dumps({**record, **edited}))
        remove_synthetic(out)
        assert mine.read_text() == "mine" and not (out / SETTINGS_FILE).exists()
        write_dataset(out, cases=1, shape=SMALL, seed=0, force=True)
