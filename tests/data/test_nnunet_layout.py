"""nnU-Net v2's raw format as a layout: detected, scanned channel by channel, described by its own dataset.json,
checked, carried by datalists, and written by the synthetic generator."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main as check_main
from pipeline.core.errors import UserError
from pipeline.data.check import check_case, check_dataset
from pipeline.data.datalist import build_datalist, read_datalist, write_datalist
from pipeline.data.labels import CHANNELS, describe, labels_to_regions, regions_to_labels
from pipeline.data.layouts import Case, DatasetError, detect_layout, discover_cases, scan_dataset
from pipeline.data.source import DataSource
from pipeline.data.synthetic import case_has_rc, write_dataset
from tests.helpers import LAYOUT_SHAPE

SEED = 5  # the seed of conftest's layout_datasets: case i holds the same arrays here
CASES = ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002"]

DATASET137 = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}
LABEL_TABLES = {
    "dataset137_regions": ({**DATASET137}, [1, 2, 3]),
    "dataset137_regions_with_rc": ({**DATASET137, "resection cavity": 4}, [1, 2, 3, 4]),
    "plain_rc_labels": ({"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}, None),
}


@pytest.fixture(scope="module")
def nnunet_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 synthetic cases of 32 x 32 x 24 in nnU-Net's raw format: 4 channels, T1ce alone, and 4 channels with a
    resection cavity (read-only: copy one before planting a fault)."""
    base = tmp_path_factory.mktemp("nnunet")
    options = {"four": {}, "t1ce": {"channels": ("T1ce",)}, "rc": {"rc": True}}
    for name, kw in options.items():
        write_dataset(base / name, cases=3, shape=LAYOUT_SHAPE, seed=SEED, layout="nnunet", **kw)
    return {name: base / name for name in options}


def _copy(nnunet_datasets: dict[str, Path], name: str, dest: Path) -> Path:
    root = dest / name
    shutil.copytree(nnunet_datasets[name], root)
    return root


def _scheme(root: Path) -> str:
    return f"nnunet:{root.resolve() / 'dataset.json'}"


def _dataset_json(root: Path, labels: dict, order: list[int] | None, **extra: object) -> Path:
    meta = {"channel_names": {"0": "T1"}, "labels": labels, "file_ending": ".nii.gz", **extra}
    if order is not None:
        meta["regions_class_order"] = order
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root / "dataset.json"


# ---- detection and discovery ---------------------------------------------------------------------------------


def test_a_dataset_json_with_channel_names_is_detected_as_nnunet_with_its_own_scheme(nnunet_datasets) -> None:
    root = nnunet_datasets["four"]
    info = detect_layout(root)
    assert (info.layout, info.label_scheme) == ("nnunet", _scheme(root))
    assert "channel_names (T1, T1ce, T2, FLAIR)" in info.reason and "layout nnunet" in str(info)
    assert DataSource(root).scheme == _scheme(root)


@pytest.mark.parametrize(("layout", "scheme"), [pytest.param("msd", "msd", id="msd_modality_table"),
                                                 pytest.param("brats2021", "brats", id="brats2021_folders"),
                                                 pytest.param("brats2023", "brats2023", id="brats2023_folders")])
def test_other_layouts_are_not_taken_for_nnunet(layout_datasets, layout: str, scheme: str) -> None:
    info = detect_layout(layout_datasets[layout])
    assert (info.layout, info.label_scheme) == (layout, scheme)


@pytest.mark.parametrize(("name", "channels"), [pytest.param("four", CHANNELS, id="four_channels"),
                                                pytest.param("t1ce", ("T1ce",), id="one_channel")])
def test_discovery_lists_one_file_per_channel_in_channel_order(nnunet_datasets, name: str,
                                                               channels: tuple[str, ...]) -> None:
    root = nnunet_datasets[name]
    cases = discover_cases(root)
    assert [c.case_id for c in cases] == CASES
    for c in cases:
        assert [Path(p).relative_to(root).as_posix() for p in c.images] == [
            f"imagesTr/{c.case_id}_{k:04d}.nii.gz" for k in range(len(channels))]
        assert c.channel_index is None
        assert Path(c.label).relative_to(root).as_posix() == f"labelsTr/{c.case_id}.nii.gz"
    assert describe(_scheme(root)).channels == channels


