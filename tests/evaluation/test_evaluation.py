"""BraTS region evaluation: ``evaluate_case`` and ``evaluate_folders`` against independent NumPy/SciPy numbers."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from pipeline.core.errors import UserError
from pipeline.data.labels import labels_to_regions, scheme_labels
from pipeline.evaluation.regions import CSV_COLUMNS, evaluate_case, evaluate_folders, format_table

SHAPE = (22, 20, 14)
PENALTY = 373.13


# ---------------------------------------------------------------------------------------------------------------
# Independent computation: plain NumPy and SciPy's cdist
# ---------------------------------------------------------------------------------------------------------------


def np_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the image border counts as outside)."""
    pad = np.pad(mask.astype(bool), 1)
    inner = np.ones(mask.shape, bool)
    centre = tuple(slice(1, -1) for _ in range(mask.ndim))
    for ax in range(mask.ndim):
        for shift in (-1, 1):
            inner &= np.roll(pad, shift, axis=ax)[centre]
    return np.argwhere(mask & ~inner)


def expected_row(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    """One region's metrics with the BraTS empty rules, computed by brute force."""
    p, r = pred.astype(bool), ref.astype(bool)
    tp, fp, fn = int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())
    tn = p.size - tp - fp - fn
    if p.any() and r.any():
        d = cdist(np_surface(p) * np.asarray(spacing), np_surface(r) * np.asarray(spacing))
        hd = max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))
    else:
        hd = 0.0 if not p.any() and not r.any() else PENALTY
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
        "sensitivity": tp / (tp + fn) if (tp + fn) else 1.0,
        "specificity": tn / (tn + fp) if (tn + fp) else 1.0,
        "hd95": float(hd),
        "pred_voxels": int(p.sum()),
        "ref_voxels": int(r.sum()),
    }


def expected_brats_rows(pred: np.ndarray, ref: np.ndarray, spacing, scheme: str = "brats") -> list[dict]:
    """ET, TC, WT rows through :func:`pipeline.data.labels.labels_to_regions` (channels TC, WT, ET)."""
    rp, rr = labels_to_regions(pred, scheme), labels_to_regions(ref, scheme)
    return [{"region": name, **expected_row(rp[i], rr[i], spacing)} for name, i in (("ET", 2), ("TC", 0), ("WT", 1))]


def assert_rows_close(got: list[dict], expected: list[dict]) -> None:
    assert [r["region"] for r in got] == [r["region"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert set(g) == {"region", "dice", "sensitivity", "specificity", "hd95", "nsd", "pred_voxels", "ref_voxels"}
        for key in ("dice", "sensitivity", "specificity"):
            assert g[key] == pytest.approx(e[key], abs=1e-9), (g["region"], key)
        assert g["hd95"] == pytest.approx(e["hd95"], rel=1e-5), g["region"]
        assert (g["pred_voxels"], g["ref_voxels"]) == (e["pred_voxels"], e["ref_voxels"])


def tumour(centre, radius: float, seed: int, scheme: str = "brats", shape=SHAPE, et: bool = True) -> np.ndarray:
    """A small irregular tumour label map: ED shell, ET rim, NCR core (values per ``scheme``)."""
    lab = scheme_labels(scheme)
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, (1.0, 1.2, 0.7), strict=True)))
    r = r + rng.uniform(-0.6, 0.6, size=shape)
    out = np.zeros(shape, np.uint8)
    out[r < radius] = lab["ED"]
    if et:
        out[r < 0.65 * radius] = lab["ET"]
    out[r < 0.4 * radius] = lab["NCR"]
    return out


def save(path: Path, data: np.ndarray, spacing=(1.0, 1.0, 1.0), shift=(0.0, 0.0, 0.0)) -> Path:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = shift
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.uint8), affine), path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# evaluate_case
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "spacing"),
    [
        pytest.param("brats", (1.0, 1.0, 1.0), id="brats_isotropic"),
        pytest.param("brats", (0.9, 1.2, 3.0), id="brats_anisotropic"),
        pytest.param("brats2023", (1.0, 0.8, 2.2), id="brats2023_et_is_3_anisotropic"),
    ],
)
def test_evaluate_case_matches_an_independent_numpy_computation(scheme: str, spacing) -> None:
    ref = tumour((10, 9, 7), 7.0, seed=1, scheme=scheme)
    pred = tumour((11, 10, 6), 6.5, seed=2, scheme=scheme)
    rows = evaluate_case(pred, ref, spacing, scheme=scheme)
    assert_rows_close(rows, expected_brats_rows(pred, ref, spacing, scheme))
    assert all(isinstance(r["dice"], float) and isinstance(r["pred_voxels"], int) for r in rows)


