"""The three dataset layouts: detected, discovered, and read as the same channels and regions; MSD conventions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from pipeline.core.errors import UserError
from pipeline.data.datalist import build_datalist
from pipeline.data.labels import CHANNELS, labels_to_regions, regions_to_labels
from pipeline.data.layouts import DatasetError, detect_layout, discover_cases
from pipeline.data.layouts.msd import msd_channel_index
from pipeline.data.source import DataSource
from pipeline.data.transforms import LabelsToRegionsd, SelectChannelsd
from pipeline.evaluation.regions import evaluate_case, evaluate_folders
from pipeline.training.cache import cached_dataset, transform_hash
from tests.helpers import LAYOUT_NAMES, LAYOUT_SHAPE, parse_bundle

CASE_IDS = {
    "brats2021": ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002"],
    "brats2023": ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000", "BraTS-GLI-00002-000"],
    "msd": ["BRATS_001", "BRATS_002", "BRATS_003"],
}
SCHEME = {"brats2021": "brats", "brats2023": "brats2023", "msd": "msd"}


def _parser(dataset_dir: Path, **overrides: object) -> ConfigParser:
    return parse_bundle("training", {"dataset_dir": str(dataset_dir), "device": "cpu", "num_workers": 0, **overrides})


def _reference(brats2021: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``(4, X, Y, Z)`` T1, T1ce, T2, FLAIR and regions ``(3, X, Y, Z)`` of a BraTS 2021 case (plain nibabel)."""
    cid = CASE_IDS["brats2021"][index]
    folder = brats2021 / cid
    image = np.stack([np.asarray(nib.load(folder / f"{cid}_{s}.nii.gz").dataobj) for s in ("t1", "t1ce", "t2",
                                                                                             "flair")])
    seg = np.asarray(nib.load(folder / f"{cid}_seg.nii.gz").dataobj)
    return image.astype(np.float32), labels_to_regions(seg, "brats")


# ---- detection and discovery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_the_layout_is_detected_with_its_label_scheme_and_a_reason(layout_datasets, layout: str) -> None:
    info = detect_layout(layout_datasets[layout])
    assert (info.layout, info.label_scheme) == (layout, SCHEME[layout])
    assert ("imagesTr/" if layout == "msd" else CASE_IDS[layout][0]) in info.reason
    assert f"layout {layout}" in str(info)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_discovery_lists_every_case_with_its_files_in_channel_order(layout_datasets, layout: str) -> None:
    cases = discover_cases(layout_datasets[layout])
    assert [c.case_id for c in cases] == CASE_IDS[layout]
    for c in cases:
        if layout == "msd":
            assert [Path(p).relative_to(layout_datasets[layout]).as_posix() for p in c.images] == [
                f"imagesTr/{c.case_id}.nii.gz"]
            assert c.channel_index == (1, 2, 3, 0)  # FLAIR, T1w, T1gd, T2w -> T1, T1ce, T2, FLAIR
            assert Path(c.label).relative_to(layout_datasets[layout]).as_posix() == f"labelsTr/{c.case_id}.nii.gz"
        else:
            sep, suffixes = ("_", "t1 t1ce t2 flair") if layout == "brats2021" else ("-", "t1n t1c t2w t2f")
            assert [Path(p).name for p in c.images] == [f"{c.case_id}{sep}{s}.nii.gz" for s in suffixes.split()]
            assert c.channel_index is None and Path(c.label).name == f"{c.case_id}{sep}seg.nii.gz"


def test_brats2018_hgg_and_lgg_subfolders_are_searched(layout_datasets, tmp_path: Path) -> None:
    for grade, cid in (("HGG", CASE_IDS["brats2021"][0]), ("LGG", CASE_IDS["brats2021"][1])):
        shutil.copytree(layout_datasets["brats2021"] / cid, tmp_path / grade / cid)
    assert detect_layout(tmp_path).layout == "brats2021"
    assert [c.case_id for c in discover_cases(tmp_path)] == CASE_IDS["brats2021"][:2]


