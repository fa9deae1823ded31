"""compare: the BraTS ranking (per case, region and metric; ties share their mean rank) against a ranking counted
by hand, the paired tests against scipy on aligned cases, and five algorithms of known quality ranked in order
with one command, its table, tests, box plot and report."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from pipeline.__main__ import main as pipeline_main
from pipeline.core.errors import UserError
from pipeline.evaluation.compare import algorithm_names, brats_ranking, paired_tests
from tests.helpers import checksums, corrupted_predictions


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _scores(table: dict[str, list[tuple[float, float]]]) -> dict:
    """``{algorithm: [(dice, hd95) per case]}`` -> the nested scores of one region ``WT``."""
    return {a: {f"c{i}": {"WT": {"dice": d, "hd95": h}} for i, (d, h) in enumerate(rows)} for a, rows in table.items()}


def test_ranking_averages_the_ranks_of_every_case_and_metric_as_brats_does() -> None:
    scores = _scores({"a": [(0.9, 2.0), (0.8, 5.0)], "b": [(0.9, 3.0), (0.6, 4.0)], "c": [(0.5, 9.0), (0.7, 9.0)]})
    # by hand: case 0 Dice a=b=1.5 c=3, HD95 a=1 b=2 c=3; case 1 Dice a=1 c=2 b=3, HD95 b=1 a=2 c=3
    expected = {"a": (1.5 + 1 + 1 + 2) / 4, "b": (1.5 + 2 + 3 + 1) / 4, "c": (3 + 3 + 2 + 3) / 4}
    ranking = brats_ranking(scores)
    assert list(ranking) == ["a", "b", "c"]
    for name, value in expected.items():
        assert ranking[name] == pytest.approx(value)


def test_a_missing_value_ranks_last() -> None:
    scores = _scores({"a": [(math.nan, math.nan)], "b": [(0.1, 50.0)]})
    assert list(brats_ranking(scores)) == ["b", "a"]


def test_paired_tests_compare_neighbours_on_the_same_cases() -> None:
    rng = np.random.default_rng(0)
    better = rng.uniform(0.7, 0.9, 12)
    worse = better - rng.uniform(0.0, 0.2, 12)
    scores = _scores({"good": [(d, 1.0) for d in better], "bad": [(d, 1.0) for d in worse]})
    scores["bad"] = dict(reversed(list(scores["bad"].items())))  # another case order: paired by case, not position
    (test,) = paired_tests(scores, ["good", "bad"])
    assert test["n"] == 12 and test["p_value"] == pytest.approx(wilcoxon(better, worse).pvalue)
    assert test["mean_difference"] == pytest.approx(float(np.mean(better - worse)))
    (same,) = paired_tests({"x": scores["good"], "y": scores["good"]}, ["x", "y"])
    assert same["p_value"] == 1.0


def test_paired_tests_say_how_many_cases_the_test_ranked() -> None:
    """SciPy's Wilcoxon drops the cases scored alike; n said 10 where the test ranked 4."""
    better = np.array([0.9] * 4 + [0.7] * 6)
    worse = np.array([0.8] * 4 + [0.7] * 6)
    scores = _scores({"good": [(d, 1.0) for d in better], "bad": [(d, 1.0) for d in worse]})
    (test,) = paired_tests(scores, ["good", "bad"])
    assert test["n"] == 10 and test["n_differing"] == 4
    assert test["p_value"] == pytest.approx(wilcoxon(better[:4], worse[:4]).pvalue)


def test_names_are_unique_and_given_names_are_checked(tmp_path: Path) -> None:
    assert algorithm_names([tmp_path / "a" / "seg", tmp_path / "b" / "seg"]) == ["seg_1", "seg_2"]
    with pytest.raises(UserError, match="--names"):
        algorithm_names([tmp_path / "a", tmp_path / "b"], ["x", "x"])


@pytest.mark.parametrize("twice", [pytest.param("symlink", id="a_link_to_the_other_folder"),
                                   pytest.param("trailing_slash", id="the_same_path_spelt_otherwise")])
