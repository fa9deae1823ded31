"""End to end through the MONAI CLI (or the scripts a user runs): crossval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import TINY_ARGS, checksums, cli_overrides, run_bundle

TINY = [*TINY_ARGS, "--epochs", "1", "--batch_size", "1"]


def test_out_of_fold_evaluation_scores_every_case_once_by_the_fold_that_never_trained_on_it(tiny_dataset, tmp_path,
                                                                                             capsys):
    from pipeline.__main__ import main
    from pipeline.core.figures import plt, save_figure
    from pipeline.core.provenance import Provenance
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
    provenance = Provenance(run / "cv" / "seg")
    models = {f: {provenance.model_of(c) for c, g in fold_of.items() if g == f} for f in (0, 1)}
    assert all(len(m) == 1 for m in models.values()) and models[0] != models[1]  # one model per fold, each its own
    assert summary["overall"]["WT"]["cases"] == len(fold_of)
    assert {k: v["WT"]["cases"] for k, v in summary["folds"].items()} == {"0": 2, "1": 2}
    assert (run / "cv" / "eval" / "report.html").is_file()
    # a subset of the folds scores under its own names: the summary of every fold is not replaced
    kept = (run / "cv_summary.json").read_bytes()
    assert main(["cv", str(run), "--folds", "0", "--set", "num_workers", "0", "device", "cpu"]) == 0
    assert (run / "cv_summary.json").read_bytes() == kept
    subset = json.loads((run / "cv_summary_folds_0.json").read_text())
    assert set(subset["folds"]) == {"0"} and subset["overall"]["WT"]["cases"] == 2
    assert (run / "cv" / "eval" / "metrics.csv").is_file() and (run / "cv" / "eval_folds_0" / "metrics.csv").is_file()
    # --dataset_dir of other labels (a corrected copy): the references are the datalist's, so it is refused, not
    # silently ignored (it only roots a model-zoo list's relative paths)
    copy = Path(shutil.copytree(tiny_dataset, tmp_path / "corrected"))
    before = checksums(run)
    capsys.readouterr()
    assert main(["cv", str(run), "--dataset_dir", str(copy), "--set", "num_workers", "0", "device", "cpu"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"lies outside --dataset_dir {copy}" in line and "drop --dataset_dir" in line
    assert checksums(run) == before
    # pictures drawn from these scores (pipeline plot evaluation) go when the table is scored again: not kept
    # beside new scores they no longer show
    stale = [run / "cv" / "eval" / "dice_boxplot.png", run / "cv" / "eval" / "overlays" / "x.png"]
    for picture in stale:  # as this package drew them (its mark): a picture of the user's would stay
        picture.parent.mkdir(exist_ok=True)
        save_figure(plt.figure(), picture)
    # its own root reaches each fold's inference too (it roots a model-zoo list's relative paths there)
    assert main(["cv", str(run), "--dataset_dir", str(tiny_dataset), "--set", "num_workers", "0", "device", "cpu"]) == 0
    assert f"dataset_dir {tiny_dataset}" in capsys.readouterr().out.replace("--dataset_dir ", "dataset_dir ")
    assert not any(p.exists() for p in stale) and (run / "cv" / "eval" / "report.html").is_file()
