"""A label scheme given by hand takes each case's channels by name, never by position, whatever the source: a scanned
folder and a datalist go through the one ordering (`pipeline.data.layouts.in_scheme_order`, a datalist through
`pipeline.data.datalist.datalist_in_scheme_order`); names that cannot be matched are refused, naming them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.core.config import ALL_FOLDS
from pipeline.data.datalist import write_datalist
from pipeline.data.labels import canonical_channel
from pipeline.data.layouts import DatasetError
from pipeline.data.source import DataSource
from pipeline.data.synthetic import write_dataset
from tests.helpers import LAYOUT_SHAPE, parse_bundle

SOURCES = ("folder", "datalist")  # the dataset folder itself, or a datalist written from it with its own scheme
STAGES = ("training", "inference")  # DataSource reading labels, or the inference bundle's (read_labels false)

#: Label tables that state BraTS roles by name, in three numberings (nnU-Net dataset.json ``labels``).
BRATS_LABELS = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
BRATS2023_LABELS = {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
TASK01_LABELS = {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2 synthetic cases of each layout (read-only: `_nnunet` copies the nnU-Net one before renaming)."""
    base = tmp_path_factory.mktemp("channels")
    for layout in ("brats2021", "brats2023", "msd", "nnunet"):
        write_dataset(base / layout, cases=2, shape=LAYOUT_SHAPE, seed=3, layout=layout)
    return {layout: base / layout for layout in ("brats2021", "brats2023", "msd", "nnunet")}


