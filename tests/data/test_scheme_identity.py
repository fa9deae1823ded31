"""A label scheme given by hand is read against what the data says of its own numbering (its file naming, its
datalist's or dataset.json's scheme), label value by label value, on every path that reads a dataset with a scheme
(`pipeline.data.layouts.resolve_scheme`): a contradiction is refused in one line, an agreement is read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main
from pipeline.core.errors import UserError
from pipeline.data.check import check_dataset
from pipeline.data.datalist import build_datalist, write_datalist
from pipeline.data.layouts import discover_cases
from pipeline.data.source import DataSource
from pipeline.data.synthetic import write_dataset
from pipeline.evaluation.regions import evaluate_folders
from tests.helpers import LAYOUT_SHAPE


def _predictions(root: Path, out: Path) -> Path:
    """Each labelled case's reference copied as ``<case>.nii.gz``: a perfect prediction folder."""
    out.mkdir()
    for case in discover_cases(root):
        if case.label:
            shutil.copy(case.label, out / f"{case.case_id}.nii.gz")
    return out


#: Every path that reads a dataset with a given label scheme: ``(root, scheme, tmp) -> None``.
READERS: dict[str, Callable[[Path, str, Path], object]] = {
    "check": lambda root, scheme, tmp: check_dataset(root, label_scheme=scheme, jobs=1),
    "datalist": lambda root, scheme, tmp: build_datalist(root, folds=2, label_scheme=scheme),
    "datalist file": lambda root, scheme, tmp: write_datalist(root, tmp / "dl.json", folds=2, label_scheme=scheme),
    "data source (training and inference)": lambda root, scheme, tmp: DataSource(str(root), label_scheme=scheme).scheme,
    "data source through a datalist": lambda root, scheme, tmp: DataSource(
        None, str(write_datalist(root, tmp / "own.json", folds=2) and tmp / "own.json"), label_scheme=scheme).scheme,
    "evaluation": lambda root, scheme, tmp: evaluate_folders(_predictions(root, tmp / "pred"), root, tmp / "eval",
                                                             scheme=scheme),
}