@pytest.mark.parametrize(
    ("pred_et", "ref_et", "dice", "hd95", "sens"),
    [
        pytest.param(False, False, 1.0, 0.0, 1.0, id="et_absent_from_both"),
        pytest.param(True, False, 0.0, PENALTY, 1.0, id="et_predicted_but_absent_from_reference"),
        pytest.param(False, True, 0.0, PENALTY, 0.0, id="et_missed"),
    ],
)
def test_empty_et_follows_the_brats_rules(pred_et: bool, ref_et: bool, dice: float, hd95: float, sens: float) -> None:
    ref = tumour((10, 9, 7), 7.0, seed=3, et=ref_et)
    pred = tumour((10, 9, 7), 7.0, seed=4, et=pred_et)
    et = evaluate_case(pred, ref, (1.0, 1.0, 1.0))[0]
    assert et["region"] == "ET"
    assert (et["dice"], et["hd95"], et["sensitivity"]) == (dice, hd95, sens)
    assert_rows_close(evaluate_case(pred, ref, (1.0, 1.0, 1.0)), expected_brats_rows(pred, ref, (1.0, 1.0, 1.0)))


def test_an_all_background_case_scores_every_region_as_both_empty() -> None:
    zeros = np.zeros(SHAPE, np.uint8)
    rows = evaluate_case(zeros, zeros, (1.0, 1.0, 1.0))
    assert [(r["region"], r["dice"], r["hd95"], r["sensitivity"], r["specificity"]) for r in rows] == [
        (name, 1.0, 0.0, 1.0, 1.0) for name in ("ET", "TC", "WT")
    ]


def test_region_channels_in_network_order_give_the_same_rows_as_label_maps() -> None:
    ref = tumour((10, 9, 7), 7.0, seed=5)
    pred = tumour((9, 10, 7), 6.0, seed=6)
    from_labels = evaluate_case(pred, ref, (1.0, 1.5, 2.0))
    from_regions = evaluate_case(
        torch.as_tensor(labels_to_regions(pred)), torch.as_tensor(labels_to_regions(ref)), (1.0, 1.5, 2.0)
    )
    for a, b in zip(from_labels, from_regions, strict=True):
        assert a["region"] == b["region"]
        for key in ("dice", "sensitivity", "specificity", "hd95", "nsd", "pred_voxels", "ref_voxels"):
            assert a[key] == pytest.approx(b[key], rel=1e-12), key


def test_labels_scheme_scores_every_value_present_in_either_file() -> None:
    ref = np.zeros(SHAPE, np.int16)
    pred = np.zeros(SHAPE, np.int16)
    ref[2:8, 2:8, 2:6] = 3
    pred[3:9, 2:8, 2:6] = 3
    ref[12:16, 10:14, 5:9] = 7  # label 7 missed
    pred[15:18, 15:18, 10:12] = 11  # label 11 not in the reference
    rows = evaluate_case(pred, ref, (1.0, 1.0, 2.0), scheme="labels")
    assert [r["region"] for r in rows] == ["label_3", "label_7", "label_11"]
    for row, v in zip(rows, (3, 7, 11), strict=True):
        e = expected_row(pred == v, ref == v, (1.0, 1.0, 2.0))
        assert row["dice"] == pytest.approx(e["dice"]) and row["hd95"] == pytest.approx(e["hd95"], rel=1e-5)
    assert (rows[1]["dice"], rows[1]["hd95"], rows[2]["sensitivity"]) == (0.0, PENALTY, 1.0)


def test_a_label_outside_the_scheme_is_an_error_naming_the_right_scheme() -> None:
    ref = tumour((10, 9, 7), 7.0, seed=7, scheme="brats2023")  # ET = 3
    with pytest.raises(ValueError, match=r"\[3\].*scheme 'brats'.*brats2023"):
        evaluate_case(ref, ref, (1.0, 1.0, 1.0), scheme="brats")


