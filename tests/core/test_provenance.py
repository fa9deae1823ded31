"""`Provenance.input_state`: how a case's files now stand to the files its segmentation was made from, by identity
(resolved paths, then whole contents by sha256), over every way the two can differ."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from pipeline.core.provenance import CHANGED, MOVED, OTHER, SAME, UNKNOWN, Provenance, file_digest, input_identity


def _inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, name in enumerate(("c_t1.nii", "c_flair.nii")):
        (folder / name).write_bytes(bytes([i]) * 300_000)  # both ends of each file alike: the fast hash cannot tell
        files.append(folder / name)
    return files


def _touch(files: list[Path]) -> list[Path]:
    for f in files:
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    return files


def _moved(files: list[Path]) -> list[Path]:
    elsewhere = Path(shutil.move(str(files[0].parent), str(files[0].parent.with_name("elsewhere"))))
    return [elsewhere / f.name for f in files]


def _copied_in_other_order(files: list[Path]) -> list[Path]:
    other = files[0].parent.with_name("copy")
    shutil.copytree(files[0].parent, other)
    return [other / f.name for f in reversed(files)]


def _middle_changed(files: list[Path]) -> list[Path]:
    data = bytearray(files[1].read_bytes())
    data[150_000] ^= 0xFF  # the same size and both ends: only the whole-content digest sees it
    files[1].write_bytes(bytes(data))
    return files


def _copy_with_middle_changed(files: list[Path]) -> list[Path]:
    return _middle_changed(_copied_in_other_order(files)[::-1])


def _removed(files: list[Path]) -> list[Path]:
    files[0].unlink()
    return files


CASES = {  # name: (what happens to the files after inference, state with digests, state without)
    "untouched": (lambda f: f, SAME, SAME),
    "touched_same_contents": (_touch, SAME, CHANGED),
    "moved": (_moved, MOVED, OTHER),
    "copied_listed_in_another_order": (_copied_in_other_order, MOVED, OTHER),
    "changed_in_the_middle": (_middle_changed, CHANGED, CHANGED),
    "a_copy_changed_in_the_middle": (_copy_with_middle_changed, OTHER, OTHER),
    "one_removed": (_removed, CHANGED, CHANGED),
}


@pytest.mark.parametrize("digest", [pytest.param(True, id="recorded_with_digests"),
                                    pytest.param(False, id="recorded_before_digests")])
@pytest.mark.parametrize("name", list(CASES))
def test_input_state_decides_by_resolved_path_then_by_whole_contents(name: str, digest: bool, tmp_path: Path) -> None:
    files = _inputs(tmp_path / "data")
    record = Provenance(tmp_path / "seg")
    record.record("c", model="m", file="c.nii.gz", inputs=input_identity(files, digest=digest))
    change, with_digest, without = CASES[name]
    now = change(files)
    assert Provenance(tmp_path / "seg").input_state("c", now) == (with_digest if digest else without)


def test_a_case_without_recorded_inputs_is_unknown(tmp_path: Path) -> None:
    record = Provenance(tmp_path)
    record.record("c", model="m", file="c.nii.gz", inputs=[])
    assert record.input_state("c", _inputs(tmp_path / "data")) == UNKNOWN and record.input_state("d") == UNKNOWN


def test_the_digest_is_the_sha256_of_the_whole_file(tmp_path: Path) -> None:
    f = _inputs(tmp_path)[1]
    assert file_digest(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_digest(tmp_path / "absent.nii") == ""
