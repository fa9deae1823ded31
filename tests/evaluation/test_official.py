"""The official BraTS evaluation (``pipeline.evaluation.official``) against the package ``brats-evaluation`` itself.

The reference numbers come from the package's own entry points chained as its command line chains them
(``brats-evaluate``: ``evaluate_single_exam`` per case with the bundled config, ``{"metrics", "missings"}`` JSON;
``brats-parse-metrics``: ``parse_seg_results`` / ``parse_mets_results``), fed files in the package's numbering
(ET 3). Ours must give identical numbers in every column, NaN where NaN. Then the label numbering, the refusals,
and the measured differences from the legacy protocol that ``docs/metrics.md`` quotes.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial.distance import cdist

pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
import brats_evaluation  # noqa: E402
from panoptica import Panoptica_Evaluator  # noqa: E402

from pipeline.core.errors import UserError  # noqa: E402
from pipeline.evaluation.evaluate import evaluate  # noqa: E402
from pipeline.evaluation.official import (  # noqa: E402
    config_groups,
    evaluate_official,
    format_official_table,
    official_label_map,
    unnumbered_groups,
)
from pipeline.evaluation.regions import evaluate_folders  # noqa: E402

#: the package's global NSD warns about its default threshold; pandas warns computing the std of inf values
pytestmark = [pytest.mark.filterwarnings("ignore:The threshold is set to 0.5:UserWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")]

SHAPE = (40, 40, 30)
ISO = np.diag([1.0, 1.0, 1.0, 1.0])
ANISO = np.diag([1.0, 1.5, 3.0, 1.0])
NCR, ED, ET, RC = 1, 2, 3, 4  # the package's glioma numbering


# ---------------------------------------------------------------------------------------------------------------
# Synthetic label maps (ET 3 numbering)
# ---------------------------------------------------------------------------------------------------------------


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def tumour(centre: tuple[float, float, float], radius: float, out: np.ndarray | None = None) -> np.ndarray:
    """A blob: ED shell, ET rim, NCR core, drawn into ``out`` (a new map if None)."""
    lab = np.zeros(SHAPE, np.uint8) if out is None else out
    lab[_ball(centre, radius)] = ED
    lab[_ball(centre, 0.6 * radius)] = ET
    lab[_ball(centre, 0.3 * radius)] = NCR
    return lab


def _pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, reference)`` of one named situation."""
    empty = np.zeros(SHAPE, np.uint8)
    if name == "split":  # one reference lesion, predicted as two pieces
        ref = tumour((20, 20, 15), 7)
        pred = ref.copy()
        pred[:, 19:22, :] = 0
        return pred, ref
    if name == "merged":  # two reference lesions, predicted as one bridged lesion
        ref = tumour((12, 20, 15), 5, tumour((28, 20, 15), 5))
        pred = ref.copy()
        pred[12:29, 18:23, 13:18] = np.maximum(pred[12:29, 18:23, 13:18], ED)
        return pred, ref
    if name == "missed_lesion":
        ref = tumour((10, 10, 10), 5, tumour((29, 29, 19), 6))
        return tumour((10, 11, 10), 5), ref
    if name == "false_lesion":
        ref = tumour((12, 12, 12), 6)
        return tumour((30, 30, 20), 4, tumour((12, 13, 12), 6)), ref
    if name == "both_empty":
        return empty, empty.copy()
    if name == "prediction_empty":
        return empty, tumour((20, 20, 15), 6)
    if name == "reference_empty":
        return tumour((20, 20, 15), 6), empty
    if name == "disjoint":  # both non-empty, no voxel in common
        return tumour((9, 9, 8), 4), tumour((30, 30, 21), 4)
    if name == "shifted":  # one lesion, shifted along x only (the anisotropic-spacing case)
        ref = tumour((18, 20, 15), 6)
        return np.roll(ref, 3, axis=0), ref
    raise KeyError(name)


SITUATIONS = ["split", "merged", "missed_lesion", "false_lesion", "both_empty", "prediction_empty",
              "reference_empty", "disjoint", "shifted"]


def _save(path: Path, data: np.ndarray, affine: np.ndarray = ISO) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return path


