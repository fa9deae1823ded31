"""Datalists are validated like datasets: one item schema, safe case ids, channel order from the file names,
MONAI model-zoo lists read with their own split, inference folds, and the refusals of discovery."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.data.datalist import build_datalist, check_case_id, read_datalist, split_items, write_datalist
from pipeline.data.labels import CHANNELS
from pipeline.data.layouts import DatasetError, discover_cases, scan_dataset
from pipeline.data.layouts.brats import BRATS2021_SUFFIXES, BRATS2023_SUFFIXES, named_as
from pipeline.data.source import DataSource
from tests.helpers import LAYOUT_NAMES

SUFFIXES = {"_": BRATS2021_SUFFIXES, "-": BRATS2023_SUFFIXES}


def _nifti(path: Path, shape: tuple[int, ...] = (4, 4, 4)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), path)
    return str(path)


def _case(root: Path, cid: str, sep: str = "_") -> dict[str, str]:
    """A tiny BraTS case folder ``root/cid/cid{sep}{suffix}.nii.gz``: ``{channel or "seg": path}``."""
    files = {c: _nifti(root / cid / f"{cid}{sep}{s}.nii.gz") for c, s in zip(CHANNELS, SUFFIXES[sep], strict=True)}
    return {**files, "seg": _nifti(root / cid / f"{cid}{sep}seg.nii.gz")}


def _item(files: dict[str, str], cid: str, fold: int | None = 0, order: tuple[str, ...] = CHANNELS) -> dict:
    item = {"case": cid, "image": [files[c] for c in order], "label": files["seg"]}
    return item if fold is None else {**item, "fold": fold}


def _write(path: Path, datalist: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(datalist))
    return path


@pytest.fixture
def two_cases(tmp_path: Path) -> dict[str, dict[str, str]]:
    """Two tiny BraTS 2021 cases under ``tmp_path/data``."""
    return {cid: _case(tmp_path / "data", cid) for cid in ("BraTS2021_00000", "BraTS2021_00001")}


# ---- 1. one schema: safe unique ids, 4 images or a 4D image, files present, paths from the JSON's folder --------


def test_relative_paths_are_read_from_the_datalists_folder_and_loaded_absolute(
        two_cases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = {cid: {k: os.path.relpath(p, tmp_path / "lists") for k, p in files.items()}
           for cid, files in two_cases.items()}
    dl = _write(tmp_path / "lists" / "dl.json", {"training": [_item(f, cid, i) for i, (cid, f) in
                                                              enumerate(rel.items())], "test": []})
    monkeypatch.chdir(tmp_path / "data")  # not the datalist's folder: relative paths must not depend on it
    loaded = read_datalist(str(dl))
    for it in loaded["training"]:
        assert it["image"] == [two_cases[it["case"]][c] for c in CHANNELS]
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in [*it["image"], it["label"]])


@pytest.mark.parametrize("layout", [pytest.param(name, id=name) for name in LAYOUT_NAMES])
def test_our_own_written_datalist_validates_and_loads_unchanged(layout_datasets, tmp_path: Path, layout: str) -> None:
    out = tmp_path / "dl.json"
    written = write_datalist(layout_datasets[layout], out, folds=3)
    assert read_datalist(str(out)) == written
    assert set(json.loads(out.read_text())) == {"name", "layout", "label_scheme", "channels", "regions", "folds",
                                                "seed", "training", "test"}


@pytest.mark.parametrize(
    ("case_id", "message"),
    [
        pytest.param("../../escape", "holds a path separator", id="parent_traversal"),
        pytest.param("/tmp/escape", "holds a path separator", id="absolute"),
        pytest.param("sub\\escape", "holds a path separator", id="backslash"),
        pytest.param("..", "is '..'", id="dot_dot"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("A" * 250, r"is 250 bytes long \(file names hold 255", id="too_long_for_a_file_name"),
        pytest.param("case\n1", "holds a control character", id="newline"),
        pytest.param(" case", "starts or ends with a space", id="leading_space"),
        pytest.param(".hidden", "starts with a dot", id="hidden"),
        pytest.param("case\udcff", "holds a lone surrogate", id="a_lone_surrogate"),
    ],
)
def test_a_case_id_that_could_write_outside_output_dir_is_refused(two_cases, tmp_path: Path, case_id: str,
                                                                   message: str) -> None:
    files = two_cases["BraTS2021_00000"]
    dl = _write(tmp_path / "dl.json", {"training": [_item(files, case_id)], "test": []})
    output_dir = tmp_path / "deep" / "out"
    output_dir.mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"training item 0: case id .* {message}.*<output_dir>/<case>\.nii\.gz.*"
                                           "rename the case"):
        read_datalist(str(dl))
    with pytest.raises(DatasetError, match=message):
        check_case_id(case_id, "here")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.relative_to(tmp_path).parts[0] not in ("data",
                                                                                                        "dl.json")]
    assert written == []  # refused before anything is written, inside output_dir or outside it


def _bad(files: dict[str, str], tmp_path: Path, kind: str) -> dict:
    """One faulty datalist item of ``kind`` built on a tiny case's files."""
    item = _item(files, "BraTS2021_00000")
    if kind == "three_images":
        item["image"] = item["image"][:3]
    elif kind == "missing_file":
        item["image"][2] = "data/gone_t2.nii.gz"  # relative: read from the datalist's folder
    elif kind.startswith("a_dangling_link"):  # a share not mounted: the file is there, as a link to nowhere
        link = tmp_path / "data" / "linked_t2.nii.gz"
        link.symlink_to(tmp_path / "unmounted" / "t2.nii.gz")
        item["image"][2] = str(link) if kind.endswith("absolute") else "data/linked_t2.nii.gz"
    elif kind == "missing_fold":
        del item["fold"]
    elif kind == "missing_label":
        del item["label"]
    elif kind == "label_is_a_contrast":
        item["label"] = files["T2"]
    elif kind == "no_case":
        del item["case"]
    elif kind == "4d_without_channel_index":
        item["image"] = [_nifti(tmp_path / "msd" / "BRATS_001.nii.gz", (4, 4, 4, 4))]
    elif kind == "a_folder":
        item["image"][0] = str(tmp_path)
    elif kind == "a_nul_in_a_path":
        item["image"][0] = "T1\u0000.nii.gz"
    elif kind == "channel_index_not_a_permutation":
        item.update(image=[_nifti(tmp_path / "msd" / "BRATS_001.nii.gz", (4, 4, 4, 4))], channel_index=[0, 1, 2, 2])
    return item


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        pytest.param("three_images", r"case BraTS2021_00000: \"image\" lists 3 file\(s\); expected 4", id="3_images"),
        pytest.param("missing_file", r"case BraTS2021_00000: image file data/gone_t2\.nii\.gz is not found in the "
                                     r"datalist's folder .*fix the path, or rewrite the datalist", id="missing_file"),
        pytest.param("a_dangling_link_relative", r"linked_t2\.nii\.gz does not exist \(a link to .*unmounted/t2\.nii"
                     r"\.gz, which does not exist: a drive or share not mounted\?\); mount it", id="a_dangling_link"),
        pytest.param("a_dangling_link_absolute", r"linked_t2\.nii\.gz does not exist \(a link to .*unmounted/t2\.nii"
                     r"\.gz, which does not exist: a drive or share not mounted\?\); mount it",
                     id="a_dangling_link_by_its_absolute_path"),
        pytest.param("missing_fold", r"case BraTS2021_00000: \"fold\" is None; every training item needs a fold",
                     id="missing_fold"),
        pytest.param("missing_label", r"case BraTS2021_00000: a training item needs a \"label\".*move the case to "
                                      r"\"test\"", id="missing_label"),
        pytest.param("label_is_a_contrast", r"case BraTS2021_00000: the label file BraTS2021_00000_t2\.nii\.gz is "
                                            r"named as the T2 contrast", id="label_is_a_contrast"),
        pytest.param("no_case", r"training item 0: the item has no \"case\" id", id="no_case"),
        pytest.param("a_folder", r"case BraTS2021_00000: image file .* is a folder, not a file", id="a_folder"),
        pytest.param("a_nul_in_a_path", r"image file 'T1\\x00\.nii\.gz' is not a file path", id="a_nul_in_a_path"),
        pytest.param("4d_without_channel_index", r"one image file BRATS_001\.nii\.gz and no \"channel_index\"",
                     id="4d_without_channel_index"),
        pytest.param("channel_index_not_a_permutation", r"\"channel_index\" is \[0, 1, 2, 2\]; .*a permutation of "
                                                        r"0\.\.3", id="channel_index_not_a_permutation"),
    ],
)
def test_a_bad_item_is_refused_naming_the_case_the_file_and_the_fix(two_cases, tmp_path: Path, kind: str,
                                                                    message: str) -> None:
    dl = _write(tmp_path / "dl.json", {"training": [_bad(two_cases["BraTS2021_00000"], tmp_path, kind)], "test": []})
    with pytest.raises(DatasetError, match=message) as err:
        read_datalist(str(dl))
    assert "\n" not in str(err.value) and str(dl) in str(err.value)


