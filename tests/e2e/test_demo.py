"""End to end through the MONAI CLI (or the scripts a user runs): demo."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import pytest

from pipeline import demo

#: What MONAI prints that the demo and the verbs silence or avoid (pipeline.monai_workarounds.QUIET, labels: null)
MONAI_NOTICES = ("UserWarning", "FutureWarning", "Not all config files", "Detected deprecated name",
                 "Can't merge entry", "parsing config_file")


@pytest.mark.usefixtures("cold_children")  # MONAI's notices of a fresh interpreter, as the user sees them
def test_demo_runs_every_stage_through_the_bundle_and_ends_with_the_demo_line(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    summary = demo.run_demo(data_dir=str(data), run_dir=str(run), cases=8, shape=(48, 48, 32), epochs=1)
    out, err = capfd.readouterr()
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert len(commands) == 3 and all(" -m monai.bundle run " in c for c in commands)
    assert [c.count("variants/fast.yaml") for c in commands] == [1, 1, 0]  # training and inference, not evaluation
    for notice in MONAI_NOTICES:  # nothing but our own lines and the progress bars
        assert notice not in out + err, notice
    assert "your own data" in out and out.count(" -m pipeline ") >= 3
    for stage in ("synthetic data", "datalist", "training", "inference", "evaluation"):
        assert f"--- {stage}: " in out
    line = out.strip().splitlines()[-1]
    assert re.fullmatch(r"demo: mean Dice \d\.\d{3} \(ET \d\.\d{3}, TC \d\.\d{3}, WT \d\.\d{3}\) in \d+ s", line)
    dice = {r: summary["regions"][r]["dice"]["mean"] for r in ("ET", "TC", "WT")}
    assert f"{sum(dice.values()) / 3:.3f}" in line  # the line reports the evaluation's own figures
    segmentations = sorted((run / "seg").glob("*.nii.gz"))
    assert len(segmentations) == 2  # fold 0 of 4 folds over 8 cases
    assert nib.load(segmentations[0]).shape == (48, 48, 32)
    assert (run / "models" / "model.pt").is_file() and (run / "eval" / "summary.json").is_file()
    # make clean deletes what the demo wrote (demo.DEMO_FILES) and keeps the rest: the list is the demo's
    assert set(demo.demo_files(run)) == {p for p in run.rglob("*") if p.is_file()}
    (run / "seg_other").mkdir()  # the user's segmentations of other data with the demo's model
    (run / "seg_other" / "case.nii.gz").write_bytes(b"theirs")
    (run / "NOTES.txt").write_text("theirs")
    (run / "models" / "model.onnx").write_bytes(b"their export")
    kept = [f"kept 3 file(s) in {run} that the demo did not write (NOTES.txt, models/model.onnx, seg_other/case.nii.gz)"
            ": delete them by name"]
    assert demo.clean_demo(run, data) == kept
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [
        "NOTES.txt", "models", "models/model.onnx", "seg_other", "seg_other/case.nii.gz"]
    assert not data.exists()
    assert demo.clean_demo(run, data) == kept  # again: the same, nothing more to delete