def _write_cases(root: Path, cases: dict[str, tuple[np.ndarray | None, np.ndarray]], affine: np.ndarray = ISO,
                 relabel: dict[int, int] | None = None) -> tuple[Path, Path]:
    """``root/pred/<case>.nii.gz`` (None: no file) and ``root/ref/<case>.nii.gz``, relabelled by ``relabel``."""
    lut = np.arange(256, dtype=np.uint8)
    for ours, theirs in (relabel or {}).items():
        lut[ours] = theirs
    for cid, (pred, ref) in cases.items():
        if pred is not None:
            _save(root / "pred" / f"{cid}.nii.gz", lut[pred], affine)
        _save(root / "ref" / f"{cid}.nii.gz", lut[ref], affine)
    (root / "pred").mkdir(parents=True, exist_ok=True)
    return root / "pred", root / "ref"


# ---------------------------------------------------------------------------------------------------------------
# The package, chained as its CLI chains it
# ---------------------------------------------------------------------------------------------------------------


def _numpy_item(x: object) -> object:
    """panoptica's voxel counts are NumPy integers under NumPy >= 2.3; its CLI's json.dump would fail on them."""
    return x.item()  # type: ignore[attr-defined]


def _spacing_reversed(src: Path, dst: Path) -> Path:
    """``src`` with its voxel sizes stated in reverse order, as the package pairs them with SimpleITK's array."""
    img = nib.load(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([*reversed(img.header.get_zooms()[:3]), 1.0])), dst)
    return dst


def package_tables(pred_dir: Path, ref_dir: Path, tmp: Path, config: str = "gli") -> dict[str, str]:
    """The package's own tables for ``ref_dir/<case>.nii.gz`` vs ``pred_dir/<case>.nii.gz`` (ET 3 numbering):
    ``brats-evaluate`` (one ``evaluate_single_exam`` per sorted reference file, ``missings`` for those without
    prediction, the JSON) then ``brats-parse-metrics seg`` (and ``mets`` with its CLI defaults). Each file is given
    with its voxel sizes in reverse order, so that the package pairs each array axis with its own spacing."""
    given = {"pkg_pred": pred_dir, "pkg_ref": ref_dir}
    for name, folder in given.items():
        for f in sorted(folder.glob("*.nii.gz")):
            _spacing_reversed(f, tmp / name / f.name)
        (tmp / name).mkdir(exist_ok=True)
    return _package_tables(tmp / "pkg_pred", tmp / "pkg_ref", tmp, config)


def _package_tables(pred_dir: Path, ref_dir: Path, tmp: Path, config: str) -> dict[str, str]:
    evaluator = Panoptica_Evaluator.load_from_config(str(brats_evaluation.config_path(config)))
    results: dict[str, list] = {"metrics": [], "missings": []}
    for ref in sorted(ref_dir.glob("*.nii.gz")):
        cid = ref.name[: -len(".nii.gz")]
        pred = pred_dir / ref.name
        if not pred.exists():
            results["missings"].append(cid)
            continue
        results["metrics"].append(brats_evaluation.evaluate_single_exam(
            prediction_filepath=str(pred), reference_filepath=str(ref), subject_identifier=cid, evaluator=evaluator))
    raw = tmp / "package.json"
    with open(raw, "w") as f:
        json.dump(results, f, indent=4, default=_numpy_item)
    brats_evaluation.parse_seg_results(str(raw), str(tmp / "package.csv"))
    tables = {"official.csv": (tmp / "package.csv").read_text()}
    if config == "mets":
        brats_evaluation.parse_mets_results(str(raw), 20.0, 0.1, str(tmp / "package_mets.csv"))
        tables["official_mets.csv"] = (tmp / "package_mets.csv").read_text()
    return tables


def _cells(text: str) -> tuple[list[str], list[list[object]]]:
    rows = list(csv.reader(text.splitlines()))
    def value(cell: str) -> object:
        try:
            return float(cell) if cell else math.nan
        except ValueError:
            return cell
    return rows[0], [[value(c) for c in row] for row in rows[1:]]