def test_float_label_maps_are_accepted_and_fractional_values_rejected() -> None:
    ref = tumour((10, 9, 7), 7.0, seed=8)
    pred = tumour((10, 10, 7), 6.0, seed=9)
    as_float = evaluate_case(pred.astype(np.float64), ref.astype(np.float64), (1.0, 1.0, 1.0))
    assert_rows_close(as_float, expected_brats_rows(pred, ref, (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="non-integer"):
        evaluate_case(pred * 0.5, ref.astype(np.float64), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.float32])
def test_every_integer_or_float_dtype_of_a_nifti_label_map_gives_the_same_rows(dtype) -> None:
    ref = tumour((10, 9, 7), 7.0, seed=12)
    pred = tumour((10, 10, 6), 6.0, seed=13)
    rows = evaluate_case(pred.astype(dtype), ref.astype(dtype), (1.0, 1.0, 1.0))
    assert_rows_close(rows, expected_brats_rows(pred, ref, (1.0, 1.0, 1.0)))


def test_shape_mismatch_in_evaluate_case_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate_case(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), (1.0, 1.0, 1.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluate_case_on_cuda_equals_the_cpu_result() -> None:
    ref = tumour((10, 9, 7), 7.0, seed=10)
    pred = tumour((11, 9, 6), 6.0, seed=11)
    cpu = evaluate_case(pred, ref, (1.0, 1.2, 2.0))
    gpu = evaluate_case(torch.as_tensor(pred).cuda(), torch.as_tensor(ref).cuda(), (1.0, 1.2, 2.0))
    for a, b in zip(cpu, gpu, strict=True):
        assert b["region"] == a["region"]
        for key in ("dice", "sensitivity", "specificity", "hd95", "nsd", "pred_voxels", "ref_voxels"):
            assert b[key] == pytest.approx(a[key], rel=1e-6), key


# ---------------------------------------------------------------------------------------------------------------
# evaluate_folders
# ---------------------------------------------------------------------------------------------------------------

SPACING = (1.0, 1.3, 2.5)


@pytest.fixture
def folders(tmp_path: Path) -> dict:
    """Reference labels and predictions for cases a, b, c (c's prediction missing), anisotropic header zooms."""
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    arrays = {
        "case_a": (tumour((11, 10, 7), 6.5, seed=21), tumour((10, 9, 7), 7.0, seed=22)),
        "case_b": (tumour((9, 10, 6), 5.0, seed=23, et=False), tumour((10, 10, 7), 5.5, seed=24)),
        "case_c": (None, tumour((12, 9, 7), 6.0, seed=25)),
    }
    for cid, (pred, ref) in arrays.items():
        save(refs / f"{cid}.nii.gz", ref, SPACING)
        if pred is not None:
            save(preds / f"{cid}.nii.gz", pred, SPACING)
    return {"refs": refs, "preds": preds, "out": tmp_path / "out", "arrays": arrays}


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_metrics_csv_has_exactly_the_columns_and_matches_the_independent_computation(folders: dict) -> None:
    evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    columns, rows = read_csv(folders["out"] / "metrics.csv")
    assert columns == ["case", "region", "dice", "sensitivity", "specificity", "hd95", "nsd", "pred_voxels",
                       "ref_voxels"]
    assert tuple(columns) == CSV_COLUMNS
    assert [(r["case"], r["region"]) for r in rows] == [(c, g) for c in ("case_a", "case_b", "case_c")
                                                         for g in ("ET", "TC", "WT")]
    for cid, (pred, ref) in folders["arrays"].items():
        pred = np.zeros_like(ref) if pred is None else pred
        expected = expected_brats_rows(pred, ref, SPACING)  # spacing as written in the headers
        got = [{**r, **{k: float(r[k]) for k in ("dice", "sensitivity", "specificity", "hd95")},
                "pred_voxels": int(r["pred_voxels"]), "ref_voxels": int(r["ref_voxels"])}
               for r in rows if r["case"] == cid]
        assert_rows_close([{k: v for k, v in g.items() if k != "case"} for g in got], expected)
    assert not list(folders["out"].glob("*.tmp"))


def test_summary_holds_the_statistics_of_the_csv_columns(folders: dict) -> None:
    summary = evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    on_disk = json.loads((folders["out"] / "summary.json").read_text())
    assert on_disk == summary
    _, rows = read_csv(folders["out"] / "metrics.csv")
    assert summary["scheme"] == "brats" and summary["cases"] == 3
    assert list(summary["regions"]) == ["ET", "TC", "WT"]
    for region, metrics in summary["regions"].items():
        for metric in ("dice", "sensitivity", "specificity", "hd95"):
            values = np.array([float(r[metric]) for r in rows if r["region"] == region])
            stats = metrics[metric]
            assert stats["mean"] == pytest.approx(values.mean())
            assert stats["std"] == pytest.approx(values.std(ddof=1))  # the official evaluation's (pandas) convention
            assert stats["median"] == pytest.approx(np.median(values))
            assert (stats["q1"], stats["q3"]) == pytest.approx(tuple(np.percentile(values, [25, 75])))
            assert (stats["min"], stats["max"]) == pytest.approx((values.min(), values.max()))
    mean_dice = np.mean([summary["regions"][r]["dice"]["mean"] for r in ("ET", "TC", "WT")])
    assert summary["mean_dice"] == pytest.approx(mean_dice)
    assert summary["hd95_empty_penalty_mm"] == PENALTY
    assert "373.13" in summary["conventions"]["hd95"]


def test_a_missing_prediction_is_scored_empty_reported_and_logged(folders: dict, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.evaluation.regions"):
        summary = evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    assert summary["missing_predictions"] == ["case_c"]
    assert any("case_c" in m and str(folders["preds"] / "case_c.nii.gz") in m for m in caplog.messages)
    _, rows = read_csv(folders["out"] / "metrics.csv")
    for row in (r for r in rows if r["case"] == "case_c"):
        assert (float(row["dice"]), float(row["hd95"]), int(row["pred_voxels"])) == (0.0, PENALTY, 0)
    assert "case_c" in format_table(summary)


def test_predictions_without_reference_are_listed_not_scored(folders: dict) -> None:
    save(folders["preds"] / "stray.nii.gz", np.zeros(SHAPE), SPACING)
    summary = evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    assert summary["unmatched_predictions"] == ["stray"]
    _, rows = read_csv(folders["out"] / "metrics.csv")
    assert "stray" not in {r["case"] for r in rows}


def test_a_shape_mismatch_is_an_error_naming_the_case_and_both_files(folders: dict) -> None:
    save(folders["preds"] / "case_b.nii.gz", np.zeros((SHAPE[0], SHAPE[1], SHAPE[2] + 1)), SPACING)
    with pytest.raises(ValueError, match=r"case case_b: prediction .*preds/case_b\.nii\.gz.*refs/case_b\.nii\.gz"):
        evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    assert not (folders["out"] / "metrics.csv").exists()


def test_an_affine_mismatch_is_an_error_naming_the_case_and_both_files(folders: dict) -> None:
    pred = tumour((9, 10, 6), 5.0, seed=23)
    save(folders["preds"] / "case_a.nii.gz", pred, SPACING, shift=(0.0, 0.0, 2.0))
    with pytest.raises(ValueError, match=r"case case_a: prediction .*preds/case_a\.nii\.gz.*refs/case_a\.nii\.gz"
                                         r".*different grids .*resample the prediction onto the reference"):
        evaluate_folders(folders["preds"], folders["refs"], folders["out"])


def test_an_affine_within_the_tolerance_is_accepted(folders: dict) -> None:
    pred = tumour((11, 10, 7), 6.5, seed=21)
    save(folders["preds"] / "case_a.nii.gz", pred, SPACING, shift=(0.0, 0.0, 2e-4))
    summary = evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    assert summary["cases"] == 3


def test_brats2023_and_labels_schemes_through_folders(tmp_path: Path) -> None:
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    ref = tumour((10, 9, 7), 7.0, seed=31, scheme="brats2023")
    pred = tumour((11, 9, 7), 6.0, seed=32, scheme="brats2023")
    save(refs / "x.nii.gz", ref, SPACING)
    save(preds / "x.nii.gz", pred, SPACING)
    s23 = evaluate_folders(preds, refs, tmp_path / "o23", scheme="brats2023")
    _, rows = read_csv(tmp_path / "o23" / "metrics.csv")
    expected = expected_brats_rows(pred, ref, SPACING, "brats2023")
    assert [float(r["dice"]) for r in rows] == pytest.approx([e["dice"] for e in expected])
    assert s23["regions"]["ET"]["dice"]["mean"] == pytest.approx(expected[0]["dice"])
    with pytest.raises(ValueError, match=r"case x .*brats2023"):
        evaluate_folders(preds, refs, tmp_path / "o21", scheme="brats")
    lab = evaluate_folders(preds, refs, tmp_path / "olab", scheme="labels")
    assert list(lab["regions"]) == ["label_1", "label_2", "label_3"]
    _, rows = read_csv(tmp_path / "olab" / "metrics.csv")
    for row in rows:
        v = int(row["region"].split("_")[1])
        assert float(row["dice"]) == pytest.approx(expected_row(pred == v, ref == v, SPACING)["dice"])
        assert float(row["hd95"]) == pytest.approx(expected_row(pred == v, ref == v, SPACING)["hd95"], rel=1e-5)


def test_a_dataset_folder_is_a_valid_reference_and_cases_restrict_the_evaluation(tiny_dataset: Path, tmp_path) -> None:
    from pipeline.data.layouts import discover_cases

    cases = [c for c in discover_cases(tiny_dataset) if c.label]
    preds = tmp_path / "preds"
    preds.mkdir()
    for c in cases[:2]:
        shutil.copy(c.label, preds / f"{c.case_id}.nii.gz")  # perfect predictions
    chosen = [cases[0].case_id, cases[2].case_id]
    summary = evaluate_folders(preds, tiny_dataset, tmp_path / "out", cases=chosen)
    assert summary["cases"] == 2 and summary["missing_predictions"] == [cases[2].case_id]
    assert summary["unmatched_predictions"] == []
    _, rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert {r["case"] for r in rows} == set(chosen)
    ref0 = np.asanyarray(nib.load(cases[0].label).dataobj)
    for row in (r for r in rows if r["case"] == cases[0].case_id):
        assert (float(row["dice"]), float(row["hd95"]), float(row["sensitivity"])) == (1.0, 0.0, 1.0)
    assert int(next(r for r in rows if r["case"] == cases[0].case_id and r["region"] == "WT")["ref_voxels"]) == int(
        (ref0 != 0).sum()
    )
    with pytest.raises(ValueError, match="no_such_case"):
        evaluate_folders(preds, tiny_dataset, tmp_path / "out2", cases=["no_such_case"])


def test_format_table_prints_mean_and_std_of_each_region(folders: dict) -> None:
    summary = evaluate_folders(folders["preds"], folders["refs"], folders["out"])
    table = format_table(summary)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["Region", "Dice", "Sens", "Spec"]
    et = summary["regions"]["ET"]
    assert f"{et['dice']['mean']:.4f} ± {et['dice']['std']:.4f}" in table
    assert f"{et['hd95']['mean']:.2f} ± {et['hd95']['std']:.2f}" in table
    assert [ln.split()[0] for ln in lines[2:5]] == ["ET", "TC", "WT"]


@pytest.mark.parametrize(("scheme", "regions"), [
    pytest.param("brats", ["ET", "TC", "WT"], id="brats"),
    pytest.param("brats2024", ["ET", "NETC", "SNFH", "RC", "TC", "WT"], id="brats2024_with_rc"),
    pytest.param("labels", ["label_1", "label_2"], id="labels"),
])
def test_the_dice_line_gives_the_mean_and_every_region_the_evaluation_scored(scheme: str, regions: list[str]) -> None:
    from pipeline.evaluation.regions import dice_line, summarize

    rng = np.random.default_rng(0)
    dice = {r: rng.uniform(0, 1, 3) for r in regions}  # 3 cases
    others = dict.fromkeys(("sensitivity", "specificity", "hd95", "nsd"), 1.0)
    rows = [{"region": r, "dice": float(d), **others} for r in regions for d in dice[r]]
    line = dice_line(summarize(rows, scheme, 3))
    means = [float(np.mean(dice[r])) for r in regions]
    assert line == (f"mean Dice {np.mean(means):.3f} ("
                    + ", ".join(f"{r} {m:.3f}" for r, m in zip(regions, means, strict=True)) + ")")


def test_the_dice_line_of_a_summary_read_back_shows_a_region_no_case_had_as_n_a() -> None:
    from pipeline.evaluation.regions import dice_line

    summary = {"mean_dice": 0.5, "regions": {"ET": {"dice": {"mean": None}}, "WT": {"dice": {"mean": 0.5}}}}
    assert dice_line(summary) == "mean Dice 0.500 (ET n/a, WT 0.500)"


@pytest.mark.parametrize(("scheme", "stated"), [
    pytest.param("brats", ["ET = labels [4]", "TC = labels [1, 4]", "WT = labels [1, 2, 4]"], id="brats"),
    pytest.param("brats2023", ["ET = labels [3]", "TC = labels [1, 3]"], id="brats2023"),
    pytest.param("brats2024", ["RC = labels [4]", "WT = labels [1, 2, 3]"], id="brats2024"),
    pytest.param("msd", ["ET = labels [3]", "TC = labels [2, 3]", "WT = labels [1, 2, 3]"], id="msd"),
])
def test_the_summary_states_the_regions_of_the_scheme_it_scored(scheme: str, stated: list[str]) -> None:
    from pipeline.evaluation.regions import summarize

    regions = summarize([], scheme, 0)["conventions"]["regions"]
    assert regions.startswith(f"{scheme}: ") and all(s in regions for s in stated), regions


@pytest.mark.parametrize("scheme", ["labels", "dataset.json"], ids=["--scheme labels", "the dataset's scheme"])
def test_a_prediction_holding_the_ignore_value_is_refused_not_scored(scheme: str, tmp_path: Path) -> None:
    """nnU-Net's ignore value marks unannotated reference voxels; in a prediction it was scored as a class
    (`label_3`, Dice 0) under --scheme labels, then as background, and as background under the dataset's own scheme:
    a prediction never holds it (the pipeline's never do), so it is refused, naming the value."""
    from pipeline.evaluation.regions import evaluate_case

    ref = np.zeros((8, 8, 8), np.uint8)
    ref[1:5, 1:5, 1:5] = 1
    ref[6:8] = 3  # unannotated
    pred = np.where(ref == 1, 1, 0).astype(np.uint8)
    rows = evaluate_case(pred, ref, None, "labels", ignore=3)
    assert [r["region"] for r in rows] == ["label_1"] and rows[0]["dice"] == pytest.approx(1.0)
    if scheme == "dataset.json":
        (tmp_path / "dataset.json").write_text(json.dumps({
            "channel_names": {"0": "T1"}, "labels": {"background": 0, "tumour": 1, "ignore": 3}}))
        scheme = f"nnunet:{tmp_path / 'dataset.json'}"
    assert evaluate_case(pred, ref, None, scheme, ignore=3 if scheme == "labels" else None)[0]["dice"] == 1.0
    pred[5, 7, 7] = 3  # a voxel predicted as the ignore value, outside the unannotated slab
    with pytest.raises(UserError, match="the prediction holds the value 3, the data's ignore label"):
        evaluate_case(pred, ref, None, scheme, ignore=3 if scheme == "labels" else None)


@pytest.mark.parametrize(("ids", "expected"), [
    (["BraTS-MET-00001-000", "BraTS-MET-00002-000"], "mets"),
    (["BraTS-PED-00001-000"], "ped"),
    (["BraTS-MEN-RT-0001-1"], "menrt"),
    (["BraTS-MEN-00001-000"], "menpre"),
    (["BraTS-GLI-00001-000", "BraTS-SSA-00002-000"], "gli"),
    (["BraTS2021_00000", "BRATS_001"], "gli"),  # no challenge in the name: the scheme's default
])
def test_the_official_challenge_is_the_one_the_case_ids_name(ids: list[str], expected: str) -> None:
    """BraTS-MET cases were scored with gli's settings and parser unless --challenge was given."""
    from pipeline.evaluation.official import resolve_challenge

    assert resolve_challenge(None, "brats2023", ids) == expected
    assert resolve_challenge("gli", "brats2023", ids) == "gli"  # given by name: as given


def test_cases_of_two_challenges_are_not_scored_with_one_challenges_settings() -> None:
    from pipeline.evaluation.official import resolve_challenge

    with pytest.raises(UserError, match="the cases name 2 challenges \\(gli, mets"):
        resolve_challenge(None, "brats2023", ["BraTS-GLI-00001-000", "BraTS-MET-00002-000"])