@pytest.mark.parametrize(("second", "said"), [("X", "case id X is used twice"),
                                               ("x", "case ids X and x differ only in letter case")],
                         ids=["the same id", "ids that differ in letter case"])
def test_two_items_with_one_case_id_are_refused_naming_both(two_cases, tmp_path: Path, second: str,
                                                            said: str) -> None:
    """Ids differing only in letter case write one <case>.nii.gz on macOS and Windows: the second replaced the first."""
    a, b = two_cases.values()
    dl = _write(tmp_path / "dl.json", {"training": [_item(a, "X")], "test": [_item(b, second, fold=None)]})
    with pytest.raises(DatasetError, match=said + r".* \(training: .*BraTS2021_00000_t1\.nii\.gz; "
                                             r"test: .*BraTS2021_00001_t1\.nii\.gz\).*ids must be unique"):
        read_datalist(str(dl))


# ---- 2. channel order checked against the file names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        pytest.param("X_t1.nii.gz", ("T1", "brats2021"), id="t1"),
        pytest.param("X_t1ce.nii", ("T1ce", "brats2021"), id="t1ce_not_t1"),
        pytest.param("BraTS-GLI-00000-000-t1n.nii.gz", ("T1", "brats2023"), id="t1n"),
        pytest.param("BraTS-GLI-00000-000-t2f.nii.gz", ("FLAIR", "brats2023"), id="t2f"),
        pytest.param("X_seg.nii.gz", ("seg", "brats2021"), id="seg"),
        pytest.param("X_t1_reg.nii.gz", None, id="suffix_not_last"),
        pytest.param("t1.nii.gz", None, id="no_case_part"),
        pytest.param("X_t1.mha", None, id="not_nifti"),
    ],
)
def test_a_file_name_shows_its_contrast_only_by_the_exact_suffix(name: str, shown: tuple[str, str] | None) -> None:
    assert named_as(name) == shown