def assert_same_table(ours: str, theirs: str) -> None:
    """Same columns, same rows, every number identical (NaN where NaN, inf where inf)."""
    our_cols, our_rows = _cells(ours)
    their_cols, their_rows = _cells(theirs)
    assert our_cols == their_cols
    assert len(our_rows) == len(their_rows)
    for mine, package in zip(our_rows, their_rows, strict=True):
        for col, a, b in zip(our_cols, mine, package, strict=True):
            same = (a == b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
            assert same, f"{mine[0]} {col}: ours {a!r}, package {b!r}"


def _column(text: str, subject: str, column: str) -> float:
    for row in csv.DictReader(text.splitlines()):
        if row["subject_id"] == subject:
            return float(row[column]) if row[column] else math.nan
    raise KeyError(subject)


# ---------------------------------------------------------------------------------------------------------------
# Parity with the package
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("situation", [pytest.param(s, id=s) for s in SITUATIONS])
@pytest.mark.parametrize("affine", [pytest.param(ISO, id="1mm"), pytest.param(ANISO, id="1x1.5x3mm")])
def test_every_column_equals_the_packages_own_chain(tmp_path: Path, situation: str, affine: np.ndarray) -> None:
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {f"case_{situation}": _pair(situation)}, affine)
    ours = evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2023")
    package = package_tables(pred_dir, ref_dir, tmp_path)
    assert_same_table((tmp_path / "out" / "official.csv").read_text(), package["official.csv"])
    assert ours["challenge"] == "gli" and ours["cases"] == 1


def test_on_anisotropic_voxels_a_lesions_hd95_is_the_legacy_one_in_mm(tmp_path: Path) -> None:
    ref = tumour((20, 20, 15), 5)
    pred = np.roll(ref, 3, axis=0)  # 3 voxels along x: 3 mm at 1 x 1.5 x 3 mm (9 mm if x took z's spacing)
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case_a": (pred, ref)}, ANISO)
    official = evaluate_official(pred_dir, ref_dir, tmp_path / "official", scheme="brats2023")
    legacy = evaluate_folders(pred_dir, ref_dir, tmp_path / "legacy", scheme="brats2023")
    lesionwise = official["regions"]["et"]["lesionwise_hd95_mean"]["mean"]
    assert lesionwise == pytest.approx(legacy["regions"]["ET"]["hd95"]["mean"], abs=0.01) == 3.0


def test_all_situations_in_one_folder_give_the_packages_rows_and_statistics(tmp_path: Path) -> None:
    cases = {f"case_{i}_{s}": _pair(s) for i, s in enumerate(SITUATIONS)}
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases, ANISO)
    summary = evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2023", jobs=2)
    ours = (tmp_path / "out" / "official.csv").read_text()
    assert_same_table(ours, package_tables(pred_dir, ref_dir, tmp_path)["official.csv"])
    _, rows = _cells(ours)
    assert [r[0] for r in rows[-3:]] == ["mean", "std", "median"]
    assert summary["regions"]["et"]["lesionwise_dsc_mean"]["mean"] == pytest.approx(
        _column(ours, "mean", "lesionwise_dsc_mean_et"), abs=0)
    assert summary["region_order"][:3] == ["et", "tc", "wt"]
    json.loads((tmp_path / "out" / "official_summary.json").read_text())  # standard JSON: no NaN, no Infinity


def test_missing_prediction_is_scored_as_the_package_scores_it(tmp_path: Path) -> None:
    cases = {"case_a": _pair("shifted"), "case_b": (None, tumour((20, 20, 15), 6)),
             "case_c": (None, np.zeros(SHAPE, np.uint8))}
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases)
    summary = evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2023")
    ours = (tmp_path / "out" / "official.csv").read_text()
    assert_same_table(ours, package_tables(pred_dir, ref_dir, tmp_path)["official.csv"])
    assert summary["missing_predictions"] == ["case_b", "case_c"]
    for cid in ("case_b", "case_c"):  # 373 / 0 whatever the reference holds (case_c has no tumour at all)
        assert _column(ours, cid, "global_hd95_et") == 373
        assert _column(ours, cid, "lesionwise_hd95_mean_et") == 373
        assert _column(ours, cid, "lesionwise_hd95_std_et") == 0
        assert _column(ours, cid, "global_dsc_et") == 0
        assert _column(ours, cid, "all_instance_fn_et") == 0