def _missing_channel(root: Path) -> tuple[str, str, str]:
    path = root / "imagesTr" / "BraTS2021_00001_0002.nii.gz"
    path.unlink()
    return "BraTS2021_00001", "error", r"missing imagesTr/BraTS2021_00001_0002\.nii\.gz \(channel 2, T2\)"


def _channel_beyond_channel_names(root: Path) -> tuple[str, str, str]:
    shutil.copy(root / "imagesTr" / "BraTS2021_00001_0000.nii.gz", root / "imagesTr" / "BraTS2021_00001_0004.nii.gz")
    return "BraTS2021_00001", "error", r"imagesTr/BraTS2021_00001_0004\.nii\.gz is channel 4, but .* has 4 channel"


def _label_without_images(root: Path) -> tuple[str, str, str]:
    for k in range(4):
        (root / "imagesTr" / f"BraTS2021_00001_{k:04d}.nii.gz").unlink()
    return "BraTS2021_00001", "error", r"no imagesTr/BraTS2021_00001_0000\.nii\.gz .* labelsTr/BraTS2021_00001\.nii"


def _same_id_in_imagests(root: Path) -> tuple[str, str, str]:
    shutil.copytree(root / "imagesTr", root / "imagesTs")
    return "BraTS2021_00000", "error", r"imagesTs/BraTS2021_00000_0000\.nii\.gz has the same case id as imagesTr"


def _image_without_label(root: Path) -> tuple[str, str, str]:
    (root / "labelsTr" / "BraTS2021_00001.nii.gz").unlink()
    return "BraTS2021_00001", "warning", r"has no label labelsTr/BraTS2021_00001\.nii\.gz; it is used as an unlabelled"


def _file_named_otherwise(root: Path) -> tuple[str, str, str]:
    shutil.copy(root / "imagesTr" / "BraTS2021_00001_0000.nii.gz", root / "imagesTr" / "BraTS2021_00001.nii.gz")
    return "", "warning", r"1 file\(s\) in imagesTr/ \(e\.g\. BraTS2021_00001\.nii\.gz\) are not named <case>_<XXXX>"


DISCOVERY_FAULTS = {
    "missing_channel_file": _missing_channel, "channel_beyond_channel_names": _channel_beyond_channel_names,
    "label_without_images": _label_without_images, "same_id_in_imagesTs": _same_id_in_imagests,
    "image_without_label_warns": _image_without_label, "file_named_otherwise_warns": _file_named_otherwise,
}


@pytest.mark.parametrize("fault", [pytest.param(name, id=name) for name in DISCOVERY_FAULTS])
def test_each_discovery_fault_is_named_with_its_case_and_file(nnunet_datasets, tmp_path: Path, fault: str) -> None:
    root = _copy(nnunet_datasets, "four", tmp_path)
    case, severity, pattern = DISCOVERY_FAULTS[fault](root)
    scan = scan_dataset(root)
    found = [p for p in scan.problems if p.case == case and re.search(pattern, p.message)]
    assert [p.severity for p in found] == [severity], [p.message for p in scan.problems]
    if severity == "error":
        assert case not in [c.case_id for c in scan.cases] or fault == "same_id_in_imagesTs"
        with pytest.raises(DatasetError, match=pattern):
            discover_cases(root)
    else:
        assert [c.case_id for c in scan.cases] == CASES


def test_a_file_ending_other_than_nifti_is_refused_with_the_fix(nnunet_datasets, tmp_path: Path) -> None:
    root = _copy(nnunet_datasets, "four", tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".mha"}))
    with pytest.raises(DatasetError, match=r"file_ending '\.mha' .* reads NIfTI only: convert"):
        scan_dataset(root)


def test_a_wrong_num_training_warns_as_nnunet_would_refuse_it(nnunet_datasets, tmp_path: Path) -> None:
    root = _copy(nnunet_datasets, "four", tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "numTraining": 5}))
    messages = [p.message for p in scan_dataset(root).problems if p.severity == "warning"]
    assert any("numTraining 5 but imagesTr/ and labelsTr/ hold 3" in m for m in messages), messages


# ---- the description: scheme string, labels -> regions -> labels ---------------------------------------------