@pytest.mark.parametrize(
    ("sep", "order"),
    [
        pytest.param("_", ("T1ce", "T1", "T2", "FLAIR"), id="brats2021_model_zoo_order"),
        pytest.param("-", ("FLAIR", "T1", "T1ce", "T2"), id="brats2023_msd_order"),
    ],
)
def test_images_named_in_another_order_are_reordered_with_one_info_line(tmp_path: Path, caplog, sep: str,
                                                                        order: tuple[str, ...]) -> None:
    files = _case(tmp_path / "data", "CASE7", sep)
    dl = _write(tmp_path / "dl.json", {"training": [_item(files, "CASE7", order=order)], "test": []})
    with caplog.at_level(logging.INFO, logger="pipeline.data.datalist"):
        item = read_datalist(str(dl))["training"][0]
    assert item["image"] == [files[c] for c in CHANNELS]
    lines = [r.getMessage() for r in caplog.records if "reordered" in r.getMessage()]
    assert len(lines) == 1 and "case CASE7" in lines[0] and ", ".join(order) in lines[0]


def test_images_in_channel_order_keep_their_order(tmp_path: Path, caplog) -> None:
    named = _case(tmp_path / "data", "CASE1")
    dl = _write(tmp_path / "dl.json", {"training": [_item(named, "CASE1")], "test": []})
    with caplog.at_level(logging.INFO, logger="pipeline.data.datalist"):
        loaded = read_datalist(str(dl))["training"]
    assert loaded[0]["image"] == [named[c] for c in CHANNELS]
    assert not [r for r in caplog.records if "reordered" in r.getMessage()]


def _unnamed(tmp_path: Path, cid: str) -> dict:
    """A case whose image names show no contrast: scan0 ... scan3, listed in that order."""
    return {"case": cid, "image": [_nifti(tmp_path / cid / f"scan{i}.nii.gz") for i in range(4)],
            "label": _nifti(tmp_path / cid / f"{cid}_seg.nii.gz")}


@pytest.mark.parametrize("declared", [pytest.param(None, id="undeclared_refused"),
                                      pytest.param(["T1ce", "T1", "T2", "FLAIR"], id="declared_read_by_name")])