def _description(folder: Path, channels: list[str], labels: dict) -> Path:
    """``folder/dataset.json``: nnU-Net v2's description with these channel names (in file number order) and plain
    labels."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": labels,
            "file_ending": ".nii.gz", "numTraining": 2}
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder / "dataset.json"


def _nnunet(datasets: dict[str, Path], tmp: Path, channels: list[str], labels: dict) -> Path:
    """A copy of the nnU-Net dataset whose dataset.json names its channels (files _0000 ...) and labels so."""
    root = tmp / "Dataset001"
    shutil.copytree(datasets["nnunet"], root)
    _description(root, channels, labels)
    return root


def _items(root: Path, scheme: str, source: str, stage: str, tmp: Path) -> dict[str, dict]:
    """Each case's item as the stage reads it with ``scheme``: from the folder, or from a datalist written from it
    with its own scheme (``python -m pipeline datalist D --out dl.json``, then ``--datalist dl.json``)."""
    where = {"dataset_dir": str(root), "datalist": ""}
    if source == "datalist":
        write_datalist(root, tmp / "own.json", folds=2)
        where = {"dataset_dir": "", "datalist": str(tmp / "own.json")}
    if stage == "training":
        items = DataSource(where["dataset_dir"], where["datalist"], label_scheme=scheme, folds=2).split(ALL_FOLDS)[0]
    else:
        data = parse_bundle("inference", {**where, "label_scheme": scheme}).get_parsed_content("data")
        items = data.inference_items()
    return {it["case"]: it for it in items}


def _scheme(path: Path) -> str:
    return f"nnunet:{path}"


#: The contrast of each channel of the 4D MSD file (Task01's order).
MSD_FILE = ("FLAIR", "T1", "T1ce", "T2")

#: (dataset, the scheme given, the contrasts each item must then list, in the scheme's order).
Reorder = Callable[[dict[str, Path], Path], tuple[Path, str]]
REORDERED: dict[str, Reorder] = {
    "brats2021_files_flair_first_scheme": lambda ds, tmp: (
        ds["brats2021"], _scheme(_description(tmp / "s", ["FLAIR", "T1", "T1ce", "T2"], BRATS_LABELS))),
    "brats2023_files_scheme_spelled_t2_flair_t1_gd": lambda ds, tmp: (
        ds["brats2023"], _scheme(_description(tmp / "s", ["T2-FLAIR", "T1", "T1-Gd", "T2"], BRATS2023_LABELS))),
    "msd_4d_file_flair_first_scheme": lambda ds, tmp: (
        ds["msd"], _scheme(_description(tmp / "s", ["FLAIR", "T1w", "T1gd", "T2w"], TASK01_LABELS))),
    "nnunet_numbered_spelled_otherwise_same_order": lambda ds, tmp: (
        _nnunet(ds, tmp, ["T1-w", "T1 post", "T2w", "T2 FLAIR"], BRATS2023_LABELS), "brats2023"),
}


def _contrasts(item: dict, root: Path) -> list[str]:
    """The contrast of each channel an item lists: by the 4D file's channel index (MSD), by the BraTS file name, or
    by the nnU-Net file number (its dataset.json's channel_names)."""
    from pipeline.data.layouts.brats import named_as

    if "channel_index" in item:
        return [MSD_FILE[i] for i in item["channel_index"]]
    shown = [named_as(p) for p in item["image"]]
    if all(shown):
        return [s[0] for s in shown if s]
    names = json.loads((root / "dataset.json").read_text())["channel_names"]
    return [canonical_channel(names[str(int(Path(p).name.split("_")[-1][:4]))]) for p in item["image"]]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", REORDERED)
def test_a_given_scheme_takes_each_channel_by_name_from_a_folder_and_a_datalist_alike(
        datasets, tmp_path: Path, case: str, source: str, stage: str) -> None:
    """A datalist read with another scheme kept its own channel order (FLAIR fed where the scheme reads T1); the
    folder was reordered. Both now list each case's channels in the scheme's order, matched by contrast name."""
    root, scheme = REORDERED[case](datasets, tmp_path)
    from pipeline.data.labels import describe

    wanted = [canonical_channel(c) for c in describe(scheme).channels]
    items = _items(root, scheme, source, stage, tmp_path)
    assert len(items) == 2
    assert {cid: _contrasts(it, root) for cid, it in items.items()} == {cid: wanted for cid in items}


#: (dataset channel_names, labels, scheme, what the refusal says): numbered files cannot be reordered.
NUMBERED_OTHER_ORDER = {
    "task01_names_read_as_msd": (["FLAIR", "T1w", "t1gd", "T2w"], TASK01_LABELS, "msd",
                                 r"numbers its channels FLAIR, T1w, t1gd, T2w .* reads T1, T1ce, T2, FLAIR"),
    "t2_flair_first_read_as_brats2023": (["T2-FLAIR", "T1", "T1-Gd", "T2"], BRATS2023_LABELS, "brats2023",
                                         r"numbers its channels T2-FLAIR, T1, T1-Gd, T2 .* reads T1, T1ce, T2, FLAIR"),
}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", NUMBERED_OTHER_ORDER)
def test_numbered_channels_in_another_order_are_refused_from_a_folder_and_a_datalist_alike(
        datasets, tmp_path: Path, case: str, source: str, stage: str) -> None:
    """nnU-Net's Dataset001 (FLAIR first) turned into a datalist and read with --label_scheme msd went in by
    position; the folder was refused. Both are refused now, naming the datalist or the folder."""
    channels, labels, scheme, message = NUMBERED_OTHER_ORDER[case]
    root = _nnunet(datasets, tmp_path, channels, labels)
    where = r"datalist .*own\.json" if source == "datalist" else r"dataset .*Dataset001"
    with pytest.raises(DatasetError, match=rf"{where} {message}.*read it with its own scheme"):
        _items(root, scheme, source, stage, tmp_path)


#: Channel names that spell no contrast: in the dataset's own dataset.json, or in the given scheme's.
UNKNOWN_NAMES = ["FLAIR 3D", "T1", "T1 MPRAGE contrast", "T2"]
UNMATCHED: dict[str, Reorder] = {
    "the_datasets_own_names": lambda ds, tmp: (_nnunet(ds, tmp, UNKNOWN_NAMES, BRATS2023_LABELS), "brats2023"),
    "the_given_schemes_names": lambda ds, tmp: (
        ds["brats2021"], _scheme(_description(tmp / "s", UNKNOWN_NAMES, BRATS_LABELS))),
}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", UNMATCHED)
def test_channel_names_that_spell_no_contrast_are_refused_naming_them_and_the_spellings(
        datasets, tmp_path: Path, case: str, source: str, stage: str) -> None:
    """Unknown names made the order None, and the files were kept in place (T2-FLAIR fed as T1)."""
    root, scheme = UNMATCHED[case](datasets, tmp_path)
    json_file = (root / "dataset.json") if case == "the_datasets_own_names" else (tmp_path / "s" / "dataset.json")
    with pytest.raises(DatasetError) as refused:
        _items(root, scheme, source, stage, tmp_path)
    message = str(refused.value)
    assert f"FLAIR 3D, T1 MPRAGE contrast (channel_names of {json_file})" in message
    assert f"rename them in {json_file} to contrast names" in message
    assert "FLAIR: flair, t2f, t2flair" in message and "T1ce: t1c, t1ce, t1gd, t1post, t1wce" in message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "contrast"), [
    pytest.param("T2-FLAIR", "FLAIR", id="t2_hyphen_flair"),
    pytest.param("T2 FLAIR", "FLAIR", id="t2_space_flair"),
    pytest.param("t2f", "FLAIR", id="brats2023_suffix"),
    pytest.param("T1-Gd", "T1ce", id="t1_hyphen_gd"),
    pytest.param("T1Gd", "T1ce", id="t1gd"),
    pytest.param("T1 post", "T1ce", id="t1_post"),
    pytest.param("T1c", "T1ce", id="t1c"),
    pytest.param("T1wCE", "T1ce", id="rsna_t1wce"),
    pytest.param("T1", "T1", id="t1_stays_t1"),
    pytest.param("t1_n", "T1", id="t1_underscore_n"),
    pytest.param("T2w", "T2", id="t2w"),
    pytest.param("PD", "PD", id="unknown_kept"),
    pytest.param("T2*", "T2*", id="t2_star_is_not_t2"),
])
def test_common_spellings_of_a_contrast_name_it_and_others_stay_as_given(name: str, contrast: str) -> None:
    assert canonical_channel(name) == contrast


