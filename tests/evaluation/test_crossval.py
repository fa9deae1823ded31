"""Cross-validation summary: each fold's model segments its own validation cases, all evaluated together."""

from __future__ import annotations

import csv
import math

import pytest

from pipeline.evaluation.crossval import fold_table, format_cv_table
from tests.helpers import TINY_ARGS


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


TINY = [*TINY_ARGS, "--epochs", "1", "--batch_size", "1"]




def test_folds_trained_with_different_label_schemes_are_refused_before_any_inference(tiny_dataset, tmp_path):
    import json

    from pipeline.core.errors import UserError
    from pipeline.data.datalist import write_datalist
    from pipeline.evaluation.crossval import cross_validation_summary

    run = tmp_path / "cv"
    write_datalist(tiny_dataset, run / "datalist.json", folds=2)
    for f, scheme in ((0, "brats"), (1, "brats2023")):
        (run / f"fold_{f}" / "models").mkdir(parents=True)
        (run / f"fold_{f}" / "models" / "model.pt").write_bytes(b"")
        (run / f"fold_{f}" / "run.json").write_text(json.dumps({"ids": {"label_scheme": scheme}}))
    with pytest.raises(UserError, match=r"different label schemes \(fold 0: brats, fold 1: brats2023\)"):
        cross_validation_summary(run)
    assert not (run / "cv").exists()