@pytest.mark.parametrize("model_zoo", [pytest.param(False, id="ours"), pytest.param(True, id="model_zoo")])
def test_image_names_that_show_no_contrast_are_read_only_in_the_order_the_datalist_declares(
        tmp_path: Path, model_zoo: bool, declared: list[str] | None) -> None:
    """Taken by position they were a guess: the model-zoo brats_mri_segmentation bundle lists T1ce first, so a T1ce
    read as T1 gave a model its contrasts swapped, with no error."""
    a, b = _unnamed(tmp_path, "CASE1"), _unnamed(tmp_path, "CASE2")
    raw = ({"training": [a], "validation": [b]} if model_zoo else
           {"training": [{**a, "fold": 0}, {**b, "fold": 1}], "test": []})
    dl = _write(tmp_path / "dl.json", {**raw, **({"channels": declared} if declared else {})})
    if declared is None:
        with pytest.raises(DatasetError, match=r"case CASE\d: image names such as scan0\.nii\.gz do not show their "
                                               r"contrast.*add \"channels\""):
            read_datalist(str(dl))
        return
    loaded = {it["case"]: it for it in read_datalist(str(dl))["training"]}
    for cid, item in (("CASE1", a), ("CASE2", b)):  # scan1 was listed as T1, scan0 as T1ce
        assert loaded[cid]["image"] == [item["image"][declared.index(c)] for c in CHANNELS]


def test_one_unnamed_image_among_named_ones_is_the_contrast_they_leave(tmp_path: Path) -> None:
    files = _case(tmp_path / "data", "CASE4")
    plain = tmp_path / "data" / "CASE4" / "scan.nii.gz"
    shutil.copy(files["T2"], plain)
    item = {**_item(files, "CASE4"), "image": [files["T1"], files["T1ce"], str(plain), files["FLAIR"]]}
    dl = _write(tmp_path / "dl.json", {"training": [item], "test": []})
    assert read_datalist(str(dl))["training"][0]["image"][2] == str(plain)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        pytest.param(("T1", "T1", "T2", "FLAIR"), r"CASE3_t1\.nii\.gz \(T1\), CASE3_t1\.nii\.gz \(T1\).*not the four "
                                                   "contrasts T1, T1ce, T2, FLAIR once each", id="t1_twice"),
        pytest.param(("T1", "T1ce", "T2", "seg"), r"CASE3_seg\.nii\.gz \(seg\).*a segmentation belongs in "
                                                  r"\"label\"", id="seg_as_image"),
    ],
)
def test_names_that_are_not_the_four_contrasts_once_each_are_refused(tmp_path: Path, order: tuple[str, ...],
                                                                     message: str) -> None:
    files = _case(tmp_path / "data", "CASE3")
    dl = _write(tmp_path / "dl.json", {"training": [_item(files, "CASE3", order=order)], "test": []})
    with pytest.raises(DatasetError, match=rf"case CASE3: image files .*{message}"):
        read_datalist(str(dl))


@pytest.mark.parametrize(
    ("index", "ok"),
    [
        pytest.param([1, 2, 3, 0], True, id="msd_task01"),
        pytest.param([0, 1, 2, 3], True, id="identity"),
        pytest.param([0, 1, 2], False, id="three_entries"),
        pytest.param([0, 1, 2, 4], False, id="out_of_range"),
    ],
)
def test_an_msd_channel_index_must_be_a_permutation_of_the_four_channels(tmp_path: Path, index: list[int],
                                                                         ok: bool) -> None:
    item = {"case": "BRATS_001", "image": ["imagesTr/BRATS_001.nii.gz"], "label": "labelsTr/BRATS_001.nii.gz",
            "channel_index": index, "fold": 0}
    _nifti(tmp_path / "imagesTr" / "BRATS_001.nii.gz", (4, 4, 4, 4))
    _nifti(tmp_path / "labelsTr" / "BRATS_001.nii.gz")
    dl = _write(tmp_path / "dl.json", {"layout": "msd", "training": [item], "test": []})
    if ok:
        assert read_datalist(str(dl))["training"][0]["channel_index"] == index
    else:
        with pytest.raises(DatasetError, match=r"case BRATS_001: \"channel_index\" is .*a permutation of 0\.\.3"):
            read_datalist(str(dl))


# ---- 3. MONAI model-zoo datalists: their own split ---------------------------------------------------------------


def _model_zoo(root: Path, ids: dict[str, list[str]]) -> dict:
    """A model-zoo style datalist (T1ce, T1, T2, FLAIR; paths relative to ``root``) of tiny cases under ``root``."""
    out: dict = {}
    for section, cids in ids.items():
        out[section] = []
        for cid in cids:
            files = _case(root, cid)
            item = {"image": [os.path.relpath(files[c], root) for c in ("T1ce", "T1", "T2", "FLAIR")]}
            if section != "testing":
                item["label"] = os.path.relpath(files["seg"], root)
            out[section].append(item)
    return out


