"""BraTS-PED: the ``ped`` scheme (2024+: 1 ET, 2 NET, 3 CC, 4 ED) and the case ids whose names do not tell it from
BraTS-PED 2023's GLI numbering. ``auto`` is refused on them on every path (the check, the datalist, training,
inference, both evaluation protocols), ``ped`` reads them with the official config's regions, and a scheme given is
read against both readings."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.core.errors import UserError
from pipeline.core.provenance import Provenance, input_identity
from pipeline.data.check import check_dataset, scheme_hint
from pipeline.data.datalist import build_datalist, write_datalist
from pipeline.data.labels import (
    NUMBERING,
    describe,
    from_dataset_json,
    labels_to_regions,
    meanings,
    regions_to_labels,
    relabel,
    role_conflicts,
    role_of_name,
    roles_by_value,
)
from pipeline.data.layouts import detect_layout, discover_cases, resolve_scheme
from pipeline.data.source import DataSource
from pipeline.data.synthetic import write_dataset
from pipeline.evaluation.reference import numbering_differences, read_reference
from pipeline.evaluation.regions import evaluate_folders
from tests.helpers import LAYOUT_SHAPE, as_brats_ped, parse_bundle

FIRST = "BraTS-PED-00000-000"  # the first case of every BraTS-PED fixture


@pytest.fixture(scope="module")
def ped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 synthetic cases (32 x 32 x 24, seed 5) as BraTS-PED cases: ``2024`` in the pediatric numbering, ``2023`` in
    GLI's, ``mixed`` with a BraTS-GLI case beside them (GLI numbering); ``gli`` the BraTS 2023 original. Read-only."""
    base = tmp_path_factory.mktemp("ped")
    write_dataset(base / "gli", cases=3, shape=LAYOUT_SHAPE, seed=5, layout="brats2023")
    out = {"gli": base / "gli", "2024": as_brats_ped(base / "gli", base / "2024", "ped"),
           "2023": as_brats_ped(base / "gli", base / "2023", "brats2023")}
    mixed = as_brats_ped(base / "gli", base / "mixed", "brats2023")
    shutil.rmtree(mixed / "BraTS-PED-00002-000")
    shutil.copytree(base / "gli" / "BraTS-GLI-00002-000", mixed / "BraTS-GLI-00002-000")
    out["mixed"] = mixed
    return out


def _predictions(root: Path, pred: Path, numbering: str | None = None, scheme: str | None = None) -> Path:
    """``pred/<case>.nii.gz``: each reference label of ``root`` (a perfect segmentation), renumbered from ``ped``
    into ``numbering`` when given; ``scheme``: the numbering provenance.json records (inference's record)."""
    pred.mkdir(parents=True)
    record = Provenance(pred)
    for case in discover_cases(root):
        label = nib.load(case.label)
        data = np.asarray(label.dataobj)
        if numbering:  # (no CC in these labels: brats2023 has no value for it)
            roles = {v: r for v, r in roles_by_value(describe("ped")).items() if r != "CC"}
            data = relabel(data, roles, numbering)
        nib.save(nib.Nifti1Image(data.astype(np.uint8), label.affine), pred / f"{case.case_id}.nii.gz")
        if scheme:
            record.record(case.case_id, model="m1", file=f"{case.case_id}.nii.gz",
                          inputs=input_identity(case.images), scheme=scheme)
    return pred