@pytest.mark.parametrize("case", [*NUMBERED_OTHER_ORDER, *UNMATCHED])
def test_the_data_check_reads_channels_by_name_as_training_does(datasets, tmp_path: Path, case: str) -> None:
    """``python -m pipeline check D --label_scheme S`` resolved the scheme but kept the files in place, naming channel
    i by the scheme's i-th name: it now goes through the same ordering, and refuses what training refuses."""
    from pipeline.data.check import check_dataset

    if case in NUMBERED_OTHER_ORDER:
        channels, labels, scheme, _ = NUMBERED_OTHER_ORDER[case]
        root = _nnunet(datasets, tmp_path, channels, labels)
    else:
        root, scheme = UNMATCHED[case](datasets, tmp_path)
    with pytest.raises(DatasetError):
        _items(root, scheme, "folder", "training", tmp_path)
    with pytest.raises(DatasetError):
        check_dataset(root, label_scheme=scheme, jobs=1, data=False)


@pytest.mark.parametrize("table", ["no_dataset_json", "no_modality_table"])
def test_an_msd_folder_whose_channel_order_is_assumed_says_so(datasets, tmp_path: Path, table: str) -> None:
    """Without a modality table the 4D images are read in Task01's order by assumption: a warning names it and the
    way to state another order (it was silent)."""
    from pipeline.data.layouts import scan_dataset

    root = tmp_path / "msd"
    shutil.copytree(datasets["msd"], root)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").unlink()
    if table == "no_modality_table":
        meta.pop("modality", None)
        (root / "dataset.json").write_text(json.dumps(meta))
    warnings = [p.message for p in scan_dataset(root).problems if p.severity == "warning"]
    assert len(warnings) == 1 and "read as the Decathlon's Task01 stores them (FLAIR, T1w, T1gd, T2w)" in warnings[0]
    assert '"modality": {"0": "FLAIR"' in warnings[0]
    assert not [p for p in scan_dataset(datasets["msd"]).problems if p.severity == "warning"]
