"""Cross-validation summary: each fold's model segments its own validation cases, all evaluated together."""

from __future__ import annotations

import csv
import json
import math

import pytest

from pipeline.evaluation.crossval import fold_table, format_cv_table
from tests.conftest import cli_overrides, run_bundle


def test_the_fold_table_averages_each_folds_own_cases(tmp_path):
    rows = [("a", "ET", 1.0, 0.0), ("a", "WT", 0.5, 2.0), ("b", "ET", 0.0, 373.0), ("b", "WT", 0.7, 1.0),
            ("c", "ET", 0.6, 4.0), ("c", "WT", math.nan, math.nan)]
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "region", "dice", "hd95"])
        w.writerows(rows)
    table = fold_table(path, {"a": 0, "b": 0, "c": 1})
    assert table["folds"]["0"]["ET"] == {"dice": 0.5, "hd95": 186.5, "cases": 2}
    assert table["folds"]["1"]["WT"]["cases"] == 1 and math.isnan(table["folds"]["1"]["WT"]["dice"])
    assert table["overall"]["ET"]["dice"] == pytest.approx((1.0 + 0.0 + 0.6) / 3)
    assert table["overall"]["WT"]["dice"] == pytest.approx((0.5 + 0.7) / 2)  # NaN (no value) left out
    text = format_cv_table(table)
    assert text.splitlines()[-1].split()[:2] == ["all", "3"]


TINY = ["--roi_size", "[32,32,32]", "--unet_channels", "[8,16,32]", "--num_res_units", "1", "--num_workers", "0",
        "--device", "cpu", "--epochs", "1", "--batch_size", "1"]


@pytest.mark.slow
def test_out_of_fold_evaluation_scores_every_case_once_by_the_fold_that_never_trained_on_it(tiny_dataset, tmp_path):
    from pipeline.__main__ import main
    from pipeline.data.datalist import write_datalist

    run = tmp_path / "cv"
    dl = write_datalist(tiny_dataset, run / "datalist.json", folds=2)
    for f in (0, 1):
        run_bundle("training", cli_overrides(["--datalist", str(run / "datalist.json"), "--fold", str(f),
                                              "--run_dir", str(run / f"fold_{f}"), *TINY]))
    assert main(["cv", str(run), "--set", "num_workers", "0", "device", "cpu"]) == 0
    summary = json.loads((run / "cv_summary.json").read_text())
    fold_of = {it["case"]: it["fold"] for it in dl["training"]}
    assert sorted(p.name[: -len(".nii.gz")] for p in (run / "cv" / "seg").glob("*.nii.gz")) == sorted(fold_of)
    provenance = json.loads((run / "cv" / "seg" / "provenance.json").read_text())
    models = {f: {provenance[c]["model"] for c, g in fold_of.items() if g == f} for f in (0, 1)}
    assert all(len(m) == 1 for m in models.values()) and models[0] != models[1]  # one model per fold, each its own
    assert summary["overall"]["WT"]["cases"] == len(fold_of)
    assert {k: v["WT"]["cases"] for k, v in summary["folds"].items()} == {"0": 2, "1": 2}