@pytest.mark.parametrize("table", [pytest.param(name, id=name) for name in LABEL_TABLES])
def test_labels_to_regions_and_back_gives_the_label_map(tmp_path: Path, table: str) -> None:
    labels, order = LABEL_TABLES[table]
    path = _dataset_json(tmp_path / "ds", labels, order)
    desc = describe(f"nnunet:{path}")
    values = sorted(desc.allowed)
    label = np.random.default_rng(0).choice(values, size=(8, 7, 6)).astype(np.uint8)
    regions = labels_to_regions(label, desc.name)
    assert regions.shape == (len(desc.regions), 8, 7, 6)
    np.testing.assert_array_equal(regions_to_labels(regions, desc.name), label)


def test_the_synthetic_dataset_json_is_dataset137s_and_its_labels_round_trip(nnunet_datasets) -> None:
    for name, rc in (("four", False), ("rc", True)):
        root = nnunet_datasets[name]
        desc = describe(_scheme(root))
        expected = {"whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,)}
        assert dict(desc.regions) == {**expected, **({"resection cavity": (4,)} if rc else {})}
        for case in discover_cases(root):
            label = np.asarray(nib.load(case.label).dataobj)
            np.testing.assert_array_equal(regions_to_labels(labels_to_regions(label, desc), desc), label)


def test_the_nnunet_labels_are_the_same_tumour_as_the_brats2021_labels(layout_datasets, nnunet_datasets) -> None:
    nn, brats = discover_cases(nnunet_datasets["four"]), discover_cases(layout_datasets["brats2021"])
    names = {"WT": "whole tumor", "TC": "tumor core", "ET": "enhancing tumor"}
    for a, b in zip(nn, brats, strict=True):
        for k in range(4):  # the same image arrays, channel by channel
            np.testing.assert_array_equal(np.asarray(nib.load(a.images[k]).dataobj),
                                          np.asarray(nib.load(b.images[k]).dataobj))
        ra = labels_to_regions(np.asarray(nib.load(a.label).dataobj), _scheme(nnunet_datasets["four"]))
        rb = labels_to_regions(np.asarray(nib.load(b.label).dataobj), "brats")
        nn_regions, brats_regions = list(describe(_scheme(nnunet_datasets["four"])).regions), ["TC", "WT", "ET"]
        for region, nn_name in names.items():
            np.testing.assert_array_equal(ra[nn_regions.index(nn_name)], rb[brats_regions.index(region)])


def test_a_single_channel_dataset_holds_the_t1ce_of_the_four_channel_one(nnunet_datasets) -> None:
    one, four = discover_cases(nnunet_datasets["t1ce"]), discover_cases(nnunet_datasets["four"])
    for a, b in zip(one, four, strict=True):
        np.testing.assert_array_equal(np.asarray(nib.load(a.images[0]).dataobj),
                                      np.asarray(nib.load(b.images[1]).dataobj))


def test_the_resection_cavity_lies_outside_the_tumour_of_the_same_case(nnunet_datasets) -> None:
    for i, (a, b) in enumerate(zip(discover_cases(nnunet_datasets["rc"]), discover_cases(nnunet_datasets["four"]),
                                   strict=True)):
        with_rc, without = (np.asarray(nib.load(c.label).dataobj) for c in (a, b))
        cavity = with_rc == 4
        assert cavity.any() == case_has_rc(SEED, i)
        assert not without[cavity].any()  # painted where the case without a cavity has no tumour
        np.testing.assert_array_equal(with_rc[~cavity], without[~cavity])


# ---- the check ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["four", "t1ce", "rc"])
def test_the_check_accepts_a_valid_nnunet_dataset(nnunet_datasets, name: str, capsys: pytest.CaptureFixture) -> None:
    report = check_dataset(nnunet_datasets[name])
    assert report.problems == [] and report.label_scheme == _scheme(nnunet_datasets[name])
    assert check_main(["check", str(nnunet_datasets[name]), "--jobs", "1", "--label_scheme",
                       _scheme(nnunet_datasets[name])]) == 0
    assert "layout nnunet" in capsys.readouterr().out


def test_the_check_names_a_wrong_label_value_and_the_dataset_json(nnunet_datasets, tmp_path: Path) -> None:
    root = _copy(nnunet_datasets, "four", tmp_path)
    path = root / "labelsTr" / "BraTS2021_00001.nii.gz"
    img = nib.load(path)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(arr, img.affine, header=img.header), path)
    report = check_dataset(root)
    assert [p.file for p in report.errors] == [str(path)]
    assert re.search(r"case BraTS2021_00001: labelsTr/BraTS2021_00001\.nii\.gz contains label 5; expected "
                     r"\{0, 1, 2, 3\} for label scheme 'nnunet:.*dataset\.json'\. If these are classes of the "
                     r"dataset, add them to the \"labels\" of .*dataset\.json", report.errors[0].message)
    assert "Relabel the file to the scheme" not in report.errors[0].message