def test_one_folder_given_twice_is_not_ranked_against_itself(tiny_dataset: Path, tmp_path: Path, twice: str,
                                                             capsys: pytest.CaptureFixture) -> None:
    folder = corrupted_predictions(tiny_dataset, tmp_path / "alg", 1)
    other = tmp_path / "link"
    if twice == "symlink":
        other.symlink_to(folder)
    else:
        other = Path(str(folder) + "/.")
    assert pipeline_main(["compare", str(tiny_dataset), str(folder), str(other), "--out", str(tmp_path / "cmp")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "are one folder" in line and "against itself" in line
    assert not (tmp_path / "cmp").exists()


def test_compare_ranks_five_algorithms_in_order_of_quality_in_one_command(tiny_dataset: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    folders = [corrupted_predictions(tiny_dataset, tmp_path / f"alg{e}", e) for e in (3, 0, 4, 1, 2)]
    before = checksums(tiny_dataset)
    out = tmp_path / "cmp"
    assert pipeline_main(["compare", str(tiny_dataset), *map(str, folders), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Wilcoxon" in printed and "report:" in printed
    ranking = [row["algorithm"] for row in _rows(out / "ranking.csv")]
    assert ranking == ["alg0", "alg1", "alg2", "alg3", "alg4"]
    table = list(_rows(out / "comparison.csv"))
    assert [row["algorithm"] for row in table] == ranking and float(table[0]["mean Dice"]) == pytest.approx(1.0)
    tests = list(_rows(out / "wilcoxon.csv"))
    assert [(t["better"], t["worse"]) for t in tests] == list(zip(ranking, ranking[1:], strict=False))
    result = json.loads((out / "comparison.json").read_text())
    assert set(result["algorithms"]) == set(ranking)
    for name in ranking:  # each algorithm's own evaluation beside the comparison
        assert (out / name / "metrics.csv").is_file() and (out / name / "summary.json").is_file()
    assert (out / "comparison_boxplot.png").stat().st_size > 10_000
    html = (out / "report.html").read_text()
    assert html.count("<tr>") >= 5 + 5 + 4 + len(list(tiny_dataset.glob("*/"))) and "data:image/png;base64" in html
    assert checksums(tiny_dataset) == before


def test_compare_accepts_a_folder_of_reference_labels_with_a_scheme(tiny_dataset: Path, tmp_path: Path) -> None:
    refs = tmp_path / "labels"
    refs.mkdir()
    for label in sorted(tiny_dataset.rglob("*_seg.nii.gz")):
        shutil.copy(label, refs / f"{label.parent.name}.nii.gz")
    folders = [corrupted_predictions(tiny_dataset, tmp_path / f"alg{e}", e) for e in (2, 0)]
    out = tmp_path / "cmp"
    assert pipeline_main(["compare", str(refs), *map(str, folders), "--out", str(out), "--scheme", "brats"]) == 0
    assert [row["algorithm"] for row in _rows(out / "ranking.csv")] == ["alg0", "alg2"]


def test_a_region_only_some_algorithms_were_scored_on_ranks_every_algorithm() -> None:
    scores = {"a": {"c0": {"WT": {"dice": 0.9, "hd95": 2.0}}},
              "b": {"c0": {"WT": {"dice": 0.9, "hd95": 2.0}, "label_7": {"dice": 0.0, "hd95": 373.0}}}}
    # WT ties (1.5 each, twice); label_7: b's 0 against a's missing value, which ranks last
    assert brats_ranking(scores) == {"b": pytest.approx(1.25), "a": pytest.approx(1.75)}


@pytest.mark.parametrize("order", [pytest.param(("clean", "stray"), id="clean_first"),
                                   pytest.param(("stray", "clean"), id="stray_first")])
def test_compare_under_labels_scores_every_algorithm_on_every_label_value(tiny_dataset: Path, tmp_path: Path,
                                                                          order: tuple[str, str]) -> None:
    import nibabel as nib

    folders = {"clean": corrupted_predictions(tiny_dataset, tmp_path / "clean", 0),
               "stray": corrupted_predictions(tiny_dataset, tmp_path / "stray", 0)}
    first = sorted(folders["stray"].glob("*.nii.gz"))[0]  # one false blob of a value the reference never has
    img = nib.load(first)
    seg = np.asarray(img.dataobj).copy()
    seg[:3, :3, :3] = 7
    nib.save(nib.Nifti1Image(seg, img.affine, img.header), first)
    out = tmp_path / "cmp"
    assert pipeline_main(["compare", str(tiny_dataset), *(str(folders[n]) for n in order), "--names", *order,
                          "--out", str(out), "--scheme", "labels"]) == 0
    assert [row["algorithm"] for row in _rows(out / "ranking.csv")] == ["clean", "stray"]
    table = {row["algorithm"]: row for row in _rows(out / "comparison.csv")}
    n = len(list(folders["clean"].glob("*.nii.gz")))
    # label 7, by hand: clean has it in no case (both empty: Dice 1 each), stray in one case only (Dice 0 there)
    assert float(table["clean"]["Dice label_7"]) == pytest.approx(1.0)
    assert float(table["stray"]["Dice label_7"]) == pytest.approx((n - 1) / n)
    for name in order:  # every other value is perfect for both
        assert all(float(table[name][f"Dice label_{v}"]) == pytest.approx(1.0) for v in (1, 2, 4))


@pytest.mark.parametrize(("out_at", "names", "expected"), [
    pytest.param("p2", None, "is the input folder", id="out_is_another_algorithms_folder"),
    pytest.param("p1/cmp", None, "lies inside the input folder", id="out_inside_a_prediction_folder"),
    pytest.param("cmp", ["{p2}", "b"], "--names", id="a_name_is_a_path_to_an_input"),
    pytest.param("cmp", ["../p2", "b"], "--names", id="a_name_climbs_out"),
    pytest.param("cmp", ["p1", "p2"], None, id="plain_names_are_fine"),
])
def test_compare_writes_no_evaluation_among_any_algorithms_predictions(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, out_at: str, names: list[str] | None,
        expected: str | None) -> None:
    p1 = corrupted_predictions(tiny_dataset, tmp_path / "p1", 0)
    p2 = corrupted_predictions(tiny_dataset, tmp_path / "p2", 1)
    argv = ["compare", str(tiny_dataset), str(p1), str(p2), "--out", str(tmp_path / out_at)]
    if names:
        argv += ["--names", *(n.format(p2=p2) for n in names)]
    before = checksums(tiny_dataset, p1, p2)
    rc = pipeline_main(argv)
    err = capsys.readouterr().err.strip()
    if expected is None:
        assert rc == 0 and (tmp_path / out_at / "p2" / "metrics.csv").is_file()
        assert checksums(tiny_dataset, p1, p2) == before
        return
    assert rc == 2 and expected in err.splitlines()[-1]
    assert checksums(tiny_dataset, p1, p2) == before  # nothing written into, or changed in, any input


def test_a_comparison_of_other_algorithms_is_not_replaced_without_overwrite(tiny_dataset: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    algs = {e: corrupted_predictions(tiny_dataset, tmp_path / f"alg{e}", e) for e in (0, 1, 2)}
    out = tmp_path / "cmp"

    def run(*extra: str, algorithms: tuple[int, ...]) -> int:
        return pipeline_main(["compare", str(tiny_dataset), *(str(algs[e]) for e in algorithms), "--out", str(out),
                              *extra])

    assert run(algorithms=(0, 1)) == 0
    first = (out / "comparison.json").read_bytes()
    assert run(algorithms=(0, 1)) == 0  # the same comparison again
    capsys.readouterr()
    assert run(algorithms=(0, 2)) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds the comparison of alg0, alg1" in line and "--overwrite to replace it" in line
    assert (out / "comparison.json").read_bytes() == first and not (out / "alg2").exists()  # refused before scoring
    assert run("--overwrite", algorithms=(0, 2)) == 0
    assert list(json.loads((out / "comparison.json").read_text())["algorithms"]) == ["alg0", "alg2"]


def test_a_correct_empty_answer_under_labels_is_scored_and_ranks_first(tiny_dataset: Path, tmp_path: Path) -> None:
    """A case whose reference and prediction hold no label wrote no row under --scheme labels, so that algorithm
    counted as missing there and ranked below one with a false label (and the paired test lost the case)."""
    import nibabel as nib

    refs = tmp_path / "labels"
    refs.mkdir()
    labels = sorted(tiny_dataset.rglob("*_seg.nii.gz"))[:2]
    for label in labels:
        shutil.copy(label, refs / f"{label.parent.name}.nii.gz")
    empty_case = labels[1].parent.name
    img = nib.load(refs / f"{empty_case}.nii.gz")  # this case has no tumour at all
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine, img.header), refs / f"{empty_case}.nii.gz")
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    for folder in (right, wrong):
        shutil.copytree(refs, folder)
    seg = np.zeros(img.shape, np.uint8)
    seg[:3, :3, :3] = 1  # a false label in the empty case
    nib.save(nib.Nifti1Image(seg, img.affine, img.header), wrong / f"{empty_case}.nii.gz")
    out = tmp_path / "cmp"
    assert pipeline_main(["compare", str(refs), str(wrong), str(right), "--names", "wrong", "right",
                          "--out", str(out), "--scheme", "labels"]) == 0
    assert [row["algorithm"] for row in _rows(out / "ranking.csv")] == ["right", "wrong"]
    table = {row["algorithm"]: row for row in _rows(out / "comparison.csv")}
    assert float(table["right"]["Dice label_1"]) == pytest.approx(1.0)
    assert float(table["wrong"]["Dice label_1"]) == pytest.approx(0.5)  # 1 on the first case, 0 on the empty one
    (test,) = list(_rows(out / "wilcoxon.csv"))
    assert int(test["n"]) == 2 and int(test["n_differing"]) == 1