@pytest.mark.parametrize(("scheme", "challenge", "hidden"), [
    pytest.param("brats", None, ["rc"], id="brats2021_no_rc"),
    pytest.param("brats2023", None, ["rc"], id="brats2023_no_rc"),
    pytest.param("msd", None, ["rc"], id="msd_no_rc"),
    pytest.param("brats2024", None, [], id="brats2024_rc_numbered"),
    pytest.param("brats2023", "mets", ["rc"], id="brats2023_mets"),
    pytest.param("ped", None, [], id="ped_identity"),
])
def test_groups_the_scheme_does_not_number_are_the_configs_groups_without_a_label(scheme: str, challenge: str | None,
                                                                                    hidden: list) -> None:
    key = challenge or ("ped" if scheme == "ped" else "gli")
    mapping = official_label_map(scheme, key)
    assert unnumbered_groups(key, mapping) == hidden
    groups = config_groups(key)  # read from the package's own config: every hidden group's labels unmapped
    assert all(not set(groups[g]) & set(mapping.values()) for g in hidden)
    assert all(set(v) & set(mapping.values()) for g, v in groups.items() if g not in hidden)


def test_missing_prediction_does_not_print_a_score_for_a_class_the_scheme_lacks(tmp_path: Path) -> None:
    """BraTS 2018-2021 labels have no resection cavity: the package's missing-case fill (0 / 373) in its RC columns
    is not printed as an RC score."""
    cases = {"case_a": _pair("shifted"), "case_b": (None, tumour((20, 20, 15), 6))}
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases, relabel={ET: 4})
    summary = evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats")
    ours = (tmp_path / "out" / "official.csv").read_text()
    assert _column(ours, "case_b", "global_hd95_rc") == 373  # the package's file keeps its columns
    assert "rc" not in summary["regions"] and "rc" not in summary["table"] and "rc" not in summary["region_order"]
    assert summary["groups_not_in_scheme"] == ["rc"]
    printed = format_official_table(summary).splitlines()
    assert not any(line.startswith("RC ") for line in printed)
    assert any(line.startswith("not shown: RC, which scheme brats does not number") for line in printed)


def test_mets_writes_the_packages_mets_table_too(tmp_path: Path) -> None:
    cases = {f"case_{s}": _pair(s) for s in ("missed_lesion", "false_lesion", "split")}
    cases["case_small"] = (tumour((20, 20, 15), 1.2), tumour((20, 20, 15), 1.5))  # below 20 mm³: a small lesion
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases)
    summary = evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2023", challenge="mets")
    package = package_tables(pred_dir, ref_dir, tmp_path, config="mets")
    assert_same_table((tmp_path / "out" / "official.csv").read_text(), package["official.csv"])
    assert_same_table((tmp_path / "out" / "official_mets.csv").read_text(), package["official_mets.csv"])
    assert "small_instance_f1" in summary["mets"]["regions"]["et"]


NUMPY_2_3 = tuple(int(x) for x in np.__version__.split(".")[:2]) >= (2, 3)


@pytest.mark.xfail(NUMPY_2_3, raises=TypeError, strict=True,
                   reason="panoptica counts voxels with np.count_nonzero, a NumPy integer from NumPy 2.3 on: the "
                          "package's brats-evaluate then fails writing its JSON (panoptica 2.1.7 pins numpy < 2.3)")
def test_the_packages_command_line_gives_our_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from brats_evaluation import evaluation, metrics_parser

    cases = {f"BraTS-GLI-0000{i}-000": _pair(s) for i, s in enumerate(("split", "missed_lesion", "false_lesion"))}
    cases["BraTS-GLI-00009-000"] = (None, tumour((20, 20, 15), 6))
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases, ANISO)
    evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2023")
    raw, table = tmp_path / "cli.json", tmp_path / "cli.csv"
    monkeypatch.setattr("sys.argv", ["brats-evaluate", "--ref_path", str(ref_dir), "--pred_path", str(pred_dir),
                                     "--config", "gli", "--summary_json", str(raw)])
    evaluation.main()
    monkeypatch.setattr("sys.argv", ["brats-parse-metrics", "seg", "--json_path", str(raw),
                                     "--output_csv_path", str(table)])
    metrics_parser.main()
    theirs = table.read_text().replace(".nii.gz,", ",")  # its CLI names a case by its reference file
    assert_same_table((tmp_path / "out" / "official.csv").read_text(), theirs)