def test_a_4d_channel_file_is_refused_with_nnunets_one_file_per_channel(nnunet_datasets, tmp_path: Path) -> None:
    root = _copy(nnunet_datasets, "four", tmp_path)
    path = root / "imagesTr" / "BraTS2021_00001_0000.nii.gz"
    img = nib.load(path)
    arr = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([arr, arr], axis=-1), img.affine), path)
    [error] = check_dataset(root).errors
    assert error.file == str(path) and ("imagesTr/BraTS2021_00001_0000.nii.gz is 4D with shape (32, 32, 24, 2); "
                                        "expected a 3D (X, Y, Z) volume; nnU-Net's raw format holds one 3D file per "
                                        "channel") in error.message


def test_the_check_wants_one_file_per_channel_of_the_description(nnunet_datasets) -> None:
    case = discover_cases(nnunet_datasets["four"])[0]
    three = Case(case.case_id, case.images[:3], case.label)
    [problem] = check_case(three, _scheme(nnunet_datasets["four"]))
    assert "lists 3 image file(s); expected 4 (T1, T1ce, T2, FLAIR, the channels of label scheme nnunet:" in \
        problem.message
    one = discover_cases(nnunet_datasets["t1ce"])[0]
    [problem] = check_case(one, "brats")
    assert "lists 1 image file(s); expected 4 (T1, T1ce, T2, FLAIR, the channels of label scheme brats)" in \
        problem.message


def test_inference_checks_the_channels_of_the_datasets_own_description(nnunet_datasets) -> None:
    items = DataSource(nnunet_datasets["t1ce"]).checked_inference_items()
    assert [it["case"] for it in items] == CASES and all(len(it["image"]) == 1 for it in items)


@pytest.mark.parametrize(("scheme", "message"), [
    pytest.param("nnunet:/absent/dataset.json", "/absent/dataset.json does not exist", id="missing_dataset_json"),
    pytest.param("brats2019", "unknown label_scheme 'brats2019'; expected auto or one of ['brats', 'brats2023', "
                 "'brats2024', 'msd', 'ped'] (brats2024: BraTS 2024+ post-treatment glioma, 4 = resection cavity; "
                 "ped: BraTS-PED 2024+, 1 ET, 2 NET, 3 CC, 4 ED) or nnunet:", id="unknown_name"),
])
def test_the_check_command_line_refuses_a_scheme_it_cannot_describe(nnunet_datasets, scheme: str, message: str,
                                                                     capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check_main(["check", str(nnunet_datasets["four"]), "--label_scheme", scheme])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# ---- datalists -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channels"), [pytest.param("four", list(CHANNELS), id="four_channels"),
                                                pytest.param("t1ce", ["T1ce"], id="one_channel")])
def test_a_written_datalist_carries_the_description_and_loads_unchanged(nnunet_datasets, tmp_path: Path, name: str,
                                                                        channels: list[str]) -> None:
    root = nnunet_datasets[name]
    out = tmp_path / "dl.json"
    written = write_datalist(root, out, folds=3)
    assert (written["layout"], written["label_scheme"], written["channels"]) == ("nnunet", _scheme(root), channels)
    assert written["regions"] == ["whole tumor", "tumor core", "enhancing tumor"]
    assert all(len(it["image"]) == len(channels) and "channel_index" not in it for it in written["training"])
    assert read_datalist(str(out)) == written
    assert DataSource(None, out).scheme == _scheme(root)