def test_a_model_zoo_datalist_keeps_its_own_split_with_validation_as_fold_0(tmp_path: Path) -> None:
    root = tmp_path / "BraTS2018"
    raw = _model_zoo(root, {"training": ["Brats18_A", "Brats18_B"], "validation": ["Brats18_C"],
                            "testing": ["Brats18_D"]})
    dl_path = _write(tmp_path / "configs" / "datalist.json", raw)  # not the data root: paths need --dataset_dir
    dl = read_datalist(str(dl_path), root)
    assert dl["split"] == "model-zoo" and dl["layout"] == "brats2021" and dl["label_scheme"] == "brats"
    assert {it["case"]: it["fold"] for it in dl["training"]} == {"Brats18_C": 0, "Brats18_A": 1, "Brats18_B": 1}
    assert [it["case"] for it in dl["test"]] == ["Brats18_D"]
    assert [Path(p).name for p in dl["training"][0]["image"]] == [f"Brats18_C_{s}.nii.gz" for s in BRATS2021_SUFFIXES]
    train, val = split_items(dl, 0)
    assert [it["case"] for it in val] == ["Brats18_C"] and [it["case"] for it in train] == ["Brats18_A", "Brats18_B"]
    with pytest.raises(DatasetError, match="a model-zoo datalist has one split, its validation cases: use --fold 0"):
        split_items(dl, 1)


@pytest.mark.parametrize(("declared", "scheme"), [pytest.param({}, "brats", id="the_names_layouts_scheme"),
                                                  pytest.param({"label_scheme": "brats2023"}, "brats2023",
                                                               id="a_declared_scheme_is_kept")])
def test_a_model_zoo_datalist_reads_the_label_scheme_it_declares(tmp_path: Path, declared: dict, scheme: str) -> None:
    from pipeline.data.source import DataSource

    root = tmp_path / "BraTS2018"
    raw = {**_model_zoo(root, {"training": ["Brats18_A"], "validation": ["Brats18_C"]}), **declared}
    dl_path = _write(root / "datalist.json", raw)
    assert read_datalist(str(dl_path))["label_scheme"] == scheme
    assert DataSource(None, dl_path).scheme == scheme  # the scheme inference writes and evaluation reads


def test_model_zoo_paths_are_read_from_the_json_folder_first(tmp_path: Path) -> None:
    root = tmp_path / "BraTS2018"
    dl_path = _write(root / "datalist.json", _model_zoo(root, {"training": ["A1"], "validation": ["A2"]}))
    dl = read_datalist(str(dl_path))
    assert all(Path(p).is_relative_to(root) for it in dl["training"] for p in it["image"])


def test_a_model_zoo_datalist_whose_files_are_not_found_asks_for_the_data_root(tmp_path: Path) -> None:
    root = tmp_path / "BraTS2018"
    dl_path = _write(tmp_path / "configs" / "datalist.json", _model_zoo(root, {"training": ["A1"],
                                                                               "validation": ["A2"]}))
    with pytest.raises(DatasetError, match=r"case A1: image file A1/A1_t1ce\.nii\.gz is not found in the datalist's "
                                           r"folder .*configs; pass --dataset_dir as the data root .* or make the "
                                           r"paths absolute \(9 more file\(s\) missing\)$"):
        read_datalist(str(dl_path))


def test_a_model_zoo_case_in_both_validation_and_training_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "BraTS2018"
    raw = _model_zoo(root, {"training": ["A1", "A2"], "validation": ["A2"]})
    with pytest.raises(DatasetError, match=r"case A2 is both a validation case .* and a training case .*remove it "
                                           "from one of the two lists"):
        read_datalist(str(_write(root / "datalist.json", raw)))


@pytest.mark.parametrize(
    ("image", "label", "case"),
    [
        pytest.param("P1/P1_t1ce.nii.gz", "P1/P1_seg.nii.gz", "P1", id="label_seg_suffix"),
        pytest.param("P2/P2-t1c.nii.gz", "P2/P2-seg.nii.gz", "P2", id="label_dash_seg_suffix"),
        pytest.param("P3/P3_t1ce.nii.gz", None, "P3", id="brats_named_image_no_label"),
        pytest.param("imagesTs/BRATS_485.nii.gz", None, "BRATS_485", id="image_stem"),
    ],
)
def test_model_zoo_case_ids_come_from_the_file_names(tmp_path: Path, image: str, label: str | None,
                                                     case: str) -> None:
    item: dict = {"image": _nifti(tmp_path / image, (4, 4, 4, 4)), "channel_index": [0, 1, 2, 3]}
    if label:
        item["label"] = _nifti(tmp_path / label)
    dl = read_datalist(str(_write(tmp_path / "dl.json", {"testing": [item]})))
    assert [it["case"] for it in dl["test"]] == [case]


# ---- 4. inference folds ------------------------------------------------------------------------------------------