# ---------------------------------------------------------------------------------------------------------------
# Label numbering
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "relabel"), [
    pytest.param("brats", {ET: 4}, id="brats2021_et4"),
    pytest.param("msd", {NCR: 2, ED: 1}, id="msd_ed1_net2"),
    pytest.param("brats2023", {}, id="brats2023_as_is"),
])
def test_scheme_is_renumbered_to_the_packages_numbering(tmp_path: Path, scheme: str, relabel: dict) -> None:
    cases = {f"case_{s}": _pair(s) for s in ("split", "missed_lesion", "false_lesion", "prediction_empty")}
    ours_pred, ours_ref = _write_cases(tmp_path / "ours", cases, relabel=relabel)
    pkg_pred, pkg_ref = _write_cases(tmp_path / "pkg", cases)
    evaluate_official(ours_pred, ours_ref, tmp_path / "out", scheme=scheme)
    assert_same_table((tmp_path / "out" / "official.csv").read_text(),
                      package_tables(pkg_pred, pkg_ref, tmp_path)["official.csv"])


def test_brats2024_resection_cavity_stays_label_4(tmp_path: Path) -> None:
    pred, ref = _pair("missed_lesion")
    ref[30:36, 5:10, 3:8] = RC
    pred[31:36, 5:10, 3:8] = RC
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case_rc": (pred, ref)})
    evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2024")
    ours = (tmp_path / "out" / "official.csv").read_text()
    assert_same_table(ours, package_tables(pred_dir, ref_dir, tmp_path)["official.csv"])
    assert _column(ours, "case_rc", "all_instance_tp_rc") == 1


def test_et4_read_as_brats2023_would_be_a_resection_cavity(tmp_path: Path) -> None:
    """Why the conversion matters: the package scores an unconverted BraTS 2021 ET (4) as RC."""
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case": _pair("shifted")}, relabel={ET: 4})
    evaluate_official(pred_dir, ref_dir, tmp_path / "right", scheme="brats")
    ours = (tmp_path / "right" / "official.csv").read_text()
    package = package_tables(pred_dir, ref_dir, tmp_path)["official.csv"]
    assert math.isnan(_column(package, "case", "global_dsc_et"))
    assert _column(package, "case", "global_dsc_rc") == _column(ours, "case", "global_dsc_et") > 0
    assert math.isnan(_column(ours, "case", "global_dsc_rc"))


@pytest.mark.parametrize(("scheme", "challenge", "expected"), [
    pytest.param("brats", "gli", {1: 1, 2: 2, 4: 3}, id="brats_gli"),
    pytest.param("brats2023", None, {1: 1, 2: 2, 3: 3}, id="brats2023_default_gli"),
    pytest.param("msd", "gli", {1: 2, 2: 1, 3: 3}, id="msd_gli"),
    pytest.param("brats2024", "gli", {1: 1, 2: 2, 3: 3, 4: 4}, id="brats2024_gli"),
    pytest.param("brats", "ped", {1: 2, 2: 4, 4: 1}, id="brats_ped"),
    pytest.param("brats2023", "ped", {1: 2, 2: 4, 3: 1}, id="brats2023_ped_2023_harmonised_converted"),
    pytest.param("ped", "ped", {1: 1, 2: 2, 3: 3, 4: 4}, id="ped_ped_identity"),
    pytest.param("ped", None, {1: 1, 2: 2, 3: 3, 4: 4}, id="ped_default_ped_identity"),
    pytest.param("brats", "MenPre", {1: 1, 2: 2, 4: 3}, id="brats_menpre_any_case"),
])
def test_label_map_per_scheme_and_challenge(scheme: str, challenge: str | None, expected: dict) -> None:
    assert official_label_map(scheme, challenge) == expected


