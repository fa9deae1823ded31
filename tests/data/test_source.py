"""Discovery of BraTS 2021 folders and the datalist: folds are disjoint and complete, bad cases are named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.data.datalist import assign_folds, write_datalist
from pipeline.data.labels import CHANNELS
from pipeline.data.layouts import DatasetError, discover_cases
from pipeline.data.source import DataSource


def test_discovery_lists_four_contrasts_in_channel_order_and_the_label(tiny_dataset: Path) -> None:
    cases = discover_cases(tiny_dataset)
    assert [c.case_id for c in cases] == [f"BraTS2021_{i:05d}" for i in range(4)]
    for c in cases:
        suffixes = [Path(p).name.removeprefix(c.case_id + "_").removesuffix(".nii.gz") for p in c.images]
        assert suffixes == ["t1", "t1ce", "t2", "flair"]
        assert Path(c.label).name == f"{c.case_id}_seg.nii.gz"


@pytest.mark.parametrize(("n_cases", "folds"), [pytest.param(16, 5, id="uneven_16_in_5"),
                                                pytest.param(12, 4, id="even_12_in_4"),
                                                pytest.param(3, 3, id="one_case_per_fold")])
def test_folds_are_disjoint_complete_and_balanced(n_cases: int, folds: int) -> None:
    ids = [f"case{i:03d}" for i in range(n_cases)]
    fold_of = assign_folds(ids, folds=folds, seed=0)
    assert sorted(fold_of) == ids  # complete: every case has exactly one fold
    sizes = [sum(1 for f in fold_of.values() if f == k) for k in range(folds)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n_cases


def test_folds_depend_only_on_ids_and_seed() -> None:
    ids = [f"c{i}" for i in range(10)]
    assert assign_folds(ids, 5, 0) == assign_folds(list(reversed(ids)), 5, 0)
    assert assign_folds(ids, 5, 0) != assign_folds(ids, 5, 1)


def test_datalist_records_channels_and_every_case_with_a_fold(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "datalist.json"
    write_datalist(tiny_dataset, out, folds=2, seed=0)
    dl = json.loads(out.read_text())
    assert dl["channels"] == list(CHANNELS) and dl["regions"] == ["TC", "WT", "ET"]
    assert sorted(it["case"] for it in dl["training"]) == [f"BraTS2021_{i:05d}" for i in range(4)]
    assert {it["fold"] for it in dl["training"]} == {0, 1}
    assert dl["test"] == []


def test_training_split_validates_on_the_chosen_fold_only(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "datalist.json"
    write_datalist(tiny_dataset, out, folds=2, seed=0)
    train, val = DataSource(None, str(out)).split(1)
    assert {it["fold"] for it in val} == {1} and {it["fold"] for it in train} == {0}
    assert not {it["case"] for it in train} & {it["case"] for it in val}
    assert [it["case"] for it in DataSource(None, str(out)).inference_items(1)] == [it["case"] for it in val]


def test_a_missing_contrast_is_an_error_naming_the_case_and_file(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    (root / "BraTS2021_00002" / "BraTS2021_00002_flair.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"case BraTS2021_00002: missing BraTS2021_00002_flair\.nii\.gz"):
        discover_cases(root)


def test_cases_without_a_label_go_to_test_not_training(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    (root / "BraTS2021_00003" / "BraTS2021_00003_seg.nii.gz").unlink()
    dl = write_datalist(root, tmp_path / "dl.json", folds=3)
    assert [it["case"] for it in dl["test"]] == ["BraTS2021_00003"]
    assert "label" not in dl["test"][0]
    assert len(dl["training"]) == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "absent", "does not exist", id="missing_folder"),
        pytest.param(lambda p: p, "no BraTS case found", id="empty_folder"),
    ],
)
def test_an_unusable_dataset_folder_says_what_to_do(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(DatasetError, match=message):
        discover_cases(make(tmp_path))


def test_a_fold_outside_the_datalist_is_refused(tiny_dataset: Path) -> None:
    with pytest.raises(DatasetError, match="fold 7 is not in the datalist"):
        DataSource(tiny_dataset, folds=2).split(7)


@pytest.mark.parametrize("with_datalist", [False, True], ids=["folder", "datalist"])
def test_fold_all_trains_on_every_case_and_validates_none(with_datalist: bool, tiny_dataset: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "datalist.json"
    if with_datalist:
        write_datalist(tiny_dataset, out, folds=2, seed=0)
    source = DataSource(None if with_datalist else str(tiny_dataset), str(out) if with_datalist else None, folds=2)
    for split in (source.split("all"), source.checked_split("ALL")):
        train, val = split
        assert sorted(it["case"] for it in train) == [f"BraTS2021_{i:05d}" for i in range(4)] and val == []


#: Every way training and inference read a dataset's cases, under each --data_check.
_READS = {
    "training, strict": lambda root: DataSource(str(root), folds=2, check="strict").checked_split(0),
    "training, skip": lambda root: DataSource(str(root), folds=2, check="skip").checked_split(0),
    "training, off": lambda root: DataSource(str(root), folds=2, check="off").checked_split(0),
    "inference, checked": lambda root: DataSource(str(root), check="skip").checked_inference_items(),
    "inference, off": lambda root: DataSource(str(root), check="off").checked_inference_items(),
    "inference, partial": lambda root: DataSource(str(root)).inference_items(partial=True),
}


@pytest.mark.parametrize("read", _READS)
@pytest.mark.parametrize("table", [{"0": "A", "1": "B", "2": "C", "3": "D"}, {"0": "FLAIR", "1": "T1w", "2": "T2w"}],
                         ids=["unknown names", "three contrasts"])
def test_an_error_of_the_whole_dataset_stops_every_read(layout_datasets, tmp_path: Path, read: str,
                                                        table: dict) -> None:
    """An MSD modality table that cannot be read left no case out (its problem names none), so inference and
    ``--data_check skip`` went on with Task01's channel order, a guess; it is refused whatever the check."""
    root = tmp_path / "msd"
    shutil.copytree(layout_datasets["msd"], root)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "modality": table}))
    with pytest.raises(DatasetError, match="modality table cannot be read"):
        _READS[read](root)
