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


@pytest.mark.parametrize(("second", "named"), [
    pytest.param({"network": {"_target_": "SegResNet"}}, "network", id="another_network"),
    pytest.param({"ids": {"spacing": [1, 1, 1]}}, "spacing", id="another_grid"),
    pytest.param({"ids": {"normalization": "percentile"}}, "normalization", id="another_normalisation"),
    pytest.param({"ids": {"channels": ["FLAIR", "T1", "T1ce", "T2"]}}, "channels", id="another_channel_order"),
])
def test_folds_of_different_models_are_refused_before_any_inference(tiny_dataset, tmp_path, second, named):
    """One out-of-fold table scores one configuration: folds whose records differ in what `model_interface`
    compares (as the fold ensemble does) are refused, naming the difference, before anything is written."""
    import json

    from pipeline.core.errors import UserError
    from pipeline.data.datalist import write_datalist
    from pipeline.evaluation.crossval import cross_validation_summary

    run = tmp_path / "cv"
    write_datalist(tiny_dataset, run / "datalist.json", folds=2)
    base = {"network": {"_target_": "UNet"}, "ids": {"label_scheme": "brats", "spacing": [2, 2, 2],
                                                      "normalization": "zscore",
                                                      "channels": ["T1", "T1ce", "T2", "FLAIR"]}}
    other = {**base, **{k: v for k, v in second.items() if k != "ids"},
             "ids": {**base["ids"], **second.get("ids", {})}}
    for f, record in ((0, base), (1, other)):
        (run / f"fold_{f}" / "models").mkdir(parents=True)
        (run / f"fold_{f}" / "models" / "model.pt").write_bytes(b"")
        (run / f"fold_{f}" / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=rf"fold 1 of .* another network, data or recipe than fold 0 \(.*{named}"):
        cross_validation_summary(run)
    assert not (run / "cv").exists()


def test_a_fold_recorded_by_older_code_is_compared_on_what_both_records_state(tiny_dataset, tmp_path, monkeypatch):
    """A field one record lacks (a fold trained before it was recorded) is no difference: the folds go on to
    inference."""
    import json

    from pipeline.data.datalist import write_datalist
    from pipeline.evaluation import crossval

    run = tmp_path / "cv"
    write_datalist(tiny_dataset, run / "datalist.json", folds=2)
    full = {"network": {"_target_": "UNet"}, "ids": {"label_scheme": "brats", "spacing": [2, 2, 2],
                                                      "channels": ["T1", "T1ce", "T2", "FLAIR"]}}
    for f, record in ((0, full), (1, {"ids": {"spacing": [2, 2, 2]}})):
        (run / f"fold_{f}" / "models").mkdir(parents=True)
        (run / f"fold_{f}" / "models" / "model.pt").write_bytes(b"")
        (run / f"fold_{f}" / "run.json").write_text(json.dumps(record))

    class Reached(Exception):
        pass

    def inference(*_, **__):
        raise Reached
    monkeypatch.setattr(crossval, "_bundle_inference", inference)
    with pytest.raises(Reached):
        crossval.cross_validation_summary(run)


@pytest.mark.parametrize(("recorded", "fast", "expected"), [
    pytest.param(["common.yaml", "train.yaml", "variants/fast.yaml", "variants/budget.yaml"], False,
                 ["common.yaml", "inference.yaml", "fast.yaml", "budget.yaml"], id="the_budget_recipe_it_trained_with"),
    pytest.param(["common.yaml", "train.yaml", "networks/segresnet.yaml"], True,
                 ["common.yaml", "inference.yaml", "segresnet.yaml"], id="its_network_and_not_fast"),
    pytest.param(None, True, ["common.yaml", "inference.yaml", "fast.yaml"], id="no_record_of_files_takes_fast"),
])
def test_each_fold_segments_with_the_inference_recipe_its_run_names(recorded, fast, expected, tiny_dataset, tmp_path,
                                                                    monkeypatch):
    """As ``pipeline infer --run`` would (`pipeline.bundle.inference_files`): the budget recipe's post-processing
    scored out of fold is the one the model is used with."""
    import json
    from pathlib import Path

    from pipeline.core.config import config_files_in_argv
    from pipeline.core.errors import UserError
    from pipeline.data.datalist import write_datalist
    from pipeline.evaluation import crossval
    from tests.helpers import CONFIGS

    run = tmp_path / "cv"
    write_datalist(tiny_dataset, run / "datalist.json", folds=2)
    (run / "fold_0" / "models").mkdir(parents=True)
    (run / "fold_0" / "models" / "model.pt").write_bytes(b"x")
    record = {"ids": {"label_scheme": "brats"}}
    if recorded is not None:
        record["config_files"] = [str(CONFIGS / f) for f in recorded]
    (run / "fold_0" / "run.json").write_text(json.dumps(record))
    launched = []
    monkeypatch.setattr(crossval, "run_child", lambda cmd, env=None: launched.append(cmd) or 3)
    with pytest.raises(UserError, match="inference of fold 0 .* failed with exit code 3"):
        crossval.cross_validation_summary(run, folds=[0], fast=fast)
    assert [Path(f).name for f in config_files_in_argv([str(c) for c in launched[0]])] == expected


