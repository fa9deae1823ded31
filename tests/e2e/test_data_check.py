"""End to end through the MONAI CLI (or the scripts a user runs): data check."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from pipeline.data.layouts import Case, discover_cases
from tests.helpers import TINY_ARGS, cli_overrides, parse_bundle, run_bundle

TINY = [*TINY_ARGS, "--check_jobs", "1"]


BAD = 1  # the faults go into the second case of each fixture


def _copy(layout_datasets: dict[str, Path], layout: str, dest: Path) -> tuple[Path, list[Case]]:
    root = dest / layout
    shutil.copytree(layout_datasets[layout], root)
    return root, discover_cases(root)


def _display(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name in ("imagesTr", "labelsTr") else p.name


def _rewrite(path: str, data: np.ndarray | None = None, affine: np.ndarray | None = None,
             zooms: tuple[float, ...] | None = None) -> None:
    """Save ``path`` again with new voxels, affine or header zooms (the rest of the header kept)."""
    img = nib.load(path)
    arr = np.asarray(img.dataobj) if data is None else data
    header = img.header.copy()
    header.set_data_dtype(arr.dtype)
    out = nib.Nifti1Image(arr, img.affine if affine is None else affine, header=header)
    if affine is not None:
        out.set_sform(affine, code=1)
        out.set_qform(affine, code=1)
    if zooms is not None:
        out.header["pixdim"][1:4] = zooms
    nib.save(out, path)


def _image(case: Case) -> str:
    """The file holding the T1ce contrast (a BraTS file, or the MSD 4D image)."""
    return case.images[1 if case.channel_index is None else 0]


def _truncated_gzip(case: Case) -> tuple[str, str, str]:
    path = _image(case)
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: len(raw) // 2])
    return path, "error", rf"{re.escape(_display(path))} is truncated or corrupt \(EOFError"


def _shape_mismatch(case: Case) -> tuple[str, str, str]:
    path = case.label
    _rewrite(path, np.asarray(nib.load(path).dataobj)[:, :, :20])
    return path, "error", rf"{re.escape(_display(path))} has shape \(32, 32, 20\) but .* has \(32, 32, 24\)"


def _bundle(run_id: str, *args: str) -> subprocess.CompletedProcess:
    return run_bundle(run_id, cli_overrides(args), check=False)


def test_bundle_inference_writes_every_valid_case_and_exits_1_naming_the_bad_one(layout_datasets,
                                                                                 tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "msd", tmp_path)
    path, _, _ = _truncated_gzip(cases[BAD])
    parser = parse_bundle("inference", {"unet_channels": [8, 16, 32], "num_res_units": 1, "device": "cpu"})
    (tmp_path / "run" / "models").mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "run" / "models" / "model.pt")
    out = tmp_path / "seg"
    result = _bundle("inference", "--dataset_dir", str(root), "--run_dir", str(tmp_path / "run"),
                     "--output_dir", str(out), *TINY)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["BRATS_001.nii.gz", "BRATS_003.nii.gz"]
    summary = log[log.index("inference: wrote 2 case(s)"):]
    assert "1 case(s) failed and were skipped" in summary
    assert "case BRATS_002: imagesTr/BRATS_002.nii.gz is truncated or corrupt" in summary, summary
    seg = nib.load(out / "BRATS_001.nii.gz")
    assert seg.shape == (32, 32, 24) and set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3}
    assert Path(path).exists()  # the input is left alone


def test_bundle_training_exits_before_caching_with_the_checks_messages(layout_datasets, tmp_path: Path) -> None:
    root, cases = _copy(layout_datasets, "brats2021", tmp_path)
    _shape_mismatch(cases[0])
    result = _bundle("training", "--dataset_dir", str(root), "--run_dir", str(tmp_path / "run"),
                     "--folds", "2", "--epochs", "1", *TINY)
    assert result.returncode != 0
    assert "case BraTS2021_00000: BraTS2021_00000_seg.nii.gz has shape (32, 32, 20)" in result.stderr
    assert not (tmp_path / "run" / "models").exists()
