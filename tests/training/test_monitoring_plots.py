"""The epoch summary line, history.csv, and the pictures (curves, box plot, overlays) are written and right."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.evaluation.plots import plot_case_overlay, plot_dice_boxplot, tumour_centre
from pipeline.training.monitoring import HISTORY_COLUMNS, EpochSummary, plot_training_curves


def _engine(epoch: int, lr: float) -> SimpleNamespace:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch, max_epochs=3, output=None), optimizer=opt)


def test_epoch_summary_logs_one_line_and_appends_history(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    evaluator = SimpleNamespace(state=SimpleNamespace(epoch=0, metrics={}))
    summary = EpochSummary(evaluator, history_file=str(tmp_path / "history.csv"))
    for epoch, losses in ((1, [1.0, 0.5]), (2, [0.25, 0.25])):
        engine = _engine(epoch, lr=0.1 * epoch)
        summary._epoch_started(engine)
        for loss in losses:
            engine.state.output = [{"loss": torch.tensor(loss)}]
            summary._iteration_completed(engine)
        if epoch == 2:  # validation ran this epoch
            evaluator.state.epoch = 2
            evaluator.state.metrics = {"val_mean_dice": 0.8, "val_dice_tc": 0.7, "val_dice_wt": 0.9, "val_dice_et": 0.8}
        with caplog.at_level(logging.INFO, logger="pipeline.train"):
            summary(engine)
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.train"]
    assert len(lines) == 2
    assert lines[0].startswith("epoch   1/3  loss 0.7500  lr 1.00e-01") and "Dice" not in lines[0]
    assert "Dice TC 0.700 WT 0.900 ET 0.800 mean 0.800" in lines[1]
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert [float(r["loss"]) for r in rows] == [0.75, 0.25]
    assert rows[0]["val_mean_dice"] == "" and float(rows[1]["val_mean_dice"]) == 0.8


def test_a_resumed_run_replaces_history_rows_from_the_epoch_it_resumes_at(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    first = EpochSummary(history_file=str(history))
    for epoch in (1, 2, 3):  # killed after writing epoch 3's row, before its checkpoint
        engine = _engine(epoch, lr=0.1)
        first._epoch_started(engine)
        first(engine)
    resumed = EpochSummary(history_file=str(history))  # a new process resumes from epoch 2's checkpoint
    for epoch in (3, 4):
        engine = _engine(epoch, lr=0.2)
        resumed._epoch_started(engine)
        resumed(engine)
    rows = list(csv.DictReader(history.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["lr"]) for r in rows] == [0.1, 0.1, 0.2, 0.2]


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_training_curves_png_from_history(tmp_path: Path) -> None:
    hist = tmp_path / "history.csv"
    with hist.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        w.writeheader()
        for e in range(1, 6):
            w.writerow({"epoch": e, "loss": 1 / e, "lr": 0.001, "seconds": 1,
                        **({"val_mean_dice": 0.5 + e / 20, "val_dice_tc": 0.5, "val_dice_wt": 0.6, "val_dice_et": 0.4}
                           if e % 2 == 0 else {})})
    assert _is_png(plot_training_curves(hist, tmp_path / "progress.png"))


def test_box_plot_png_from_metrics_csv(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    rows = ["case,region,dice,sensitivity,specificity,hd95,nsd,pred_voxels,ref_voxels"]
    rows += [f"c{i},{r},{0.5 + i / 10},1,1,1,1,1,1" for i in range(4) for r in ("ET", "TC", "WT")]
    csv_path.write_text("\n".join(rows) + "\n")
    assert _is_png(plot_dice_boxplot(csv_path, tmp_path / "box.png"))


def test_tumour_centre_is_the_centre_of_mass_of_the_tumour() -> None:
    label = np.zeros((10, 12, 14), np.uint8)
    label[2:5, 6:9, 10:13] = 2
    assert tumour_centre(label) == (3, 7, 11)
    assert tumour_centre(np.zeros((4, 6, 8))) == (2, 3, 4)


def test_case_overlay_png_on_a_synthetic_case(tiny_dataset: Path, tmp_path: Path) -> None:
    case = tiny_dataset / "BraTS2021_00000"
    images = {"FLAIR": case / "BraTS2021_00000_flair.nii.gz", "T1ce": case / "BraTS2021_00000_t1ce.nii.gz"}
    seg = case / "BraTS2021_00000_seg.nii.gz"
    assert nib.load(seg).get_fdata().any()
    assert _is_png(plot_case_overlay(images, tmp_path / "overlay.png", reference=seg, prediction=seg))


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "msd"])
def test_evaluation_pictures_in_every_layout(layout_datasets: dict[str, Path], tmp_path: Path, layout: str) -> None:
    """Box plot and overlays from an evaluation, with the references as predictions (MSD: 4D images)."""
    import shutil

    from pipeline.data.layouts import discover_cases
    from pipeline.evaluation.plots import plot_evaluation
    from pipeline.evaluation.regions import evaluate_folders

    root = layout_datasets[layout]
    pred = tmp_path / "seg"
    pred.mkdir()
    cases = discover_cases(root)
    for c in cases:
        shutil.copy(c.label, pred / f"{c.case_id}.nii.gz")
    scheme = {"brats2021": "brats", "brats2023": "brats2023", "msd": "msd"}[layout]
    evaluate_folders(pred, root, tmp_path / "eval", scheme=scheme)
    paths = plot_evaluation(tmp_path / "eval", pred, root, scheme=scheme)
    assert paths[0].name == "dice_boxplot.png"
    assert len(paths) == 1 + min(3, len(cases)) and all(_is_png(p) for p in paths)


def test_the_ignore_value_is_not_drawn_as_a_label_under_labels() -> None:
    from pipeline.evaluation.plots import _contour_regions

    ref = np.zeros((4, 4, 4), np.uint8)
    ref[0] = 1
    ref[3] = 2  # nnU-Net's ignore label of this reference
    names, masks = _contour_regions({"reference": ref, "prediction": (ref == 1).astype(np.uint8)}, "labels", ignore=2)
    assert [n for n, _ in names] == ["label_1"] and len(masks["reference"]) == 1
    names, _ = _contour_regions({"reference": ref}, "labels")
    assert [n for n, _ in names] == ["label_1", "label_2"]  # without a description every value is a label


_HISTORY = "epoch,loss,lr,val_mean_dice\n1,0.9,0.001,0.5\n"
_METRICS = "case,region,dice,hd95\na,ET,0.8,2.0\na,WT,0.9,1.0\n"


@pytest.mark.parametrize(("verb", "table", "said"), [
    ("boxplot", _HISTORY, "is not an evaluation's metrics.csv .* no column case, region, dice"),
    ("boxplot", "case,region,dice\na,ET,\na,WT,zero\n", "line 3: column dice holds 'zero', not a number"),
    ("curves", _METRICS, "is not a run's history.csv .* no column epoch, loss, lr"),
    ("curves", "epoch,loss,lr\n1,nan,x\n", "line 2: column lr holds 'x', not a number"),
    ("boxplot", None, "takes an evaluation's metrics.csv; .* does not exist"),
], ids=["boxplot of a history", "boxplot of a cell that is no number", "curves of metrics", "curves of a bad cell",
        "no file"])
def test_a_table_of_the_wrong_kind_is_refused_in_one_line_naming_the_table_expected(
        tmp_path: Path, verb: str, table: str | None, said: str, capsys: pytest.CaptureFixture) -> None:
    """`plot boxplot history.csv` ended in KeyError, a non-numeric cell in ValueError, and `plot curves metrics.csv`
    wrote a blank picture and exited 0."""
    from pipeline.__main__ import main

    path = tmp_path / "table.csv"
    if table is not None:
        path.write_text(table)
    assert main(["plot", verb, str(path), "--out", str(tmp_path / "out.png")]) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(said, last), last
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(("verb", "table", "picture"), [
    pytest.param("curves", ("history.csv", _HISTORY), "history.png", id="curves"),
    pytest.param("boxplot", ("metrics.csv", _METRICS), "dice_boxplot.png", id="boxplot"),
])
def test_the_default_picture_replaces_only_a_picture_this_package_drew(tmp_path: Path, verb: str, table: tuple,
                                                                       picture: str,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """A user's history.png beside their history.csv was replaced by `plot curves history.csv` (the default picture
    was taken for the table's own by its path alone). Ours carry a mark (`drawn_here`); theirs stay, unless
    --overwrite."""
    from pipeline.__main__ import main
    from pipeline.core.figures import drawn_here

    (tmp_path / table[0]).write_text(table[1])
    target = tmp_path / picture
    target.write_bytes(b"\x89PNG\r\n\x1a\n the user's own")
    assert main(["plot", verb, str(tmp_path / table[0])]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"error: {target} exists and carries no mark of this package's pictures (yours, or drawn before "
                    f"pictures were marked): plot {verb} never draws over a file it cannot tell its own; pass another "
                    "--out, or --overwrite to replace it")
    assert target.read_bytes() == b"\x89PNG\r\n\x1a\n the user's own"
    assert main(["plot", verb, str(tmp_path / table[0]), "--overwrite"]) == 0 and drawn_here(target)
    drawn = target.stat().st_mtime_ns
    assert main(["plot", verb, str(tmp_path / table[0])]) == 0  # its own picture, drawn again unasked
    assert drawn_here(target) and target.stat().st_mtime_ns >= drawn
