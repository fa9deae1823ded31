"""pipeline.core.files: whole files with the user's permissions, outputs never among the inputs, one writer per
folder."""

from __future__ import annotations

import errno
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
from pipeline.core.files import FolderLock, atomic_write_text, gzip_is_whole, remove_temporaries
from tests.helpers import left_by_a_killed_write, locked_by_another_process


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
    with locked_by_another_process(tmp_path, "inference") as pid, pytest.raises(
            UserError, match=f"another process \\(pid {pid}, inference\\)"):
        FolderLock(tmp_path, what="inference").acquire()


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


def test_a_refused_or_failed_writer_leaves_no_empty_folder_it_made(tmp_path):
    out = tmp_path / "runs" / "eval"
    lock = FolderLock(out, what="evaluation").acquire()
    lock.release()
    assert not (tmp_path / "runs").exists()  # the folder and its missing parent went with the lock
    lock = FolderLock(out, what="evaluation").acquire()
    (out / "metrics.csv").write_text("case\n")
    lock.release()
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv"]  # what was written stays
    lock = FolderLock(out, what="evaluation").acquire()
    (out / "metrics.csv").unlink()
    lock.release()
    assert out.is_dir()  # a folder that was there before is kept, empty or not


def test_a_function_holds_its_output_folder_until_it_returns_unless_its_caller_holds_on(tmp_path):
    from pipeline.core.files import hold_folder, holding, holding_scope

    @holding
    def write(folder):
        hold_folder(folder, what="evaluation")
        (folder / "summary.json").write_text("{}")
        assert (folder / FolderLock.NAME).exists()

    write(tmp_path / "a")
    assert not (tmp_path / "a" / FolderLock.NAME).exists()  # a Python caller of evaluate() leaves no lock
    with holding_scope():  # a command of python -m pipeline: evaluates, then draws and reports into the folder
        write(tmp_path / "b")
        assert (tmp_path / "b" / FolderLock.NAME).exists()
    assert not (tmp_path / "b" / FolderLock.NAME).exists()
    with pytest.raises(ZeroDivisionError):
        holding(lambda: (hold_folder(tmp_path / "c", what="evaluation"), 1 / 0))()
    assert not (tmp_path / "c").exists()  # failed before writing: neither lock nor empty folder left