#: (layout, scheme, a label value the two read otherwise).
CONTRADICTIONS = [
    ("brats2021", "msd", "1 is NCR in the data, ED in scheme msd"),
    ("brats2021", "brats2024", "4 is ET in the data, RC in scheme brats2024"),
    ("brats2023", "brats", "4 is RC in the data, ET in scheme brats"),
    ("brats2023", "msd", "1 is NCR in the data, ED in scheme msd"),
    ("msd", "brats2023", "1 is ED in the data, NCR in scheme brats2023"),
    ("nnunet", "brats2023", "does not describe nnunet data"),  # Dataset137's regions: 1 is ED, 2 NCR
]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("schemes")
    out = {}
    for layout in ("brats2021", "brats2023", "msd", "nnunet"):
        write_dataset(base / layout, cases=2, shape=LAYOUT_SHAPE, seed=3, layout=layout)
        out[layout] = base / layout
    return out


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("layout", "scheme", "why"), CONTRADICTIONS)
def test_a_scheme_that_contradicts_the_data_is_refused_naming_the_label(datasets, tmp_path: Path, reader: str,
                                                                        layout: str, scheme: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        READERS[reader](datasets[layout], scheme, tmp_path)
    assert not (tmp_path / "dl.json").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("reader", READERS)
def test_brats2021_names_relabelled_to_3_read_as_brats2023(datasets, tmp_path: Path, reader: str) -> None:
    """A common conversion (ET 4 -> 3, the names kept): 1 and 2 mean the same in both numberings."""
    root = tmp_path / "relabelled"
    shutil.copytree(datasets["brats2021"], root)
    for case in discover_cases(root):
        seg = nib.load(case.label)
        data = np.asarray(seg.dataobj)
        nib.save(nib.Nifti1Image(np.where(data == 4, 3, data).astype(np.uint8), seg.affine), case.label)
    result = READERS[reader](root, "brats2023", tmp_path)
    if reader == "check":
        assert result.errors == [] and result.label_scheme == "brats2023"
    if reader.startswith("datalist"):
        assert result["label_scheme"] == "brats2023"
    if reader.startswith("data source"):
        assert result == "brats2023"
    if reader == "evaluation":
        assert result["scheme"] == "brats2023" and result["mean_dice"] == pytest.approx(1.0)


@pytest.mark.parametrize("argv", [["check", "{root}", "--label_scheme", "msd"],
                                  ["datalist", "{root}", "--out", "{tmp}/dl.json", "--folds", "2",
                                   "--label_scheme", "msd"],
                                  ["evaluate", "{pred}", "{root}", "--out", "{tmp}/eval", "--scheme", "msd"]],
                         ids=["check", "datalist", "evaluate"])
def test_the_cli_refuses_a_contradicting_scheme_in_one_last_line(datasets, tmp_path: Path, argv: list[str],
                                                                 capsys: pytest.CaptureFixture) -> None:
    root = datasets["brats2023"]
    pred = _predictions(root, tmp_path / "pred")
    assert main([a.format(root=root, tmp=tmp_path, pred=pred) for a in argv]) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    option = "--scheme" if argv[0] == "evaluate" else "--label_scheme"
    assert last.startswith("error: label scheme msd contradicts brats2023 data") and f"({option} auto)" in last


def test_an_msd_dataset_whose_labels_table_numbers_otherwise_is_refused(datasets, tmp_path: Path) -> None:
    """Task01's numbering is decided by its layout; a copy whose table names 1 necrosis is not read as Task01."""
    root = tmp_path / "msd"
    shutil.copytree(datasets["msd"], root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "necrotic tumour core", "2": "peritumoral edema", "3": "enhancing tumour"}
    (root / "dataset.json").write_text(json.dumps(meta))
    report = check_dataset(root, jobs=1)
    assert [p.file for p in report.errors] == [str(root / "dataset.json")]
    assert "1 is NCR in the table, ED in Task01" in report.errors[0].message
    with pytest.raises(UserError, match="labels table numbers its classes otherwise"):
        discover_cases(root)  # every reader's scan of labels (training, the datalists)
    with pytest.raises(UserError, match="labels table numbers its classes otherwise"):
        DataSource(root).scan  # noqa: B018 - training's
    images_only = DataSource(root, labels=False)  # inference reads no label: their table does not stop it
    cases = sorted(it["case"] for it in images_only.inference_items(None, partial=True))
    assert cases and cases == sorted(c.case_id for c in images_only.scan.cases)


def test_an_nnunet_dataset_with_named_brats_labels_reads_as_the_builtin_scheme(tmp_path: Path) -> None:
    """Plain labels whose names state their roles (NCR 1, ED 2, ET 3): brats2023 agrees value by value; msd does
    not."""
    root = tmp_path / "nn"
    write_dataset(root, cases=2, shape=LAYOUT_SHAPE, seed=3, layout="brats2023")
    nn = tmp_path / "Dataset001"
    (nn / "imagesTr").mkdir(parents=True)
    (nn / "labelsTr").mkdir()
    for case in discover_cases(root):
        for i, image in enumerate(case.images):
            shutil.copy(image, nn / "imagesTr" / f"{case.case_id}_{i:04d}.nii.gz")
        shutil.copy(case.label, nn / "labelsTr" / f"{case.case_id}.nii.gz")
    (nn / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
        "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3}, "numTraining": 2, "file_ending": ".nii.gz"}))
    assert DataSource(str(nn), label_scheme="brats2023").scheme == "brats2023"
    with pytest.raises(UserError, match="does not describe nnunet data"):
        assert DataSource(str(nn), label_scheme="msd").scheme


def test_nnunets_brats_regions_state_their_roles_so_the_matching_builtin_scheme_reads_them(datasets) -> None:
    """Dataset137 (whole tumor [1, 2, 3] ⊃ tumor core [2, 3] ⊃ enhancing tumor [3]): 3 ET, 2 NCR, 1 ED, which is
    Task01's numbering, so msd reads it and brats2023 (1 NCR) does not."""
    from pipeline.data.labels import describe, roles_by_value

    own = DataSource(str(datasets["nnunet"])).scheme
    assert roles_by_value(describe(own)) == {3: "ET", 2: "NCR", 1: "ED"}
    assert DataSource(str(datasets["nnunet"]), label_scheme="msd").scheme == "msd"


def test_inference_reads_no_label_so_a_given_scheme_is_the_numbering_it_writes(datasets) -> None:
    """A model of another dataset on these images (a brats2024 model on BraTS 2021 cases) writes its own numbering:
    inference reads no label, so nothing is checked but the name; training on the same data refuses it."""
    from tests.helpers import parse_bundle

    assert DataSource(str(datasets["brats2021"]), label_scheme="brats2024", labels=False).scheme == "brats2024"
    with pytest.raises(UserError, match="4 is ET in the data, RC in scheme brats2024"):
        assert DataSource(str(datasets["brats2021"]), label_scheme="brats2024").scheme
    assert parse_bundle("inference").get_parsed_content("read_labels") is False
    assert parse_bundle("training").get_parsed_content("read_labels") is True
    assert parse_bundle("evaluate").get_parsed_content("read_labels") is True


@pytest.mark.parametrize(("keep", "given", "refused"), [
    ((), "msd", None),                                   # no layout, no scheme: nothing says the numbering
    (("layout",), "msd", "1 is NCR in the data"),        # BraTS 2021 names: ET 4, 1 NCR
    (("label_scheme",), "msd", "1 is NCR in the data"),  # its recorded scheme, brats
    (("layout", "label_scheme"), "brats2023", None),     # 1 and 2 agree
], ids=["neither", "layout only", "scheme only", "both, agreeing"])
def test_a_datalist_is_read_against_what_it_records_and_nothing_it_does_not(datasets, tmp_path: Path,
                                                                             keep: tuple, given: str,
                                                                             refused: str | None) -> None:
    """A hand-written datalist without a layout key was taken for BraTS 2021 names (ET 4), refusing msd."""
    dl = build_datalist(datasets["brats2021"], folds=2)
    for key in ("layout", "label_scheme", "channels"):
        if key not in keep:
            dl.pop(key, None)
    (tmp_path / "dl.json").write_text(json.dumps(dl))
    source = DataSource(None, str(tmp_path / "dl.json"), label_scheme=given)
    if refused:
        with pytest.raises(UserError, match=refused):
            assert source.scheme
    else:
        assert source.scheme == given


def test_a_datalist_whose_own_scheme_contradicts_its_layout_is_refused_when_read(datasets, tmp_path: Path) -> None:
    from pipeline.data.datalist import read_datalist

    dl = build_datalist(datasets["brats2021"], folds=2)
    (tmp_path / "dl.json").write_text(json.dumps({**dl, "label_scheme": "msd"}))
    with pytest.raises(UserError, match=r"datalist .*dl\.json: label scheme msd contradicts .*1 is NCR in the data"):
        read_datalist(str(tmp_path / "dl.json"))


def test_brats_spelled_out_subregion_names_take_their_roles() -> None:
    from pipeline.data.labels import role_of_name

    names = {"Surrounding Non-enhancing FLAIR Hyperintensity": "ED", "Non-Enhancing Tumor Core": "NCR",
             "Enhancing Tissue": "ET", "Resection Cavity": "RC", "peritumoral edema": "ED", "NETC": "NCR"}
    assert {n: role_of_name(n) for n in names} == names


# ---- nnU-Net's ignore label: a meaning like a role -------------------------------------------------------------

#: An nnU-Net dataset.json's plain labels on BraTS 2023's numbering with an ignore label (the highest value, as
#: nnU-Net requires): unannotated voxels, neither trained on nor scored.
IGNORE_LABELS = {"background": 0, "NCR": 1, "ED": 2, "ET": 3, "ignore": 4}


def _relabelled_nnunet(src: Path, root: Path, labels: dict) -> Path:
    """A copy of the nnU-Net dataset ``src`` whose dataset.json has these plain labels (no regions)."""
    shutil.copytree(src, root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = labels
    meta.pop("regions_class_order", None)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _scheme_read(reader: str, result: Any) -> str:
    """The scheme a reader of `READERS` read the data with."""
    if reader == "check":
        return result.label_scheme
    if reader == "evaluation":
        return result["scheme"]
    return result["label_scheme"] if reader.startswith("datalist") else str(result)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("scheme", "why"), [
    pytest.param("brats2024", r"label 4 is ignore in the data \(unannotated voxels, neither trained on nor scored\), "
                              "RC in scheme brats2024", id="ignore_read_as_resection_cavity"),
    pytest.param("brats2023", "label 4 is ignore in the data .*, no label of scheme brats2023", id="ignore_no_label"),
])
def test_an_nnunet_ignore_label_is_refused_by_a_scheme_that_gives_its_value_another_meaning(
        datasets, tmp_path: Path, reader: str, scheme: str, why: str) -> None:
    """Roles 1, 2, 3 agree with brats2024 and the dataset's own description left its ignore value out, so
    brats2024 was accepted and the unannotated voxels (4) trained and scored as resection cavity."""
    root = _relabelled_nnunet(datasets["nnunet"], tmp_path / "Dataset002", IGNORE_LABELS)
    with pytest.raises(UserError, match=rf"label scheme {scheme} contradicts nnunet data .*: {why}; read it with its "
                                        r"own scheme \((--label_scheme|--scheme) auto\)"):
        READERS[reader](root, scheme, tmp_path)
    assert not (tmp_path / "dl.json").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("reader", READERS)
def test_a_scheme_whose_ignore_value_is_a_class_of_the_data_is_refused(datasets, tmp_path: Path, reader: str) -> None:
    """BraTS 2023+ names number 4 the resection cavity; a dataset.json that ignores 4 would leave it unscored."""
    elsewhere = _relabelled_nnunet(datasets["nnunet"], tmp_path / "other", IGNORE_LABELS)
    with pytest.raises(UserError, match="label 4 is RC in the data, ignore in scheme nnunet:"):
        READERS[reader](datasets["brats2023"], f"nnunet:{elsewhere / 'dataset.json'}", tmp_path)


@pytest.mark.parametrize("reader", READERS)
def test_a_scheme_with_the_same_ignore_label_reads_the_dataset(datasets, tmp_path: Path, reader: str) -> None:
    root = _relabelled_nnunet(datasets["nnunet"], tmp_path / "Dataset002", IGNORE_LABELS)
    copy = _relabelled_nnunet(datasets["nnunet"], tmp_path / "copy", IGNORE_LABELS) / "dataset.json"
    assert _scheme_read(reader, READERS[reader](root, f"nnunet:{copy}", tmp_path)) == f"nnunet:{copy}"


def test_the_evaluate_command_refuses_brats2024_on_an_ignore_label_in_one_last_line(
        datasets, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _relabelled_nnunet(datasets["nnunet"], tmp_path / "Dataset002", IGNORE_LABELS)
    pred = _predictions(root, tmp_path / "pred")
    assert main(["evaluate", str(pred), str(root), "--out", str(tmp_path / "eval"), "--scheme", "brats2024"]) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: label scheme brats2024 contradicts nnunet data")
    assert "label 4 is ignore in the data" in last and "(--scheme auto)" in last