@pytest.mark.parametrize(("scheme", "challenge", "message"), [
    pytest.param("labels", None, "--scheme labels cannot be scored", id="labels"),
    pytest.param("brats2099", None, "cannot score scheme 'brats2099': it is not a BraTS scheme", id="unknown_scheme"),
    pytest.param("nnunet:/data/dataset.json", None, "an nnU-Net dataset's own labels are not a BraTS challenge's",
                 id="nnunet_scheme"),
    pytest.param("brats2024", "ped", "RC has no label", id="rc_under_ped"),
    pytest.param("ped", "gli", "CC has no label", id="cc_under_gli"),
    pytest.param("brats", "menrt", "1 GTV only", id="menrt"),
    pytest.param("brats", "isles", "unknown challenge 'isles'", id="unknown_challenge"),
])
def test_unmappable_scheme_or_challenge_is_refused(tmp_path: Path, scheme: str, challenge: str | None,
                                                   message: str) -> None:
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case": _pair("shifted")})
    with pytest.raises(UserError, match=message) as err:
        evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme=scheme, challenge=challenge)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_label_value_outside_the_scheme_is_refused_naming_the_file(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case": _pair("shifted")})  # ET 3, read as brats (ET 4)
    with pytest.raises(UserError, match=r"case case \(prediction .*case.nii.gz.*\[3\].*brats2023"):
        evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats")


# ---------------------------------------------------------------------------------------------------------------
# Folders, command line, bundle
# ---------------------------------------------------------------------------------------------------------------


def test_prediction_folder_inside_the_reference_is_refused(tmp_path: Path) -> None:
    _, ref_dir = _write_cases(tmp_path / "data", {"case": _pair("shifted")})
    inner = ref_dir / "preds"
    _save(inner / "case.nii.gz", _pair("shifted")[0])
    with pytest.raises(UserError, match="lies inside the reference folder"):
        evaluate_official(inner, ref_dir, tmp_path / "out", scheme="brats2023")


def test_output_folder_among_the_inputs_is_refused(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case": _pair("shifted")})
    with pytest.raises(UserError, match="contains the input folder"):
        evaluate_official(pred_dir, ref_dir, tmp_path / "data", scheme="brats2023")


def test_command_line_official_protocol_writes_and_prints_the_paper_table(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    from pipeline.__main__ import main

    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case_a": _pair("shifted"), "case_b": _pair("split")})
    out = tmp_path / "out"
    code = main(["evaluate", str(pred_dir), str(ref_dir), "--out", str(out), "--scheme", "brats2023",
                 "--protocol", "official", "--challenge", "gli", "--jobs", "2"])
    printed = capsys.readouterr().out
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"official.csv", "official_summary.json", "official_panoptica.json",
                                               "report.html"}
    assert "LW Dice" in printed and "ET " in printed and "±" in printed
    summary = json.loads((out / "official_summary.json").read_text())
    assert format_official_table(summary).splitlines()[2].startswith("ET")


def test_command_line_legacy_stays_the_default(tmp_path: Path) -> None:
    from pipeline.__main__ import main

    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case_a": _pair("shifted")}, relabel={ET: 4})
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--out", str(tmp_path / "out"), "--scheme", "brats"]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"metrics.csv", "summary.json", "report.html"}
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--out", str(tmp_path / "o2"), "--scheme", "brats",
                 "--challenge", "gli"]) == 2


def test_bundle_protocol_switch_writes_the_official_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipeline.data.synthetic import write_dataset
    from tests.helpers import parse_bundle

    data = tmp_path / "BraTS2021"
    write_dataset(data, cases=2, shape=(32, 32, 24), seed=3)
    seg = tmp_path / "run" / "seg"
    for case in sorted(p for p in data.iterdir() if p.is_dir()):
        label = nib.load(str(case / f"{case.name}_seg.nii.gz"))
        _save(seg / f"{case.name}.nii.gz", np.roll(np.asarray(label.dataobj), 1, axis=0), label.affine)
    parser = parse_bundle("evaluate")
    assert parser["protocol"] == "legacy"
    parser.update({"device": "cpu", "dataset_dir": str(data), "run_dir": str(tmp_path / "run"),
                   "protocol": "official"})
    for step in range(len(parser["evaluate"])):  # what `python -m monai.bundle run evaluate` runs
        parser.get_parsed_content(f"evaluate#{step}")
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "eval" / "official_summary.json").read_text())
    assert summary["protocol"] == "official" and summary["scheme"] == "brats" and summary["label_map"]["4"] == 3
    assert (tmp_path / "run" / "eval" / "official.csv").is_file()
    assert "LW Dice" in printed and "pictures:\nreport: " in printed  # no pictures for the official protocol