def test_an_inference_fold_without_a_datalist_is_refused(layout_datasets) -> None:
    root = layout_datasets["brats2021"]
    with pytest.raises(DatasetError, match="^--infer_fold 1 needs --datalist: .*drop --infer_fold$"):
        DataSource(root).inference_items(1)
    assert len(DataSource(root).inference_items(None)) == len(DataSource(root).inference_items(-1)) == 3


def test_an_inference_fold_not_in_the_datalist_is_refused_listing_the_folds(layout_datasets, tmp_path: Path) -> None:
    out = tmp_path / "dl.json"
    write_datalist(layout_datasets["brats2021"], out, folds=2)
    with pytest.raises(DatasetError, match=r"fold 5 is not in the datalist .*dl\.json \(folds present: \[0, 1\]\); "
                                           "pass --infer_fold one of those"):
        DataSource(None, str(out)).inference_items(5)


# ---- 5. discovery refusals ---------------------------------------------------------------------------------------


def test_one_case_id_in_two_folders_is_refused_naming_both(layout_datasets, tmp_path: Path) -> None:
    src = layout_datasets["brats2021"] / "BraTS2021_00000"
    for grade in ("HGG", "LGG"):
        shutil.copytree(src, tmp_path / grade / src.name)
    shutil.copytree(layout_datasets["brats2021"] / "BraTS2021_00001", tmp_path / "HGG" / "BraTS2021_00001")
    scan = scan_dataset(tmp_path)
    assert [c.case_id for c in scan.cases] == ["BraTS2021_00001"]
    both = f"{tmp_path / 'HGG' / src.name} and {tmp_path / 'LGG' / src.name}"
    with pytest.raises(DatasetError, match=rf"case BraTS2021_00000: 2 case folders have the same case id: "
                                           rf"{re.escape(both)}"):
        discover_cases(tmp_path)


@pytest.mark.parametrize(
    ("layout", "relative"),
    [
        pytest.param("brats2021", "BraTS2021_00001/BraTS2021_00001_t1", id="brats2021_contrast"),
        pytest.param("brats2023", "BraTS-GLI-00001-000/BraTS-GLI-00001-000-seg", id="brats2023_seg"),
        pytest.param("msd", "imagesTr/BRATS_002", id="msd_image"),
    ],
)
def test_a_file_present_as_both_nii_and_nii_gz_is_refused(layout_datasets, tmp_path: Path, layout: str,
                                                          relative: str) -> None:
    root = tmp_path / layout
    shutil.copytree(layout_datasets[layout], root)
    gz = root / f"{relative}.nii.gz"
    shutil.copy(gz, root / f"{relative}.nii")
    name = Path(relative).name
    with pytest.raises(DatasetError, match=rf"holds both {name}\.nii and {name}\.nii\.gz; keep one of the two"):
        discover_cases(root)


@pytest.mark.parametrize(
    ("layout", "layout_given"),
    [
        pytest.param("brats2021", None, id="brats2021_detected"),
        pytest.param("brats2023", None, id="brats2023_detected"),
        pytest.param("brats2021", "brats2021", id="brats2021_given"),
    ],
)
def test_a_single_case_folder_given_as_dataset_says_to_pass_its_parent(layout_datasets, layout: str,
                                                                       layout_given: str | None) -> None:
    case = sorted(p for p in layout_datasets[layout].iterdir() if p.is_dir())[0]
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(case))} is a single case folder \(it holds "
                                           rf"{case.name}.*\); pass its parent folder as --dataset_dir: "
                                           rf"--dataset_dir {re.escape(str(case.parent))}$"):
        discover_cases(case, layout_given)


@pytest.mark.parametrize("channels", [
    pytest.param(["T1ce", "FLAIR"], id="two_channels"),
    pytest.param(["T1", "T1ce", "T2", "FLAIR"], id="the_brats_channel_names"),  # its layout decides, not the names
])
def test_nnunet_channel_files_listed_out_of_order_are_put_in_order_by_their_numbers(tmp_path: Path,
                                                                                   channels: list[str]) -> None:
    from pipeline.data.synthetic import write_dataset

    root = tmp_path / "nnunet"
    write_dataset(root, cases=2, shape=(32, 32, 24), layout="nnunet", channels=channels)
    dl = build_datalist(root, folds=2)
    for item in dl["training"]:
        item["image"] = item["image"][::-1]  # _0003 (or _0001) listed first
    path = _write(tmp_path / "dl.json", dl)
    numbers = [f"{i:04d}" for i in range(len(channels))]
    for item in read_datalist(path)["training"]:
        assert [Path(p).name[-11:-7] for p in item["image"]] == numbers
    broken = json.loads(path.read_text())
    broken["training"][0]["image"] = [broken["training"][0]["image"][0]] * len(channels)
    with pytest.raises(DatasetError, match=rf"numbered \[{', '.join([str(len(channels) - 1)] * len(channels))}\]"):
        read_datalist(_write(tmp_path / "broken.json", broken))