def test_a_datalist_item_with_another_number_of_images_is_refused(nnunet_datasets, tmp_path: Path) -> None:
    dl = build_datalist(nnunet_datasets["t1ce"], folds=3)
    four = build_datalist(nnunet_datasets["four"], folds=3)
    dl["training"][0]["image"] = four["training"][0]["image"][:2]
    (tmp_path / "dl.json").write_text(json.dumps(dl))
    with pytest.raises(DatasetError, match=r"case BraTS2021_0000\d: \"image\" lists 2 file\(s\); expected 1 \(T1ce"):
        read_datalist(str(tmp_path / "dl.json"))


def test_a_datalist_whose_dataset_json_is_gone_is_refused_naming_it(nnunet_datasets, tmp_path: Path) -> None:
    root = _copy(nnunet_datasets, "t1ce", tmp_path)
    write_datalist(root, tmp_path / "dl.json", folds=3)
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"dl\.json: label scheme nnunet:.*dataset\.json does not exist"):
        read_datalist(str(tmp_path / "dl.json"))


def test_a_built_in_scheme_is_not_laid_over_an_nnunet_datasets_own_description(nnunet_datasets) -> None:
    """Its dataset.json describes its labels, regions and channels (here one channel, regions by list): a built-in
    scheme would read them by position (`pipeline.data.layouts.resolve_scheme`)."""
    with pytest.raises(UserError, match=r"label scheme brats does not describe nnunet data .* describes its own labels "
                                        r"and regions \(whole tumor, tumor core, enhancing tumor"):
        build_datalist(nnunet_datasets["t1ce"], folds=3, label_scheme="brats")


# ---- the synthetic generator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"layout": "brats2021", "channels": ["T1ce"]}, "apply to layout nnunet only", id="channels_brats"),
    pytest.param({"layout": "msd", "rc": True}, "applies to layout nnunet; for BraTS names use layout brats2024",
                 id="rc_msd"),
    pytest.param({"layout": "nnunet", "channels": ["T1ce", "t1c"]}, "each once", id="channel_twice"),
    pytest.param({"layout": "nnunet", "channels": ["PD"]}, "expected one or more of the four contrasts",
                 id="unknown_channel"),
])
def test_options_that_do_not_fit_the_layout_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_dataset(tmp_path / "out", cases=1, shape=LAYOUT_SHAPE, **kwargs)


def test_the_synth_command_writes_a_single_channel_dataset_and_records_its_options(tmp_path: Path) -> None:
    from pipeline.__main__ import main

    out = tmp_path / "nn"
    assert main(["synth", str(out), "--cases", "2", "--shape", "32", "32", "24", "--layout", "nnunet",
                 "--channels", "t1c", "FLAIR", "--rc"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1ce", "1": "FLAIR"} and meta["labels"]["resection cavity"] == 4
    settings = json.loads((out / "synthetic.json").read_text())
    assert (settings["channels"], settings["rc"]) == (["T1ce", "FLAIR"], True)
    before = (out / "imagesTr" / "BraTS2021_00000_0001.nii.gz").stat().st_mtime_ns
    write_dataset(out, cases=2, shape=(32, 32, 24), layout="nnunet", channels=["T1ce", "FLAIR"], rc=True)
    assert (out / "imagesTr" / "BraTS2021_00000_0001.nii.gz").stat().st_mtime_ns == before  # same settings: kept
    with pytest.raises(UserError, match="already holds"):
        write_dataset(out, cases=2, shape=(32, 32, 24), layout="nnunet", channels=["T1ce"])


def test_the_older_layouts_record_no_new_option(layout_datasets) -> None:
    for layout in ("brats2021", "brats2023", "msd"):
        settings = json.loads((layout_datasets[layout] / "synthetic.json").read_text())
        assert set(settings) == {"cases", "shape", "seed", "layout", "cases_written", "files_written"}


@pytest.mark.parametrize(("channels", "index"), [
    pytest.param(("T1ce", "FLAIR"), [1, 0], id="two_channels_stored_flair_first"),
    pytest.param(("T1ce",), [0], id="one_channel"),
    pytest.param(None, [3, 2, 1, 0], id="four_channels_reversed"),
])
def test_a_4d_datalist_item_loads_the_descriptions_channels_in_order_whatever_their_count(
        tmp_path: Path, channels: tuple[str, ...] | None, index: list[int]) -> None:
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from pipeline.bundle import config_files

    root = tmp_path / "nn"
    write_dataset(root, cases=1, shape=LAYOUT_SHAPE, seed=SEED, layout="nnunet",
                  **({"channels": channels} if channels else {}))
    (case,) = discover_cases(root)
    arrays = [np.asarray(nib.load(f).dataobj, np.float32) for f in case.images]  # description order
    stored = np.zeros((*arrays[0].shape, len(arrays)), np.float32)  # one 4D file, channel k at index[k]
    for k, i in enumerate(index):
        stored[..., i] = arrays[k]
    four_d = tmp_path / "case_4d.nii.gz"
    nib.save(nib.Nifti1Image(stored, nib.load(case.images[0]).affine), four_d)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"label_scheme": _scheme(root), "training": [
        {"case": case.case_id, "image": [str(four_d)], "channel_index": index, "label": case.label, "fold": 0}]}))
    parser = ConfigParser()
    parser.read_config(config_files("training"))
    parser.update({"datalist": str(datalist), "dataset_dir": str(root)})
    (item,) = parser.get_parsed_content("data").inference_items()
    loaded = Compose([parser.get_parsed_content("load_image"), parser.get_parsed_content("select_channels")])(item)
    assert loaded["image"].shape[0] == len(arrays)
    for k, array in enumerate(arrays):
        np.testing.assert_array_equal(np.asarray(loaded["image"][k]), array)