def test_missing_package_is_refused_with_the_install_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case": _pair("shifted")})
    monkeypatch.setitem(sys.modules, "brats_evaluation", None)  # import brats_evaluation -> ImportError
    with pytest.raises(UserError, match=r"pip install -e '\.\[official\]'"):
        evaluate_official(pred_dir, ref_dir, tmp_path / "out", scheme="brats2023")
    assert not (tmp_path / "out").exists()


def test_unknown_protocol_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown protocol 'brats'"):
        evaluate("brats", tmp_path, tmp_path, tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Measured differences from the legacy protocol (docs/metrics.md)
# ---------------------------------------------------------------------------------------------------------------


def _surface(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask & ~binary_erosion(mask, generate_binary_structure(3, 1)))


def pooled_hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th percentile of both directed surface distances pooled (MedPy's and panoptica's definition)."""
    d = cdist(_surface(pred) * np.asarray(spacing), _surface(ref) * np.asarray(spacing))
    return float(np.percentile(np.hstack([d.min(axis=1), d.min(axis=0)]), 95))


def _both(tmp_path: Path, situation: str, affine: np.ndarray = ISO) -> tuple[str, dict]:
    """``(official.csv text, {region: legacy row})`` of one situation."""
    cases = {"case": _pair(situation)}
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases, affine, relabel={ET: 4})
    evaluate_official(pred_dir, ref_dir, tmp_path / "official", scheme="brats")
    evaluate_folders(pred_dir, ref_dir, tmp_path / "legacy", scheme="brats")
    legacy = {r["region"]: r for r in csv.DictReader((tmp_path / "legacy" / "metrics.csv").open())}
    return (tmp_path / "official" / "official.csv").read_text(), legacy


@pytest.mark.parametrize("situation", [pytest.param(s, id=s) for s in ("split", "merged", "false_lesion", "shifted")])
def test_global_dice_equals_the_legacy_dice(tmp_path: Path, situation: str) -> None:
    official, legacy = _both(tmp_path, situation)
    for region in ("ET", "TC", "WT"):
        assert _column(official, "case", f"global_dsc_{region.lower()}") == pytest.approx(
            float(legacy[region]["dice"]), rel=1e-12)


def test_both_empty_is_nan_officially_and_1_0_in_legacy(tmp_path: Path) -> None:
    official, legacy = _both(tmp_path, "both_empty")
    for region in ("ET", "TC", "WT"):
        for stem in ("global_dsc", "global_hd95", "lesionwise_dsc_mean", "lesionwise_hd95_mean"):
            assert math.isnan(_column(official, "case", f"{stem}_{region.lower()}"))
        assert float(legacy[region]["dice"]) == 1.0 and float(legacy[region]["hd95"]) == 0.0


def test_disjoint_lesions_get_373_officially_and_their_distance_in_legacy(tmp_path: Path) -> None:
    official, legacy = _both(tmp_path, "disjoint")
    assert _column(official, "case", "global_hd95_wt") == 373
    assert _column(official, "case", "lesionwise_hd95_mean_wt") == math.inf  # no lesion matched: inf, not 373
    assert 20 < float(legacy["WT"]["hd95"]) < 40


def test_global_hd95_is_pooled_and_in_voxels_lesionwise_hd95_uses_each_axis_spacing(tmp_path: Path) -> None:
    """On 1 x 1.5 x 3 mm voxels: the package's global HD95 ignores the spacing (voxel units, pooled percentile);
    its lesion-wise HD95 pairs SimpleITK's (z, y, x) array with the spacing as SimpleITK reports it, so the adapter
    states the voxel sizes in reverse order and each axis gets its own; the legacy HD95 is MONAI's max of the two
    directed 95th percentiles, in mm."""
    pred, ref = _pair("shifted")
    official, legacy = _both(tmp_path, "shifted", ANISO)
    et_pred, et_ref = pred == ET, ref == ET
    assert _column(official, "case", "global_hd95_et") == pytest.approx(pooled_hd95(et_pred, et_ref, (1, 1, 1)))
    assert _column(official, "case", "lesionwise_hd95_mean_et") == pytest.approx(
        pooled_hd95(et_pred, et_ref, (1.0, 1.5, 3.0)))
    d = cdist(_surface(et_pred) * [1, 1.5, 3], _surface(et_ref) * [1, 1.5, 3])
    monai = max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))
    assert float(legacy["ET"]["hd95"]) == pytest.approx(monai, rel=1e-5)
    assert monai == pytest.approx(3.0)  # the shift is 3 voxels of 1 mm along x: 3 mm
    assert _column(official, "case", "lesionwise_hd95_mean_et") == pytest.approx(3.0)  # not 9: x is not z's 3 mm


def test_lesionwise_dice_of_the_seg_parser_ignores_missed_lesions_the_mets_parser_counts_them(tmp_path: Path) -> None:
    """gli's ``lesionwise_dsc_mean`` is panoptica's sq_dsc, the mean over matched lesions: a missed lesion lowers
    only F1 and the global Dice. The mets parser adds a 0 per missed or false large lesion."""
    pred, ref = _pair("missed_lesion")
    pred_dir, ref_dir = _write_cases(tmp_path / "data", {"case": (pred, ref)})
    evaluate_official(pred_dir, ref_dir, tmp_path / "gli", scheme="brats2023")
    evaluate_official(pred_dir, ref_dir, tmp_path / "mets", scheme="brats2023", challenge="mets")
    gli = (tmp_path / "gli" / "official.csv").read_text()
    mets = (tmp_path / "mets" / "official_mets.csv").read_text()
    wt_pred, wt_ref = pred > 0, ref > 0
    matched = 2 * (wt_pred & wt_ref).sum() / (wt_pred.sum() + (wt_ref & _ball((10, 10, 10), 5.5)).sum())
    assert _column(gli, "case", "lesionwise_dsc_mean_wt") == pytest.approx(matched)
    assert _column(gli, "case", "all_instance_f1_wt") == pytest.approx(2 / 3)
    assert _column(gli, "case", "global_dsc_wt") < 0.5 < matched
    assert _column(mets, "case", "lesionwise_dsc_mean_wt") == pytest.approx(matched / 2)
    assert _column(mets, "case", "lesionwise_hd95_mean_wt") == pytest.approx(
        (_column(gli, "case", "lesionwise_hd95_mean_wt") + 373) / 2)


def test_missing_prediction_is_373_officially_and_373_13_in_legacy(tmp_path: Path) -> None:
    cases = {"case_a": _pair("shifted"), "case_b": (None, tumour((20, 20, 15), 6))}
    pred_dir, ref_dir = _write_cases(tmp_path / "data", cases, relabel={ET: 4})
    evaluate_official(pred_dir, ref_dir, tmp_path / "official", scheme="brats")
    evaluate_folders(pred_dir, ref_dir, tmp_path / "legacy", scheme="brats")
    official = (tmp_path / "official" / "official.csv").read_text()
    legacy = [r for r in csv.DictReader((tmp_path / "legacy" / "metrics.csv").open()) if r["case"] == "case_b"]
    assert _column(official, "case_b", "global_hd95_et") == 373
    assert {float(r["hd95"]) for r in legacy} == {373.13}


def test_an_unmatched_lesion_and_a_missing_prediction_print_the_same_penalty(tmp_path: Path) -> None:
    """The table put 373.13 (the legacy protocol's penalty) where no lesion matched, and the package's 373 where a
    prediction was missing: one column, two penalties for the same miss."""
    from pipeline.evaluation.official import table_statistics

    columns = ["subject_id", "lesionwise_hd95_mean_et"]
    rows = [{"subject_id": "unmatched", "lesionwise_hd95_mean_et": "inf"},
            {"subject_id": "missing", "lesionwise_hd95_mean_et": "373"}]
    stats = table_statistics(columns, rows, ["et"])["et"]["lesionwise_hd95_mean"]
    assert stats["mean"] == 373 and stats["std"] == 0 and stats["n"] == 2