def test_the_same_files_under_two_case_ids_are_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    dl = build_datalist(tiny_dataset, folds=2)
    twin = {**dl["training"][0], "case": "twin", "fold": 1 - dl["training"][0]["fold"]}
    dl["training"].append(twin)
    with pytest.raises(DatasetError, match=f"cases {dl['training'][0]['case']} and twin list the same file"):
        read_datalist(_write(tmp_path / "dl.json", dl))


@pytest.mark.parametrize(("channels", "expected"), [
    pytest.param(["FLAIR", "T1", "T1ce", "T2"], [1, 2, 3, 0], id="flair_first"),
    pytest.param(["t2f", "t1n", "t1c", "t2w"], [1, 2, 3, 0], id="brats2023_names"),
    pytest.param(["T1", "T1ce", "T2", "FLAIR"], [0, 1, 2, 3], id="the_schemes_order"),
    pytest.param(["T1", "T1", "T2", "FLAIR"], None, id="a_channel_twice"),
])
def test_a_datalists_channels_order_its_image_files_by_name(tmp_path: Path, channels: list[str],
                                                            expected: list[int] | None) -> None:
    """Files whose names show nothing (img0..img3) are taken in the order the datalist's "channels" declare."""
    import nibabel as nib
    import numpy as np

    images = []
    for i in range(4):
        images.append(tmp_path / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), images[-1])
    label = tmp_path / "lab.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), label)
    dl = {"channels": channels, "training": [{"case": "c", "image": [str(p) for p in images], "label": str(label),
                                              "fold": 0}], "test": []}
    path = _write(tmp_path / "dl.json", dl)
    if expected is None:
        with pytest.raises(DatasetError, match=r"do not name the channels of its label scheme .* once each"):
            read_datalist(path)
        return
    assert read_datalist(path)["training"][0]["image"] == [str(images[i]) for i in expected]


@pytest.mark.parametrize("declared", [False, True])
def test_nnunet_images_without_channel_numbers_are_read_only_in_a_declared_order(declared: bool) -> None:
    """The same rule where the layout numbers its channels (nnU-Net's <case>_XXXX): names without numbers."""
    from pipeline.data.datalist import _numbered_images

    images = ["/d/CASE_flair.nii.gz", "/d/CASE_other.nii.gz"]
    if declared:
        assert _numbered_images(images, "datalist d.json: case CASE", declared=True) == images
    else:
        with pytest.raises(DatasetError, match="image names such as CASE_flair.nii.gz do not show their contrast"):
            _numbered_images(images, "datalist d.json: case CASE", declared=False)
        with pytest.raises(DatasetError, match="image names such as CASE_flair.nii.gz do not show their contrast"):
            _numbered_images(["/d/CASE_0001.nii.gz", images[0]], "x", declared=False)  # _0001 out of its place
    assert _numbered_images(images[:1], "one channel", declared=False) == images[:1]
    one_left = ["/d/CASE_0000.nii.gz", "/d/CASE_flair.nii.gz"]  # the channel _0000 leaves: by elimination
    assert _numbered_images(one_left, "x", declared=declared) == one_left


def _label_of_the_other(a: dict, b: dict) -> dict:
    return {**a, "seg": b["seg"]}


def _a_contrast_of_the_other(a: dict, b: dict) -> dict:
    return {**a, "T2": b["T2"]}


@pytest.mark.parametrize("swap", [_label_of_the_other, _a_contrast_of_the_other],
                         ids=["the_label_of_another_case", "a_contrast_of_another_case"])
@pytest.mark.parametrize("section", ["training", "test"])
@pytest.mark.parametrize("style", ["ours", "model_zoo"])
def test_an_item_listing_files_of_two_cases_is_refused_naming_both(two_cases, tmp_path: Path, swap, section: str,
                                                                   style: str) -> None:
    """A hand-written datalist paired case 00000's images with case 00001's label (or contrast): training learnt
    from and evaluation scored against the wrong label without a sign. Files whose names show their case must be
    one case's."""
    a, b = two_cases.values()
    files = swap(a, b)
    if style == "ours":
        item = _item(files, "BraTS2021_00000", fold=0 if section == "training" else None)
        raw = {"training": [_item(b, "BraTS2021_00001")] * (section == "test"), section: [item]}
    else:
        zoo = {"image": [files[c] for c in CHANNELS], "label": files["seg"]}
        raw = {"training": [zoo], "validation": []} if section == "training" else {"testing": [zoo]}
    dl = _write(tmp_path / "dl.json", raw)
    with pytest.raises(DatasetError, match=r"of different cases \(.*BraTS2021_0000[01].* of BraTS2021_0000[01], "
                                           r".*BraTS2021_0000[01].* of BraTS2021_0000[01]\); list one case's"):
        read_datalist(str(dl))