def test_a_bad_channel_of_a_4d_item_is_named_by_the_descriptions_channel(tmp_path: Path) -> None:
    root = tmp_path / "nn"
    write_dataset(root, cases=1, shape=LAYOUT_SHAPE, seed=SEED, layout="nnunet", channels=("T1ce", "FLAIR"))
    (case,) = discover_cases(root)
    t1ce, flair = (np.asarray(nib.load(f).dataobj, np.float32) for f in case.images)
    flair[0, 0, 0] = np.nan
    four_d = tmp_path / "case_4d.nii.gz"  # FLAIR stored first: channel_index puts T1ce at 1, FLAIR at 0
    nib.save(nib.Nifti1Image(np.stack([flair, t1ce], axis=-1), nib.load(case.images[0]).affine), four_d)
    problems = check_case(Case(case.case_id, (str(four_d),), case.label, (1, 0)), _scheme(root))
    assert [p.severity for p in problems] == ["error"]
    assert "contains 1 NaN and 0 infinite voxel(s) channel 0 (FLAIR)" in problems[0].message


def _renamed_channels(root: Path, names: list[str]) -> Path:
    meta = json.loads((root / "dataset.json").read_text())
    meta["channel_names"] = {str(i): n for i, n in enumerate(names)}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


TASK01_NAMES = ["FLAIR", "T1w", "t1gd", "T2w"]  # nnU-Net's Dataset001_BrainTumour, converted from MSD's Task01


@pytest.mark.parametrize("scheme", ["auto", "msd", "brats"])
@pytest.mark.parametrize("path", ["inference_items", "training_datalist", "build_datalist", "write_datalist"])
def test_numbered_channels_read_under_a_scheme_of_another_order_are_refused_not_fed_by_position(
        nnunet_datasets, tmp_path: Path, scheme: str, path: str) -> None:
    """Task01 in nnU-Net's format (FLAIR first) read with --label_scheme msd (the data check's advice for its
    numbering) went in by position, FLAIR as T1, while the model's channel check saw the scheme's names. Files
    named by number cannot be reordered by name in a datalist (every reader puts _0000 first), so every path that
    reads the scan refuses it; its own scheme reads it as it is."""
    root = _renamed_channels(_copy(nnunet_datasets, "four", tmp_path), TASK01_NAMES)

    def items() -> list[dict]:
        if path == "build_datalist":
            return build_datalist(root, folds=3, label_scheme=scheme)["training"]
        if path == "write_datalist":
            write_datalist(root, tmp_path / "dl.json", folds=3, label_scheme=scheme)
            return DataSource(None, str(tmp_path / "dl.json"), label_scheme=scheme).datalist["training"]
        source = DataSource(str(root), label_scheme=scheme, folds=3)
        return source.inference_items() if path == "inference_items" else source.datalist["training"]

    if scheme != "auto":
        # its labels (regions by list) or its channel order (FLAIR first) do not fit: refused either way
        with pytest.raises(UserError, match=r"(does not describe nnunet data|numbers its channels FLAIR, T1w, t1gd, "
                                            r"T2w .* reads T1, T1ce, T2, FLAIR).*read it with its own scheme"):
            items()
        assert not (tmp_path / "dl.json").exists()
        return
    first = next(it for it in items() if it["case"] == CASES[0])
    assert [Path(f).name.removeprefix(CASES[0]).removesuffix(".nii.gz") for f in first["image"]] == [
        "_0000", "_0001", "_0002", "_0003"]