def test_nested_output_folders_that_stayed_empty_all_go_the_inner_first(tmp_path):
    from pipeline.core.files import hold_folder, holding_scope, release_held_folders

    with holding_scope():  # a comparison's folder, and in it an evaluation that failed before writing
        hold_folder(tmp_path / "cmp", what="comparison")
        hold_folder(tmp_path / "cmp" / "alg", what="evaluation")
    assert not (tmp_path / "cmp").exists()
    hold_folder(tmp_path / "cmp", what="comparison")  # the same at the end of a process (its exit hook)
    hold_folder(tmp_path / "cmp" / "alg", what="evaluation")
    release_held_folders()
    assert not (tmp_path / "cmp").exists()


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard_link", "no_hard_links"])
def test_a_lock_file_is_never_seen_empty_or_half_written(tmp_path, monkeypatch, hard_links):
    seen = []
    real_link = os.link

    def link(src, dst, *a, **k):  # what another process would read the moment the lock appears
        seen.append(Path(src).read_text())
        if not hard_links:
            raise OSError(errno.EPERM, "no hard links here")
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(os, "link", link)
    lock = FolderLock(tmp_path, what="inference").acquire()
    assert json.loads(seen[0])["pid"] == os.getpid()  # whole before it is published
    assert json.loads((tmp_path / FolderLock.NAME).read_text())["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == [FolderLock.NAME]  # no temporary left
    lock.release()


def test_a_dead_holders_lock_taken_over_twice_leaves_the_first_taker_holding_it(tmp_path):
    stale = {"pid": _dead_pid(), "host": os.uname().nodename}
    (tmp_path / FolderLock.NAME).write_text(json.dumps(stale))
    late = FolderLock(tmp_path, what="evaluation")
    read_by_late = late._owner()  # both processes read the dead holder's lock ...
    first = FolderLock(tmp_path, what="training").acquire()  # ... the first takes it over ...
    late._take_over(read_by_late)  # ... the second, acting on what it read, must not remove the first's
    assert json.loads((tmp_path / FolderLock.NAME).read_text())["pid"] == os.getpid()
    assert first.mine() and [p.name for p in tmp_path.iterdir()] == [FolderLock.NAME]
    first.release()


def _no_hard_links(monkeypatch) -> None:
    def link(src, dst, *a, **k):
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", link)


def test_without_hard_links_a_live_lock_moved_aside_by_a_late_taker_is_put_back(tmp_path, monkeypatch):
    _no_hard_links(monkeypatch)
    stale = {"pid": _dead_pid(), "host": os.uname().nodename}
    (tmp_path / FolderLock.NAME).write_text(json.dumps(stale))
    late = FolderLock(tmp_path, what="evaluation")
    read_by_late = late._owner()
    first = FolderLock(tmp_path, what="training").acquire()
    late._take_over(read_by_late)  # it raised OSError(EPERM) putting the live lock back, and lost it
    assert first.mine() and [p.name for p in tmp_path.iterdir()] == [FolderLock.NAME]
    first.release()


def test_an_empty_lock_being_written_is_waited_on_not_taken_over(tmp_path, monkeypatch):
    """Without hard links a lock is created, then written: a second process reading it empty took it for a dead
    holder's and took it over."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / FolderLock.NAME
        lock.write_text("")
        reads = []
        real_owner = FolderLock._owner

        def owner(self):  # the other process finishes writing it after the first read
            reads.append(1)
            if len(reads) == 2:
                lock.write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "what": "inference"}))
            return real_owner(self)

        monkeypatch.setattr(FolderLock, "_owner", owner)
        with pytest.raises(UserError, match=f"another process \\(pid {holder.pid}, inference\\)"):
            FolderLock(tmp_path, what="evaluation").acquire()
    finally:
        holder.kill()
        holder.wait()


METRICS = "case,region,dice,hd95\nBraTS2021_00003,TC,0.9105,2.0\nBraTS2021_00004,TC,0.0177,30.5\n"


@pytest.mark.parametrize(("cut", "said"), [
    pytest.param(len(METRICS), None, id="whole"),
    pytest.param(METRICS.rindex("30.5") + 3, "it ends inside its last row", id="inside_the_last_number"),
    pytest.param(METRICS.rindex("0177"), "row 3 has not the 4 fields", id="inside_a_number"),
    pytest.param(METRICS.rindex("_00004") + 3, "row 3 has not the 4 fields", id="inside_a_case_id"),
    pytest.param(METRICS.rindex("BraTS"), None, id="at_a_row_end"),
])
@pytest.mark.parametrize("reader", ["read_table", "plot_boxplot"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF_of_windows", "CR_of_old_macs"])
def test_a_table_cut_short_is_refused_not_read_as_other_numbers(tmp_path: Path, cut: int, said: str | None,
                                                              reader: str, ending: str,
                                                              capsys: pytest.CaptureFixture) -> None:
    """A metrics.csv cut inside a number (an interrupted copy) was read as Dice 0.0 for 0.0177, and cut inside a
    case id ended `plot boxplot` in a traceback (red team); the same reader serves compare, cv, evaluate and the
    training history. A table saved again with other line endings is whole."""
    from pipeline.core.errors import UserError
    from pipeline.core.files import read_table

    table = tmp_path / "metrics.csv"
    table.write_bytes(METRICS[:cut].replace("\n", ending).encode())
    if reader == "read_table":
        if said is None:
            assert len(read_table(table, ["case", "dice"], "metrics")) == METRICS[:cut].count("\n") - 1
        else:
            with pytest.raises(UserError, match=f"metrics.csv is cut short \\({said}"):
                read_table(table, ["case", "dice"], "metrics")
        return
    from pipeline.__main__ import main

    code = main(["plot", "boxplot", str(table), "--out", str(tmp_path / "box.png")])
    if said is None:
        assert code == 0
    else:
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert code != 0 and "cut short" in last and said in last


@pytest.mark.parametrize("name", ["BraTS2021_00000.nii.gz", "provenance.json", "checkpoint.pt", "metrics.csv"])
def test_temporaries_of_a_killed_write_are_removed_and_nothing_else(tmp_path: Path, name: str) -> None:
    """Inference (its output and probabilities folders) and training (its checkpoints) remove what a SIGKILL
    left; a user's hidden files that only look like it stay (red team: temporaries were never removed)."""
    left = left_by_a_killed_write(tmp_path / name)
    users = [".notes.tmp", f".{name}.tmp", f".{name}.abcdefgh.tmp.txt", f".{name}.abc.tmp{Path(name).suffix}",
             f".{name}.ABCDEFGH.tmp{Path(name).suffix}", "a.tmp"]
    for user in users:
        (tmp_path / user).write_text("mine")
    assert remove_temporaries(tmp_path) == [left]
    assert not left.exists() and all((tmp_path / user).read_text() == "mine" for user in users)