@pytest.mark.parametrize("section", ["training", "test"])
@pytest.mark.parametrize("name", ["BraTS2021_00001", "BraTS2021_00007"], ids=["another_listed_case", "an_unlisted_one"])
def test_an_item_named_as_another_case_of_its_files_form_is_refused(two_cases, tmp_path: Path, section: str,
                                                                    name: str) -> None:
    """Case 00000's files listed as "case": "BraTS2021_00001" were segmented and written as 00001's, and a folder of
    labels then scored them against 00001's label. A name of that form must be the files' case."""
    a, b = two_cases.values()
    item = _item(a, name, fold=0 if section == "training" else None)
    raw = {"training": [_item(b, "BraTS2021_00001")] * (section == "test"), section: [item]}
    with pytest.raises(DatasetError, match=rf"case {name}: its files are BraTS2021_00000's \(BraTS2021_00000_.*\) but "
                                           rf"the item names another case of that form, {name}.*Set \"case\" to "
                                           "BraTS2021_00000"):
        read_datalist(str(_write(tmp_path / "dl.json", raw)))


@pytest.mark.parametrize("name", ["patient7", "BraTS2021_00000_flipped", "BraTS2021_00000"])
def test_an_item_named_freely_or_as_its_own_case_is_read(two_cases, tmp_path: Path, name: str) -> None:
    a, _ = two_cases.values()
    dl = read_datalist(str(_write(tmp_path / "dl.json", {"training": [_item(a, name, fold=0)]})))
    assert [it["case"] for it in dl["training"]] == [name]


def test_an_nnunet_item_whose_label_is_another_cases_is_refused(tmp_path: Path) -> None:
    """The same in nnU-Net's numbered names: imagesTr/<case>_XXXX.nii.gz against labelsTr/<other case>.nii.gz."""
    from pipeline.data.synthetic import write_dataset

    write_dataset(tmp_path / "d", cases=2, shape=(16, 16, 16), layout="nnunet")
    dl = build_datalist(tmp_path / "d", folds=2)
    first, second = dl["training"]
    first["label"] = second["label"]
    with pytest.raises(DatasetError, match=r"of different cases \(BraTS2021_00000_0000\.nii\.gz of BraTS2021_00000, "
                                           r"BraTS2021_00001\.nii\.gz of BraTS2021_00001\)"):
        read_datalist(str(_write(tmp_path / "dl.json", dl)))


@pytest.mark.parametrize(("content", "said"), [
    pytest.param(lambda dl: {**dl, "channels": [{"name": "T1"}, "T1ce", "T2", "FLAIR"]}, r'"channels" is \[\{',
                 id="a_channel_that_is_an_object"),
    pytest.param(lambda dl: "[" * 100000 + "]" * 100000, "is not valid JSON .nested too deeply",
                 id="json_nested_too_deeply"),
])
def test_a_malformed_datalist_is_one_error(two_cases, tmp_path: Path, content, said: str) -> None:
    """A channel given as an object, or JSON nested deeper than Python's decoder goes, ended in a traceback."""
    dl = tmp_path / "dl.json"
    made = content({"channels": ["T1", "T1ce", "T2", "FLAIR"], "training": [_item(two_cases["BraTS2021_00000"], "A")],
                    "test": []})
    dl.write_text(made if isinstance(made, str) else json.dumps(made))
    with pytest.raises(DatasetError, match=said):
        read_datalist(str(dl))


@pytest.mark.parametrize("space", ["\u202f", "\u00a0", " "], ids=["narrow_no_break_space", "no_break_space", "space"])
def test_a_datalist_of_a_folder_named_with_a_unicode_space_reads_back(layout_datasets, tmp_path: Path,
                                                                      space: str) -> None:
    """Paths are refused only for what no path holds (a control character, a lone surrogate): macOS names files
    "Scans 10.00\u202fAM", and their datalist must read back as it was written."""
    data = Path(shutil.copytree(layout_datasets["brats2021"], tmp_path / f"Scans 10.00{space}AM"))
    written = write_datalist(data, tmp_path / "dl.json", folds=2)
    assert read_datalist(str(tmp_path / "dl.json")) == written