def test_a_folder_mixing_brats_layouts_is_refused_naming_a_case_of_each(layout_datasets, tmp_path: Path) -> None:
    shutil.copytree(layout_datasets["brats2021"], tmp_path / "ds")
    shutil.copytree(layout_datasets["brats2023"] / CASE_IDS["brats2023"][0], tmp_path / "ds" / CASE_IDS["brats2023"][0])
    with pytest.raises(DatasetError, match=r"mixes two layouts.*BraTS2021_00000.*BraTS-GLI-00000-000"):
        detect_layout(tmp_path / "ds")


def test_a_folder_without_cases_lists_the_three_layouts(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(DatasetError, match=r"no BraTS case found.*<case>_{t1,t1ce.*<case>-{t1n.*imagesTr/"):
        detect_layout(tmp_path)


def test_the_datalist_records_layout_scheme_and_the_msd_channel_index(layout_datasets) -> None:
    dl = build_datalist(layout_datasets["msd"], folds=3)
    assert (dl["layout"], dl["label_scheme"], dl["channels"]) == ("msd", "msd", list(CHANNELS))
    assert all(it["channel_index"] == [1, 2, 3, 0] and len(it["image"]) == 1 for it in dl["training"])
    dl = build_datalist(layout_datasets["brats2023"], folds=3, label_scheme="brats2024")
    assert dl["label_scheme"] == "brats2024"
    with pytest.raises(UserError, match="label 4 is RC in the data, ET in scheme brats"):  # BraTS 2023 names: ET = 3
        build_datalist(layout_datasets["brats2023"], folds=3, label_scheme="brats")


def test_msd_macos_resource_files_are_ignored(layout_datasets, tmp_path: Path) -> None:
    root = tmp_path / "msd"
    shutil.copytree(layout_datasets["msd"], root)
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    assert [c.case_id for c in discover_cases(root)] == CASE_IDS["msd"]


@pytest.mark.parametrize(
    ("modalities", "index"),
    [
        pytest.param(["FLAIR", "T1w", "t1gd", "T2w"], (1, 2, 3, 0), id="msd_task01_order"),
        pytest.param(["T1", "T1ce", "T2", "FLAIR"], (0, 1, 2, 3), id="project_order"),
        pytest.param(["t2f", "t1c", "t1n", "t2w"], (2, 1, 3, 0), id="brats2023_names"),
    ],
)
def test_the_msd_channel_index_follows_the_modality_names(modalities: list[str], index: tuple[int, ...]) -> None:
    got = msd_channel_index(modalities)
    assert got == index
    assert [modalities[i] for i in got] == [modalities[i] for i in index]  # position of T1, T1ce, T2, FLAIR


def test_dataset_json_sets_the_msd_channel_order_and_a_bad_table_is_named(layout_datasets, tmp_path: Path) -> None:
    root = tmp_path / "msd"
    shutil.copytree(layout_datasets["msd"], root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["modality"] = {"0": "T1w", "1": "t1gd", "2": "T2w", "3": "FLAIR"}
    (root / "dataset.json").write_text(json.dumps(meta))
    assert {c.channel_index for c in discover_cases(root)} == {(0, 1, 2, 3)}
    meta["modality"] = {"0": "T1w", "1": "DWI", "2": "T2w", "3": "FLAIR"}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"dataset\.json's modality table.*DWI"):
        discover_cases(root)


def test_label_scheme_auto_follows_the_layout_and_an_explicit_scheme_wins(layout_datasets) -> None:
    for layout in LAYOUT_NAMES:
        assert DataSource(layout_datasets[layout], label_scheme="auto").scheme == SCHEME[layout]
    assert DataSource(layout_datasets["brats2021"], label_scheme="brats2023").scheme == "brats2023"
    with pytest.raises(ValueError, match="unknown label_scheme 'brats2019'"):
        DataSource(layout_datasets["brats2021"], label_scheme="brats2019")


# ---- every layout reaches the network as the same channels and regions ---------------------------------------


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_every_layout_gives_the_network_t1_t1ce_t2_flair_and_the_same_regions(layout_datasets, layout: str) -> None:
    """The bundle's own loading (load_image, select_channels, labels_to_regions with the auto scheme) of case 1
    in each layout equals the BraTS 2021 files stacked and converted by plain nibabel/NumPy."""
    parser = _parser(layout_datasets[layout])
    load, select, regions = (parser.get_parsed_content(k) for k in ("load_image", "select_channels",
                                                                       "labels_to_regions"))
    case = discover_cases(layout_datasets[layout])[1]
    item = regions(select(load(case.to_item())))
    image, want_regions = _reference(layout_datasets["brats2021"], 1)
    assert tuple(item["image"].shape) == (4, *LAYOUT_SHAPE)
    np.testing.assert_array_equal(item["image"].numpy(), image)
    np.testing.assert_array_equal(item["label"].numpy(), want_regions)
    assert "channel_index" not in item


def test_msd_labels_convert_to_the_regions_of_the_same_brats_labels_and_back(layout_datasets) -> None:
    cid = CASE_IDS["brats2021"][0]
    seg = np.asarray(nib.load(layout_datasets["brats2021"] / cid / f"{cid}_seg.nii.gz").dataobj)
    msd = np.asarray(nib.load(layout_datasets["msd"] / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    np.testing.assert_array_equal(msd, np.select([seg == 1, seg == 2, seg == 4], [2, 1, 3], 0))  # NET 2, ED 1, ET 3
    np.testing.assert_array_equal(labels_to_regions(msd, "msd"), labels_to_regions(seg, "brats"))
    np.testing.assert_array_equal(regions_to_labels(labels_to_regions(msd, "msd"), "msd"), msd)


@pytest.mark.parametrize("scheme", ["brats", "brats2023"])
def test_labels_to_regions_transform_equals_monais_brats_transform(scheme: str) -> None:
    et = {"brats": 4, "brats2023": 3}[scheme]
    label = torch.as_tensor(np.random.default_rng(0).choice([0, 1, 2, et], size=(1, 6, 5, 4)).astype(np.float32))
    ours = LabelsToRegionsd("label", scheme)({"label": label})["label"]
    monai = ConvertToMultiChannelBasedOnBratsClasses(et_label=et)(label)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(monai))


def test_select_channels_leaves_a_brats_item_alone_and_names_the_case_when_the_index_does_not_fit() -> None:
    image = MetaTensor(torch.arange(4.0).reshape(4, 1, 1, 1), meta={"filename_or_obj": "BRATS_007.nii.gz"})
    out = SelectChannelsd("image")({"case": "BraTS2021_00000", "image": image})
    assert torch.equal(out["image"], image)
    out = SelectChannelsd("image")({"case": "BRATS_007", "image": image, "channel_index": [1, 2, 3, 0]})
    assert out["image"].flatten().tolist() == [1.0, 2.0, 3.0, 0.0] and "channel_index" not in out
    with pytest.raises(ValueError, match=r"case BRATS_007: BRATS_007\.nii\.gz loads as 4 channel\(s\)"):
        SelectChannelsd("image")({"case": "BRATS_007", "image": image, "channel_index": [1, 2, 3, 4]})


# ---- inference writes, and evaluation reads, each dataset's own numbering ------------------------------------


@pytest.mark.parametrize("layout", ["msd", "brats2023"])
def test_inference_postprocessing_writes_the_reference_labels_in_the_datasets_own_numbering(
    layout_datasets, layout: str, tmp_path: Path
) -> None:
    """Oracle prediction (as tests/test_inference.py): the reference regions through the bundle's inference
    pre/post-processing come back as the dataset's own label file, voxel for voxel, with the image's affine."""
    case = discover_cases(layout_datasets[layout])[0]
    ref = nib.load(case.label)
    regions = labels_to_regions(np.asarray(ref.dataobj), SCHEME[layout]).astype(np.float32)
    regions_file = tmp_path / "regions.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(regions, 0, -1), ref.affine), regions_file)
    parser = parse_bundle("inference", {"dataset_dir": str(layout_datasets[layout]),
                                        "output_dir": str(tmp_path / "seg"), "device": "cpu",
                                        "data_keys": ["image", "regions"]})
    pre, post = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")
    item = pre({**case.to_item(), "regions": str(regions_file)})
    post({**item, "pred": (item["regions"].as_tensor() - 0.5) * 20})
    parser.get_parsed_content("infer_report").writers.wait()  # written by a background thread
    out = nib.load(tmp_path / "seg" / f"{case.case_id}.nii.gz")
    assert out.shape == ref.shape == LAYOUT_SHAPE
    np.testing.assert_allclose(out.affine, ref.affine)
    np.testing.assert_array_equal(np.asarray(out.dataobj), np.asarray(ref.dataobj))


def test_evaluation_scores_msd_labels_as_the_same_tumour_in_brats_numbering(layout_datasets, tmp_path: Path) -> None:
    seg = np.asarray(nib.load(discover_cases(layout_datasets["brats2021"])[0].label).dataobj)
    pred = seg.copy()
    pred[:, :, : LAYOUT_SHAPE[2] // 2] = 0  # a prediction that misses half the tumour
    to_msd = np.array([0, 2, 1, 0, 3], dtype=np.uint8)
    brats_rows = evaluate_case(pred, seg, (1.0, 1.0, 1.0), scheme="brats")
    msd_rows = evaluate_case(to_msd[pred], to_msd[seg], (1.0, 1.0, 1.0), scheme="msd")
    assert msd_rows == brats_rows and any(r["dice"] < 1 for r in brats_rows)
    # a folder of predictions that equal the MSD references scores Dice 1 against the MSD dataset folder
    (tmp_path / "pred").mkdir()
    for c in discover_cases(layout_datasets["msd"]):
        shutil.copy(c.label, tmp_path / "pred" / f"{c.case_id}.nii.gz")
    summary = evaluate_folders(tmp_path / "pred", layout_datasets["msd"], tmp_path / "eval", scheme="msd")
    assert summary["cases"] == 3 and summary["mean_dice"] == pytest.approx(1.0)


# ---- the preprocessing cache -----------------------------------------------------------------------------------


def test_the_cache_decodes_each_case_once_and_again_only_when_a_file_changes(layout_datasets, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ds"
    shutil.copytree(layout_datasets["msd"], root)
    parser = _parser(root, cache_dir=str(tmp_path / "cache"), roi_size=[32, 32, 32])
    transform = parser.get_parsed_content("validate#preprocessing")
    items = [c.to_item() for c in discover_cases(root)]
    first = [x["image"] for x in cached_dataset(items, transform, tmp_path / "cache")]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3

    def no_decoding(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a cached case was decoded again")

    with monkeypatch.context() as m:
        m.setattr("monai.transforms.LoadImaged.__call__", no_decoding)
        second = [x["image"] for x in cached_dataset(items, transform, tmp_path / "cache")]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    image = Path(items[0]["image"][0])
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # a replaced file
    _ = cached_dataset(items, transform, tmp_path / "cache")[0]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4


def test_the_cache_key_changes_with_the_preprocessing_settings(layout_datasets) -> None:
    a = _parser(layout_datasets["brats2021"], roi_size=[32, 32, 32]).get_parsed_content("train#preprocessing")
    b = _parser(layout_datasets["brats2021"], roi_size=[48, 48, 48]).get_parsed_content("train#preprocessing")
    again = _parser(layout_datasets["brats2021"], roi_size=[32, 32, 32]).get_parsed_content("train#preprocessing")
    assert transform_hash(a.transforms[:7]) != transform_hash(b.transforms[:7])
    assert transform_hash(a.transforms[:7]) == transform_hash(again.transforms[:7])


def test_the_datalist_command_prints_the_detected_layout(layout_datasets, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from pipeline.__main__ import main as pipeline_main

    assert pipeline_main(["datalist", str(layout_datasets["msd"]), "--out", str(tmp_path / "dl.json"),
                          "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "layout msd (Medical Segmentation Decathlon Task01_BrainTumour), label scheme msd" in out
    assert json.loads((tmp_path / "dl.json").read_text())["layout"] == "msd"


@pytest.mark.parametrize("damage", ["cut short", "not a checkpoint"])
def test_a_cache_file_left_unreadable_is_computed_again_not_a_failure_of_every_later_run(
        layout_datasets, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MONAI 1.6.1 wrote the cache through the system's temporary folder (a copy across file systems, cut short by
    a kill) and recomputed only an "Invalid magic number": a truncated file failed every later training."""
    parser = _parser(layout_datasets["msd"], cache_dir=str(tmp_path / "cache"), roi_size=[32, 32, 32])
    transform = parser.get_parsed_content("validate#preprocessing")
    items = [c.to_item() for c in discover_cases(layout_datasets["msd"])][:1]
    first = np.asarray(cached_dataset(items, transform, tmp_path / "cache")[0]["image"])
    (cached,) = (tmp_path / "cache").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:1000] if damage == "cut short" else b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        again = np.asarray(cached_dataset(items, transform, tmp_path / "cache")[0]["image"])
    np.testing.assert_array_equal(first, again)
    written = []
    monkeypatch.setattr("os.replace", lambda src, dst: written.append((Path(src).parent, Path(dst))) or
                        shutil.move(src, dst))
    cached.unlink()
    cached_dataset(items, transform, tmp_path / "cache")[0]
    assert written == [(tmp_path / "cache", cached)]  # written beside its place, then renamed
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["datalist.json", "BraTS2021_00000_t1.nii.gz"])
def test_an_existing_file_given_for_a_dataset_folder_is_called_a_file(tmp_path: Path, name: str) -> None:
    """Not "dataset folder ... does not exist": the file is there, it is the wrong kind of input."""
    from pipeline.data.layouts import scan_dataset

    (tmp_path / name).write_text("{}")
    with pytest.raises(DatasetError, match="is (a file|one image file), not a dataset") as err:
        scan_dataset(tmp_path / name)
    assert "does not exist" not in str(err.value)


def test_a_read_only_cache_folder_is_used_as_it_is(layout_datasets, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """MONAI passes over a cache it may not write (its issue 3613); the atomic writer raised instead."""
    import pipeline.core.files as files

    parser = _parser(layout_datasets["msd"], cache_dir=str(tmp_path / "cache"), roi_size=[32, 32, 32])
    transform = parser.get_parsed_content("validate#preprocessing")
    items = [c.to_item() for c in discover_cases(layout_datasets["msd"])][:1]

    def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "atomic_write", refused)
    assert np.asarray(cached_dataset(items, transform, tmp_path / "cache")[0]["image"]).shape[0] == 4


def _dataset(layout: str, layout_datasets: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if layout in layout_datasets:
        return layout_datasets[layout]
    from pipeline.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("nnunet") / "Dataset001_BraTS"
    write_dataset(root, cases=3, shape=LAYOUT_SHAPE, seed=5, layout=layout)
    return root


@pytest.mark.parametrize("layout", [*LAYOUT_NAMES, "nnunet"])
def test_cases_whose_ids_differ_only_in_letter_case_are_refused_in_every_layout(
        layout: str, layout_datasets, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """BraTS2021_00000 and brats2021_00000 write one <case>.nii.gz on macOS and Windows; as a training case and a
    validation case they are one case validating the model that trained on it."""
    from pipeline.data.layouts import scan_dataset, usable_cases

    root = tmp_path / "data"
    shutil.copytree(_dataset(layout, layout_datasets, tmp_path_factory), root)
    first, *others = sorted(c.case_id for c in scan_dataset(root).cases)
    twin = first.lower() if first.lower() != first else first.upper()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and first in str(p.relative_to(root))):
        copy = root / str(path.relative_to(root)).replace(first, twin)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)

    scan = scan_dataset(root)
    assert sorted(c.case_id for c in scan.cases) == others  # both twins are out, the rest is read
    assert sorted(p.case for p in scan.errors) == sorted([first, twin])  # both named, so both are reported
    with pytest.raises(DatasetError, match=f"case {twin}: its id and {first}'s differ only in letter case"):
        usable_cases(scan)
