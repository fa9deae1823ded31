"""pipeline.core.files: whole files with the user's permissions, outputs never among the inputs, one writer per
folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.core.files import FolderLock, atomic_write_text, gzip_is_whole


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_(value: int) -> None:
        os.umask(value)

    yield set_
    os.umask(previous)


def _write_model(path: Path) -> None:
    from pipeline.model.weights import atomic_torch_save

    atomic_torch_save({"w": torch.zeros(2)}, path)


def _write_segmentation(path: Path) -> None:
    from pipeline.inference.predict import write_label_like

    path.parent.mkdir(parents=True, exist_ok=True)
    ref = path.parent / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), ref)
    write_label_like(np.zeros((4, 4, 4), np.uint8), ref, path, case="c")


@pytest.mark.parametrize("write", [
    pytest.param(_write_model, id="checkpoint"),
    pytest.param(_write_segmentation, id="segmentation"),
    pytest.param(lambda p: atomic_write_text(p, "x"), id="table"),
])
@pytest.mark.parametrize(("mask", "mode"), [pytest.param(0o022, 0o644, id="umask_022"),
                                             pytest.param(0o027, 0o640, id="umask_027")])
def test_written_files_follow_the_umask_like_any_other_file(tmp_path, umask, write, mask, mode):
    umask(mask)
    out = tmp_path / "out" / "x.nii.gz"
    write(out)
    assert out.stat().st_mode & 0o777 == mode
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / FolderLock.NAME).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                            "what": "inference"}))
        with pytest.raises(UserError, match=f"another process \\(pid {holder.pid}, inference\\)"):
            FolderLock(tmp_path, what="inference").acquire()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / FolderLock.NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    lock = FolderLock(tmp_path, what="training").acquire()
    assert json.loads((tmp_path / FolderLock.NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / FolderLock.NAME).exists()


def _gz(tmp_path: Path) -> Path:
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(4096, dtype=np.uint8).reshape(16, 16, 16), np.eye(4)), path)
    return path


@pytest.mark.parametrize(("damage", "whole"), [
    pytest.param(lambda b: b, True, id="intact"),
    pytest.param(lambda b: b[: len(b) // 2], False, id="truncated"),
    pytest.param(lambda b: b[:-8] + bytes([b[-8] ^ 0xFF]) + b[-7:], False, id="crc_wrong"),
])
def test_a_gzip_file_is_whole_only_if_it_decompresses_to_its_end_with_the_right_crc(tmp_path, damage, whole):
    path = _gz(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    assert gzip_is_whole(path) is whole


def test_a_segmentation_with_a_wrong_crc_is_not_a_valid_output(tmp_path):
    from pipeline.inference.outputs import output_is_valid

    path = _gz(tmp_path)
    assert output_is_valid(path, path)
    data = path.read_bytes()
    path.write_bytes(data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:])
    np.asarray(nib.load(path).dataobj)  # nibabel still decodes the voxels: only the CRC at the end tells
    assert not output_is_valid(path, path)


def test_a_whole_gzip_holding_too_few_voxels_is_not_a_valid_output(tmp_path):
    import gzip

    from pipeline.inference.outputs import output_is_valid

    path = _gz(tmp_path)
    raw = gzip.decompress(path.read_bytes())
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(raw[:-100]))  # a complete gzip stream of a cut-off image
    assert gzip_is_whole(short) and output_is_valid(path, path)
    assert not output_is_valid(short, path)
