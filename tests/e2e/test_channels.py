"""Channel identity as data: the run records its channels' names, inference matches the data's by name (a reordered
nnU-Net set segments the same), never by position, and refuses other channels; a 4D image whose channel axis is not
last is refused wherever it is read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.bundle import command
from pipeline.data.synthetic import write_dataset
from tests.helpers import REPO, TINY_IDS, checksums, last_line
from tests.warm import run_module

SHAPE = (48, 48, 32)


def _bundle(run_id: str, **ids: object) -> subprocess.CompletedProcess:
    return run_module(command(run_id, {**TINY_IDS, **ids}), capture_output=True, text=True, cwd=REPO,
                          timeout=600)


@pytest.fixture(scope="module")
def two_channel_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An nnU-Net set of (T1ce, FLAIR) and a model trained on it."""
    base = tmp_path_factory.mktemp("channels")
    write_dataset(base / "t1ce_flair", cases=4, shape=SHAPE, seed=3, layout="nnunet", channels=["T1ce", "FLAIR"])
    result = _bundle("training", dataset_dir=base / "t1ce_flair", run_dir=base / "run", folds=2, epochs=1,
                     batch_size=1)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "t1ce_flair", base / "run"


def test_a_set_listing_the_channels_in_another_order_segments_the_same(two_channel_run, tmp_path: Path) -> None:
    data, run = two_channel_run
    swapped = tmp_path / "flair_t1ce"
    write_dataset(swapped, cases=4, shape=SHAPE, seed=3, layout="nnunet", channels=["FLAIR", "T1ce"])
    for folder, out in ((data, tmp_path / "seg_a"), (swapped, tmp_path / "seg_b")):
        result = _bundle("inference", dataset_dir=folder, run_dir=run, output_dir=out)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "reordered by name" in result.stdout + result.stderr
    for a in sorted((tmp_path / "seg_a").glob("*.nii.gz")):
        b = tmp_path / "seg_b" / a.name
        assert np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj)), a.name


def test_a_set_of_other_channels_is_refused_naming_both(two_channel_run, tmp_path: Path) -> None:
    _, run = two_channel_run
    other = tmp_path / "t1ce_t2"
    write_dataset(other, cases=2, shape=SHAPE, seed=3, layout="nnunet", channels=["T1ce", "T2"])
    before = checksums(other)
    result = _bundle("inference", dataset_dir=other, run_dir=run, output_dir=tmp_path / "seg")
    line = last_line(result)
    assert result.returncode != 0 and line.startswith("error: ") and "T1ce, FLAIR" in line and "T1ce, T2" in line
    assert checksums(other) == before and not list((tmp_path / "seg").glob("*.nii.gz"))


def test_a_decathlon_image_with_its_channels_not_last_is_refused_by_the_check_and_inference(
        layout_datasets: dict, trained_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "msd"
    shutil.copytree(layout_datasets["msd"], data)
    image = sorted((data / "imagesTr").glob("*.nii.gz"))[0]
    img = nib.load(image)
    nib.save(nib.Nifti1Image(np.moveaxis(np.asarray(img.dataobj), -1, 2), img.affine), image)  # (X, Y, 4, Z)
    before = checksums(data)
    check = run_module([sys.executable, "-m", "pipeline", "check", str(data), "--jobs", "1"], capture_output=True,
                           text=True, cwd=REPO, timeout=300)
    assert check.returncode == 1 and "stored with its channels on axis 2" in check.stdout
    result = _bundle("inference", dataset_dir=data, run_dir=trained_run, output_dir=tmp_path / "seg")
    assert result.returncode != 0 and "stored with its channels on axis 2" in result.stdout + result.stderr
    assert not (tmp_path / "seg" / image.name).exists()  # no (X, Y, 4) "segmentation"
    assert checksums(data) == before


def _evaluate(data: Path, run: Path, seg: Path, out: Path) -> subprocess.CompletedProcess:
    return run_module(command("evaluate", {"dataset_dir": data, "run_dir": run, "output_dir": seg, "eval_dir": out}),
                      capture_output=True, text=True, cwd=REPO, timeout=600)


def test_segmentations_of_data_in_another_channel_order_are_its_own_until_its_channel_names_change(
        two_channel_run, tmp_path: Path) -> None:
    """A model reads (FLAIR, T1ce) data in its own order (T1ce, FLAIR): its segmentations are recorded as made from
    the data's files channel by channel, so they are skipped when run again and scored against that data; naming
    the same two files the other way round in dataset.json makes them stale: evaluation refuses them, and inference
    makes them again (the same model: its id holds the labels, not where dataset.json lies or how it lists the
    channels)."""
    _, run = two_channel_run
    data, seg = tmp_path / "flair_t1ce", tmp_path / "seg"
    write_dataset(data, cases=2, shape=SHAPE, seed=3, layout="nnunet", channels=["FLAIR", "T1ce"])
    assert _bundle("inference", dataset_dir=data, run_dir=run, output_dir=seg).returncode == 0
    again = _bundle("inference", dataset_dir=data, run_dir=run, output_dir=seg)
    assert again.returncode == 0 and "wrote 0 case(s)" in again.stdout + again.stderr
    evaluated = _evaluate(data, run, seg, tmp_path / "eval")
    assert evaluated.returncode == 0, last_line(evaluated)
    meta = json.loads((data / "dataset.json").read_text())
    meta["channel_names"] = {"0": "T1ce", "1": "FLAIR"}  # the same files, named the other way round
    (data / "dataset.json").write_text(json.dumps(meta))
    stale = _evaluate(data, run, seg, tmp_path / "eval2")
    assert stale.returncode != 0 and "stale" in last_line(stale) and last_line(stale).startswith("error: ")
    redo = _bundle("inference", dataset_dir=data, run_dir=run, output_dir=seg)  # the same model: made again
    assert redo.returncode == 0 and "wrote 2 case(s)" in redo.stdout + redo.stderr
    assert "whose inputs changed since" in redo.stdout + redo.stderr