def test_files_named_by_contrast_are_reordered_by_name_for_a_scheme_of_another_order(layout_datasets,
                                                                                      tmp_path: Path) -> None:
    """A BraTS folder (files named _t1 ... _flair) read under an nnU-Net scheme that lists FLAIR first: each file
    goes where its contrast is named, in memory and through a datalist written and read back."""
    root = tmp_path / "brats"
    shutil.copytree(layout_datasets["brats2021"], root)
    scheme = f"nnunet:{_dataset_json(tmp_path / 'ds', {'background': 0, 'NCR': 1, 'ED': 2, 'ET': 4}, None)}"
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    meta["channel_names"] = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(meta))
    write_datalist(root, tmp_path / "dl.json", folds=3, label_scheme=scheme)
    for source in (DataSource(str(root), label_scheme=scheme, folds=3),
                   DataSource(None, str(tmp_path / "dl.json"), label_scheme=scheme)):
        first = source.datalist["training"][0]
        assert [Path(f).name.rsplit("_", 1)[1] for f in first["image"]] == [
            "flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]


def test_a_scheme_of_other_contrasts_than_the_files_is_refused_naming_both(nnunet_datasets, tmp_path: Path) -> None:
    root = _renamed_channels(_copy(nnunet_datasets, "four", tmp_path), ["FLAIR", "T1w", "t1gd", "FLAIR"])
    meta = json.loads((root / "dataset.json").read_text())  # plain labels named by role: msd's numbering (Task01's)
    meta["labels"] = {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}
    meta.pop("regions_class_order", None)
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"hold the contrasts FLAIR, T1w, t1gd, FLAIR, the label scheme reads T1"):
        DataSource(str(root), label_scheme="msd").inference_items()


# ---- a dataset.json that cannot describe the data ----------------------------------------------------------------

_NESTED = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}

#: dataset.json contents that were coerced, accepted or ended in a traceback: (text, what the refusal says).
BAD_DESCRIPTIONS = {
    "a fractional label value": ({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": 1.5}},
                                 "label 'a'.*1.5 is not a whole number"),
    "a boolean label value": ({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": True}},
                              "label 'a'.*True is not a whole number"),
    "one value named twice": ({"channel_names": {"0": "T1"}, "labels": {"background": 0, "a": 1, "b": 1}},
                              r"label value\(s\) \[1\] named twice"),
    "labels null": ({"channel_names": {"0": "T1"}, "labels": None}, "must be tables"),
    "labels a list": ({"channel_names": {"0": "T1"}, "labels": [0, 1]}, "must be tables"),
    "regions_class_order a number": ({"channel_names": {"0": "T1"}, "labels": _NESTED, "regions_class_order": 3},
                                     "need 'regions_class_order' with one label value per region"),
    "regions written as another region": (
        {"channel_names": {"0": "T1"}, "labels": _NESTED, "regions_class_order": [1, 3, 2]},
        "writes region 'tumor core' as 3"),
    "not JSON": ("{\"channel_names\": ", "cannot be read as JSON"),
    "a JSON list": ([{"channel_names": {"0": "T1"}}], "holds a JSON list, not an object"),
}


@pytest.mark.parametrize("bad", BAD_DESCRIPTIONS)
def test_a_dataset_json_that_cannot_describe_the_data_is_refused_in_one_line(nnunet_datasets, tmp_path: Path,
                                                                             bad: str,
                                                                             capsys: pytest.CaptureFixture) -> None:
    root = _copy(nnunet_datasets, "t1ce", tmp_path)
    content, why = BAD_DESCRIPTIONS[bad]
    (root / "dataset.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError, match=why):
        assert DataSource(root).description
    assert check_main(["check", str(root)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and re.search(why, err[-1])