@pytest.mark.parametrize(("folds", "expected"), [
    ([0, 1, 2, 3, 4], ("cv/eval", "cv_summary.json")),
    ([0, 1], ("cv/eval_folds_0_1", "cv_summary_folds_0_1.json")),
    ([1, 0], ("cv/eval_folds_0_1", "cv_summary_folds_0_1.json")),
])
def test_an_out_of_fold_table_is_named_by_the_folds_it_covers_of_the_datalists(tmp_path, folds, expected):
    """Named after the folds trained so far, the table of two folds took cv_summary.json, which the table of all five
    replaced later under the same name; the datalist's folds decide the plain name."""
    from pipeline.evaluation.crossval import cv_outputs

    eval_dir, summary = cv_outputs(tmp_path, folds, [0, 1, 2, 3, 4])
    assert (eval_dir.relative_to(tmp_path).as_posix(), summary.name) == expected


@pytest.mark.parametrize("overwrite", [False, True], ids=["refused", "overwrite_replaces_them"])
@pytest.mark.parametrize("theirs", ["cv/eval/metrics.csv", "cv/eval/report.html", "cv_summary.json",
                                    "another_runs_cv_summary.json", "an_annotated_cv_summary.json",
                                    "this_runs_own_cv_summary.json"])
def test_a_users_file_of_a_name_the_table_writes_is_refused_before_any_inference(tiny_dataset, tmp_path, monkeypatch,
                                                                                 theirs, overwrite):
    """`pipeline cv` replaced a user's cv_summary.json, cv/eval/metrics.csv and report.html: cv evaluates with
    overwrite, so the evaluation's own refusal never ran."""
    import json

    from pipeline.core.errors import UserError
    from pipeline.data.datalist import write_datalist
    from pipeline.evaluation import crossval

    run = tmp_path / "cv"
    write_datalist(tiny_dataset, run / "datalist.json", folds=2)
    for f in (0, 1):  # every fold trained: the table is cv/eval and cv_summary.json
        (run / f"fold_{f}" / "models").mkdir(parents=True)
        (run / f"fold_{f}" / "models" / "model.pt").write_bytes(b"x")
        (run / f"fold_{f}" / "run.json").write_text(json.dumps({"ids": {"label_scheme": "brats"}}))
    content = "mine"
    own = theirs.startswith("this_runs")
    if theirs.startswith(("another", "an_annotated", "this_runs")):  # the table's shape: this run's, or not
        seg = (tmp_path / "other" if theirs.startswith("another") else run) / "cv"
        content = json.dumps({"folds": {}, "segmentations": str(seg / "seg"), "evaluation": str(seg / "eval"),
                              "overall": {}, "mean_dice": 0.8, **({"note": "mine"} if "annotated" in theirs else {})})
        theirs = "cv_summary.json"
    (run / theirs).parent.mkdir(parents=True, exist_ok=True)
    (run / theirs).write_text(content)

    class Reached(Exception):
        pass

    def inference(*_, **__):
        raise Reached
    monkeypatch.setattr(crossval, "_bundle_inference", inference)
    if overwrite or own:  # asked for by name, or the table's own: on to inference
        with pytest.raises(Reached):
            crossval.cross_validation_summary(run, overwrite=True)
    else:
        with pytest.raises(UserError, match=rf"{theirs.split('/')[-1]}.*--overwrite"):
            crossval.cross_validation_summary(run)
        assert (run / theirs).read_text() == content