def _cause(err: BaseException) -> str:
    """The message of the `UserError` ``err`` is or chains (a bundle wraps it); anything else is raised."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        raise err
    return str(cause)


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """'' when the command went through (exit 0), else its refusal line (exit 2) without ``error: ``."""
    capsys.readouterr()
    code = pipeline_main(argv)
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), err
    return "" if code == 0 else err.splitlines()[-1].removeprefix("error: ")


def _read(path: str, root: Path, tmp: Path, scheme: str, capsys: pytest.CaptureFixture) -> str:
    """Read (or score) the dataset ``root`` through ``path`` with ``scheme`` (``auto`` or a name): '' when it went
    through, else its refusal (one line). The one-case paths read `FIRST` (else the first case folder)."""
    tmp.mkdir(parents=True, exist_ok=True)
    first = root / FIRST if (root / FIRST).is_dir() else sorted(p for p in root.iterdir() if p.is_dir())[0]
    try:
        if path in ("check", "check_one_case"):
            errors = check_dataset(root if path == "check" else first, label_scheme=scheme).errors
            return errors[0].message if errors else ""
        elif path == "check_cli":
            return _cli(["check", str(root), "--jobs", "1", "--label_scheme", scheme], capsys)
        elif path == "datalist":
            build_datalist(root, folds=2, label_scheme=scheme)
        elif path == "datalist_cli":
            argv = ["datalist", str(root), "--out", str(tmp / "dl.json"), "--folds", "2", "--label_scheme", scheme]
            return _cli(argv, capsys)
        elif path == "datalist_without_scheme":  # a datalist that records no label_scheme: its names alone
            dl = build_datalist(root, folds=2, label_scheme="brats2023")
            del dl["label_scheme"]
            (tmp / "dl.json").write_text(json.dumps(dl))
            _ = DataSource(None, str(tmp / "dl.json"), scheme, folds=2).scheme  # what the bundle reads first
        elif path == "training":
            _ = DataSource(str(root), None, scheme, folds=2).scheme
        elif path == "training_bundle":
            parse_bundle("training", {"device": "cpu", "dataset_dir": str(root), "label_scheme": scheme,
                                      "folds": 2}).get_parsed_content("scheme")
        elif path == "inference":
            _ = DataSource(str(root), None, scheme, labels=False).scheme
        elif path == "inference_one_case":
            _ = DataSource(str(first), None, scheme, labels=False).scheme
        elif path == "inference_bundle":
            parse_bundle("inference", {"device": "cpu", "dataset_dir": str(root), "label_scheme": scheme,
                                       "output_dir": str(tmp / "seg")}).get_parsed_content("scheme")
        elif path in ("evaluate_legacy", "evaluate_official"):
            pred = tmp / "pred" if (tmp / "pred").is_dir() else _predictions(root, tmp / "pred")
            if path == "evaluate_official":
                pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
                from pipeline.evaluation.official import evaluate_official

                evaluate_official(pred, root, tmp / "eval", scheme=scheme)
            else:
                evaluate_folders(pred, root, tmp / "eval", scheme=scheme)
        elif path == "evaluate_cli":
            pred = tmp / "pred" if (tmp / "pred").is_dir() else _predictions(root, tmp / "pred")
            argv = ["evaluate", str(pred), str(root), "--out", str(tmp / "eval"), "--scheme", scheme, "--no-pictures"]
            return _cli(argv, capsys)
        else:
            raise KeyError(path)
    except Exception as err:  # noqa: BLE001 - a bundle wraps the refusal: the UserError it chains is read
        message = _cause(err)
        assert "\n" not in message, message  # one line
        return message
    return ""


#: Every path that reads a dataset's labels or chooses the numbering it writes.
PATHS = [pytest.param(p, id=p) for p in (
    "check", "check_cli", "check_one_case", "datalist", "datalist_cli", "datalist_without_scheme", "training",
    "training_bundle", "inference", "inference_one_case", "inference_bundle", "evaluate_legacy", "evaluate_official",
    "evaluate_cli")]


# ---- auto never guesses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("edition", ["2024", "2023", "mixed"])
def test_auto_on_brats_ped_cases_is_refused_naming_the_case_and_both_readings(
        path: str, edition: str, ped: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    option = "--scheme" if path.startswith("evaluate") else "--label_scheme"
    refusal = _read(path, ped[edition], tmp_path, "auto", capsys)
    assert f"case {FIRST}: the names of BraTS-PED-... cases do not tell their label numbering, so {option} auto " \
           "cannot choose one" in refusal, refusal
    assert refusal.endswith(f"pass {option} brats2023 (BraTS-PED 2023, GLI numbering) or {option} ped (BraTS-PED "
                            "2024+: 1 ET, 2 NET, 3 CC, 4 ED)"), refusal
    assert not (tmp_path / "dl.json").exists() or path == "datalist_without_scheme"
    assert not (tmp_path / "eval" / "summary.json").exists() and not (tmp_path / "eval" / "official.csv").exists()


@pytest.mark.parametrize("path", PATHS)
def test_other_brats_2023_challenges_are_read_with_auto_as_before(path: str, ped: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    for prefix in ("BraTS-GLI-", "BraTS-MEN-", "BraTS-MET-", "BraTS-SSA-"):
        if path.startswith("evaluate") and prefix != "BraTS-GLI-":
            continue  # one challenge is enough for the scorers (official: each has its own config)
        root = (ped["gli"] if prefix == "BraTS-GLI-"
                else as_brats_ped(ped["gli"], tmp_path / prefix, "brats2023", prefix))
        assert _read(path, root, tmp_path / f"{prefix}tmp", "auto", capsys) == "", (prefix, path)
        assert detect_layout(root).label_scheme == "brats2023" and not detect_layout(root).untold


def test_a_datalist_records_the_scheme_chosen_and_is_then_read_with_it(ped: dict[str, Path], tmp_path: Path) -> None:
    write_datalist(ped["2024"], tmp_path / "dl.json", folds=2, label_scheme="ped")
    recorded = json.loads((tmp_path / "dl.json").read_text())
    assert (recorded["layout"], recorded["label_scheme"], recorded["regions"]) == ("brats2023", "ped", ["TC", "WT",
                                                                                                        "ET"])
    source = DataSource(None, str(tmp_path / "dl.json"), "auto", folds=2)
    assert source.scheme == "ped" and describe(source.scheme).name == "ped"
    assert DataSource(None, str(tmp_path / "dl.json"), "ped", folds=2).scheme == "ped"


def test_the_layout_line_says_the_names_do_not_tell_the_scheme(ped: dict[str, Path]) -> None:
    info = detect_layout(ped["2024"])
    assert (info.untold, info.told, info.described) == (FIRST, False, False)
    assert f"label scheme not told by the names (case {FIRST})" in str(info)
    mixed = detect_layout(ped["mixed"])
    assert (mixed.untold, mixed.told, mixed.described) == (FIRST, True, False)  # auto refused: the PED cases


# ---- a scheme given --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_brats_ped_2024_cases_read_with_ped_pass_every_path(path: str, ped: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    assert _read(path, ped["2024"], tmp_path, "ped", capsys) == ""
    if path in ("evaluate_legacy", "evaluate_cli"):
        summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
        assert summary["scheme"] == "ped" and summary["mean_dice"] == 1.0


@pytest.mark.parametrize("path", ["check", "datalist", "training", "evaluate_legacy"])
def test_brats_ped_2023_cases_read_with_brats2023_pass(path: str, ped: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    if path == "evaluate_legacy":
        tmp_path.joinpath("pred").mkdir()
        for case in discover_cases(ped["2023"]):
            shutil.copy(case.label, tmp_path / "pred" / f"{case.case_id}.nii.gz")
    assert _read(path, ped["2023"], tmp_path, "brats2023", capsys) == ""


@pytest.mark.parametrize("path", ["check", "datalist", "training", "evaluate_legacy", "evaluate_cli"])
@pytest.mark.parametrize(("data", "scheme", "conflict"), [
    pytest.param("brats2021", "ped", "label 1 is NCR in the data, ET in scheme ped", id="ped_on_brats2021_names"),
    pytest.param("brats2023", "ped", "label 1 is NCR in the data, ET in scheme ped", id="ped_on_brats_gli_names"),
    pytest.param("mixed", "ped", "label 1 is NCR in the data, ET in scheme ped", id="ped_beside_a_gli_case"),
    pytest.param("2024", "msd", "agrees with neither (brats2023 (BraTS-PED 2023, GLI numbering): 1 is NCR in "
                 "brats2023, ED in scheme msd", id="msd_on_ped_names_fits_neither_reading"),
    # a value a reading lacks is no agreement: brats2023 has no 4, so brats's ET = 4 and brats2024's RC = 4 fit
    # neither reading (they were accepted, reading 2024 files' oedema as ET or cavity)
    pytest.param("2024", "brats", "4 is ET in scheme brats, no label of brats2023", id="brats_on_ped_names"),
    pytest.param("2024", "brats2024", "4 is RC in scheme brats2024, no label of brats2023",
                 id="brats2024_on_ped_names"),
])
def test_a_scheme_that_contradicts_the_names_is_refused(path: str, data: str, scheme: str, conflict: str,
                                                        ped: dict[str, Path], layout_datasets, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    root = layout_datasets[data] if data in layout_datasets else ped[data]
    if path.startswith("evaluate"):
        tmp_path.joinpath("pred").mkdir()
        for case in discover_cases(root):
            shutil.copy(case.label, tmp_path / "pred" / f"{case.case_id}.nii.gz")
    refusal = _read(path, root, tmp_path, scheme, capsys)
    assert f"label scheme {scheme} contradicts" in refusal and conflict in refusal, refusal


def test_ped_on_brats_2021_names_is_refused_value_by_value(layout_datasets) -> None:
    with pytest.raises(UserError, match="1 is NCR in the data, ET in scheme ped; 2 is ED in the data, NCR in scheme "
                                        "ped; 4 is ET in the data, ED in scheme ped"):
        resolve_scheme(detect_layout(layout_datasets["brats2021"]), "ped")


def test_ped_and_brats2023_give_the_values_other_meanings() -> None:
    """The meanings resolve_scheme and the written-scheme check compare: CC has one, so value 3 differs too."""
    conflicts = role_conflicts(meanings(describe("ped")), meanings(describe("brats2023")), ("ped", "brats2023"))
    assert conflicts == ["1 is ET in ped, NCR in brats2023", "2 is NCR in ped, ED in brats2023",
                         "3 is CC in ped, ET in brats2023"]
    assert numbering_differences("ped", "brats2023") and numbering_differences("brats2023", "ped")
    assert numbering_differences("ped", "ped") == []


def test_a_dataset_json_naming_the_cystic_component_gives_it_its_role() -> None:
    assert role_of_name("Cystic Component") == role_of_name("CC") == "CC"
    desc = from_dataset_json({"channel_names": {"0": "T1"},
                              "labels": {"background": 0, "ET": 1, "NET": 2, "cystic component": 3, "ED": 4}})
    assert roles_by_value(desc) == {v: r for r, v in NUMBERING["ped"].items()}


# ---- the check's hint ------------------------------------------------------------------------------------------


def test_the_check_of_2024_files_as_brats2023_suggests_ped_never_brats2024(ped: dict[str, Path]) -> None:
    report = check_dataset(ped["2024"], label_scheme="brats2023")
    assert report.errors and all(p.case.startswith("BraTS-PED-") for p in report.errors)
    for p in report.errors:
        assert "contains label 4; expected {0, 1, 2, 3} for label scheme 'brats2023'" in p.message
        assert "set --label_scheme ped" in p.message and "brats2024" not in p.message, p.message


@pytest.mark.parametrize(("values", "scheme", "case", "suggested"), [
    pytest.param({0, 1, 2, 3, 4}, "brats2023", FIRST, ["ped"], id="ped_case_with_4_under_brats2023"),
    pytest.param({0, 1, 2, 3, 4}, "brats2023", "BraTS-GLI-00000-000", ["brats2024"], id="gli_case_with_4"),
    pytest.param({0, 1, 2, 3}, "brats", FIRST, ["brats2023", "ped"], id="ped_case_either_reading"),
    pytest.param({0, 1, 2, 3, 5}, "ped", FIRST, [], id="ped_case_nothing_fits"),
])
def test_a_wrong_label_value_of_a_ped_case_suggests_its_readings(values: set[int], scheme: str, case: str,
                                                                 suggested: list[str]) -> None:
    hint = scheme_hint(values, scheme, "brats2023", case=case)
    assert sorted(set(re.findall(r"--label_scheme (\w+)", hint))) == sorted(suggested), hint


# ---- the regions -------------------------------------------------------------------------------------------------


def _official_ped_groups() -> dict[str, list[int]]:
    """The label groups of the official package's ``config_ped.yaml`` (``{"et": [1], ..., "wt": [1, 2, 3, 4]}``),
    read from the file itself (its YAML tags need panoptica's loader: the groups are read as text)."""
    brats_evaluation = pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
    text = Path(brats_evaluation.config_path("ped")).read_text()
    found = re.findall(r"(\w+): !Label(?:Merge)?Group\s+single_instance: \w+\s+value_labels: \[([\d, ]+)\]", text)
    return {name: [int(v) for v in values.split(",")] for name, values in found}


#: The official definition (BraTS-PED 2024, config_ped.yaml): ET = 1, TC = 1 + 2 + 3, WT = 1 + 2 + 3 + 4.
PED_REGIONS = {"et": [1], "tc": [1, 2, 3], "wt": [1, 2, 3, 4]}


@pytest.mark.parametrize("source", ["stated", "installed_config_ped_yaml"])
def test_ped_regions_are_the_official_definition(source: str) -> None:
    groups = PED_REGIONS if source == "stated" else _official_ped_groups()
    label = np.random.default_rng(3).choice([0, 1, 2, 3, 4], size=(12, 10, 8)).astype(np.uint8)
    regions = labels_to_regions(label, "ped")
    order = list(describe("ped").regions)
    for name in ("et", "tc", "wt"):
        expected = np.zeros(label.shape, bool)
        for value in groups[name]:
            expected |= label == value
        np.testing.assert_array_equal(regions[order.index(name.upper())], expected, err_msg=name)


def test_the_ped_challenges_numbering_is_the_official_configs() -> None:
    groups = _official_ped_groups()
    single = {name: values[0] for name, values in groups.items() if len(values) == 1}
    assert single == {"et": 1, "netc": 2, "cc": 3, "ed": 4}
    role = {"et": "ET", "netc": "NCR", "cc": "CC", "ed": "ED"}
    assert NUMBERING["challenge ped"] == {role[name]: v for name, v in single.items()} == NUMBERING["ped"]


def test_the_official_label_map_of_ped_data_is_the_identity_and_of_ped_2023_the_conversion() -> None:
    pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
    from pipeline.evaluation.official import CHALLENGE_NUMBERING, official_label_map, resolve_challenge

    assert resolve_challenge(None, "ped", ["BraTS2021_00000"]) == "ped"  # ids that name none: the scheme's
    assert resolve_challenge(None, "ped", [FIRST]) == resolve_challenge(None, "brats2023", [FIRST]) == "ped"
    assert official_label_map("ped") == official_label_map("ped", "ped") == {1: 1, 2: 2, 3: 3, 4: 4}
    assert official_label_map("brats2023", "ped") == {1: 2, 2: 4, 3: 1}  # BraTS-PED 2023, harmonised with GLI
    assert CHALLENGE_NUMBERING["ped"] == NUMBERING["ped"]


def test_a_ped_model_writes_the_cyst_as_net_and_scores_full_tc_and_wt(ped: dict[str, Path], tmp_path: Path) -> None:
    """Region training cannot tell CC from NET: written back, a cyst is 2, and ET, TC and WT score as if it were 3."""
    ref_root = tmp_path / "ref"
    shutil.copytree(ped["2024"], ref_root)
    pred = tmp_path / "pred"
    pred.mkdir()
    cyst = 0
    for case in discover_cases(ref_root):
        label = nib.load(case.label)
        data = np.asarray(label.dataobj).copy()
        data[(data == 2) & (np.indices(data.shape)[0] % 2 == 0)] = 3  # half the core a cystic component
        cyst += int((data == 3).sum())
        nib.save(nib.Nifti1Image(data, label.affine), case.label)
        written = regions_to_labels(labels_to_regions(data, "ped"), "ped")  # as inference writes a perfect model's
        np.testing.assert_array_equal(written, np.where(data == 3, 2, data))
        nib.save(nib.Nifti1Image(written, label.affine), pred / f"{case.case_id}.nii.gz")
    assert cyst > 0
    summary = evaluate_folders(pred, ref_root, tmp_path / "eval", scheme="ped")
    assert summary["mean_dice"] == 1.0 and set(summary["regions"]) == {"ET", "TC", "WT"}


# ---- the numbering segmentations were written in --------------------------------------------------------------


@pytest.mark.parametrize(("written", "scored"), [
    pytest.param("ped", "brats2023", id="ped_written_scored_as_brats2023"),
    pytest.param("brats2023", "ped", id="brats2023_written_scored_as_ped"),
])
def test_segmentations_written_in_one_reading_are_not_scored_in_the_other(
        written: str, scored: str, ped: dict[str, Path], tmp_path: Path) -> None:
    pred = _predictions(ped["2024"], tmp_path / "seg", written, scheme=written)
    with pytest.raises(UserError, match=f"written in label scheme {written}, but this evaluation scores them in "
                                        f"scheme {scored}") as err:
        evaluate_folders(pred, ped["2024"], tmp_path / "eval", scheme=scored)
    assert "NCR is" in str(err.value) and not (tmp_path / "eval" / "summary.json").exists()


def test_segmentations_written_in_ped_are_scored_in_ped(ped: dict[str, Path], tmp_path: Path) -> None:
    pred = _predictions(ped["2024"], tmp_path / "seg", "ped", scheme="ped")
    assert evaluate_folders(pred, ped["2024"], tmp_path / "eval", scheme="ped")["mean_dice"] == 1.0


def test_official_scores_ped_data_in_ped_as_the_harmonised_2023_files_in_brats2023(ped: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    """The same segmentations, numbered natively (scheme ped: as is) and as BraTS-PED 2023 (brats2023: converted),
    give one official table under the ped config."""
    pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
    from pipeline.evaluation.official import evaluate_official

    tables: dict[str, str] = {}
    for edition, scheme in (("2024", "ped"), ("2023", "brats2023")):
        pred = tmp_path / f"pred_{edition}"
        pred.mkdir()
        for i, case in enumerate(discover_cases(ped[edition])):
            label = nib.load(case.label)
            data = np.roll(np.asarray(label.dataobj), i, axis=0)  # imperfect, differently per case
            nib.save(nib.Nifti1Image(data, label.affine), pred / f"{case.case_id}.nii.gz")
        summary = evaluate_official(pred, ped[edition], tmp_path / f"eval_{edition}", scheme=scheme)
        assert summary["challenge"] == "ped" and summary["scheme"] == scheme
        tables[edition] = (tmp_path / f"eval_{edition}" / "official.csv").read_text()
    assert tables["2024"] == tables["2023"]


def test_read_reference_of_ped_data_keeps_no_guessed_scheme(ped: dict[str, Path]) -> None:
    reference = read_reference(ped["2024"])
    assert reference.own_scheme is None and reference.layout.untold == FIRST


def test_inference_writes_what_a_scheme_given_says(ped: dict[str, Path]) -> None:
    """Inference reads no label: a scheme given is the numbering written; auto has none to write."""
    assert DataSource(str(ped["2024"]), None, "ped", labels=False).scheme == "ped"
    assert DataSource(str(ped["2024"]), None, "brats2023", labels=False).scheme == "brats2023"



@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_datalist_of_ped_cases_without_a_scheme_is_scored_with_the_scheme_given(
        command: str, ped: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Reading the datalist resolved ``auto`` before ``--scheme`` was looked at: a reference datalist of BraTS-PED
    cases (a model-zoo list records no scheme) was refused with advice to pass a flag evaluate does not have."""
    dl = build_datalist(ped["2024"], folds=2, label_scheme="ped")
    del dl["label_scheme"]
    (tmp_path / "dl.json").write_text(json.dumps(dl))
    preds = [_predictions(ped["2024"], tmp_path / f"pred{i}") for i in (0, 1)]
    argv = (["evaluate", str(preds[0]), str(tmp_path / "dl.json"), "--out", str(tmp_path / "eval"), "--no-pictures"]
            if command == "evaluate" else ["compare", str(tmp_path / "dl.json"), *map(str, preds), "--out",
                                           str(tmp_path / "cmp")])
    refusal = _cli([*argv, "--scheme", "auto"], capsys)
    assert "--scheme auto cannot choose one" in refusal and "pass --scheme brats2023" in refusal, refusal
    assert _cli([*argv, "--scheme", "ped"], capsys) == ""
