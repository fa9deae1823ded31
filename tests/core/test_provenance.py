"""`Provenance.input_state`: how a case's files now stand to the files its segmentation was made from, by identity
(resolved paths, then whole contents by sha256), over every way the two can differ."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.core.provenance import (
    CHANGED,
    MOVED,
    OTHER,
    SAME,
    UNKNOWN,
    Provenance,
    file_digest,
    input_identity,
    input_refs,
)


def _inputs(folder: Path) -> list[Path]:
    """Two channels' files whose ends are alike (only their middles differ: the fast hash cannot tell them apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, name in enumerate(("c_t1.nii", "c_flair.nii")):
        data = bytearray(300_000)
        data[100_000 + i] = 1
        (folder / name).write_bytes(bytes(data))
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


def _copied(files: list[Path]) -> list[Path]:
    other = files[0].parent.with_name("copy")
    shutil.copytree(files[0].parent, other)
    return [other / f.name for f in files]


def _copied_listed_in_another_order(files: list[Path]) -> list[Path]:
    return _copied(files)[::-1]  # FLAIR read as T1: not the inputs recorded, though the same bytes are there


def _listed_in_another_order(files: list[Path]) -> list[Path]:
    return files[::-1]


def _contents_swapped(files: list[Path]) -> list[Path]:
    a, b = files[0].read_bytes(), files[1].read_bytes()
    files[0].write_bytes(b)
    files[1].write_bytes(a)
    return files


def _one_listed_twice(files: list[Path]) -> list[Path]:
    return [files[0], files[0]]


def _one_more(files: list[Path]) -> list[Path]:
    return [*files, files[0]]


def _middle_changed(files: list[Path]) -> list[Path]:
    data = bytearray(files[1].read_bytes())
    data[150_000] ^= 0xFF  # the same size and both ends: only the whole-content digest sees it
    files[1].write_bytes(bytes(data))
    return files


def _copy_with_middle_changed(files: list[Path]) -> list[Path]:
    return _middle_changed(_copied(files))


def _removed(files: list[Path]) -> list[Path]:
    files[0].unlink()
    return files


CASES = {  # name: (what happens to the files after inference, state with digests, state without)
    "untouched": (lambda f: f, SAME, SAME),
    "touched_same_contents": (_touch, SAME, CHANGED),
    "moved": (_moved, MOVED, OTHER),
    "copied": (_copied, MOVED, OTHER),
    "copied_listed_in_another_order": (_copied_listed_in_another_order, CHANGED, OTHER),  # the same bytes, other roles
    "listed_in_another_order": (_listed_in_another_order, CHANGED, CHANGED),
    "contents_swapped_between_the_files": (_contents_swapped, CHANGED, CHANGED),
    "one_file_listed_twice": (_one_listed_twice, OTHER, OTHER),
    "one_file_more": (_one_more, OTHER, OTHER),
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


def test_a_skipped_case_found_moved_is_recorded_where_it_is_now(tmp_path: Path) -> None:
    files = _inputs(tmp_path / "data")
    record = Provenance(tmp_path / "seg")
    record.record("c", model="m", file="c.nii.gz", inputs=input_identity(files, digest=True))
    now = _moved(files)
    record.refresh_inputs("c", now)
    again = Provenance(tmp_path / "seg")
    assert again.input_paths("c") == [str(f.resolve()) for f in now] and again.input_state("c", now) == SAME
    mtime = (tmp_path / "seg" / "provenance.json").stat().st_mtime_ns
    again.refresh_inputs("c", now)  # current: nothing written
    assert (tmp_path / "seg" / "provenance.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("inputs", [pytest.param("abc", id="a_string"), pytest.param([{"size": 1}], id="no_path")])
def test_a_record_whose_inputs_are_malformed_is_refused_in_one_line(inputs: object, tmp_path: Path) -> None:
    (tmp_path / "provenance.json").write_text(json.dumps({"version": 2, "cases": {"c": {"model": "m",
                                                                                         "inputs": inputs}}}))
    with pytest.raises(UserError, match=r"case c's inputs are not a list of .* delete .*provenance\.json"):
        Provenance(tmp_path)


def test_a_case_without_recorded_inputs_is_unknown(tmp_path: Path) -> None:
    record = Provenance(tmp_path)
    record.record("c", model="m", file="c.nii.gz", inputs=[])
    assert record.input_state("c", _inputs(tmp_path / "data")) == UNKNOWN and record.input_state("d") == UNKNOWN


def test_the_digest_is_the_sha256_of_the_whole_file(tmp_path: Path) -> None:
    f = _inputs(tmp_path)[1]
    assert file_digest(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_digest(tmp_path / "absent.nii") == ""


VOLUMES = {  # name: (the inputs given now, from the recorded 4D file at data/c.nii, or the moved one; state)
    "the_same_volumes": (lambda f, moved: input_refs([f], (1, 2, 3, 0)), SAME),
    "another_modality_table": (lambda f, moved: input_refs([f], (0, 1, 2, 3)), CHANGED),
    "the_file_without_its_volumes": (lambda f, moved: input_refs([f]), OTHER),
    "moved_the_same_volumes": (lambda f, moved: input_refs([moved], (1, 2, 3, 0)), MOVED),
    "moved_another_modality_table": (lambda f, moved: input_refs([moved], (3, 2, 1, 0)), CHANGED),
}


@pytest.mark.parametrize("name", list(VOLUMES))
def test_which_volume_of_a_4d_file_feeds_each_channel_is_part_of_its_inputs(name: str, tmp_path: Path) -> None:
    """A Decathlon case is one 4D file read through its modality table: the same file read with another table
    (dataset.json edited) is not the input its segmentation was made from."""
    f = _inputs(tmp_path / "data")[0]
    record = Provenance(tmp_path / "seg")
    record.record("c", model="m", file="c.nii.gz", inputs=input_identity(input_refs([f], (1, 2, 3, 0)), digest=True))
    moved = tmp_path / "elsewhere" / f.name
    moved.parent.mkdir()
    shutil.copy2(f, moved)
    given, state = VOLUMES[name]
    again = Provenance(tmp_path / "seg")
    assert again.input_state("c", given(f, moved)) == state
    assert again.input_paths("c") == [str(f.resolve())]  # one file, named once
    if state == CHANGED:  # the file's contents are unchanged: the reason is named
        assert again.changed_inputs("c", given(f, moved))[0] == (
            f"{(f if 'moved' not in name else moved).resolve()} (its volumes now feed other channels: its modality "
            "table changed)")


def test_a_4d_record_from_before_volumes_were_kept_is_read_by_its_file(tmp_path: Path) -> None:
    f = _inputs(tmp_path / "data")[0]
    record = Provenance(tmp_path / "seg")
    record.record("c", model="m", file="c.nii.gz", inputs=input_identity([f], digest=True))
    assert Provenance(tmp_path / "seg").input_state("c", input_refs([f], (1, 2, 3, 0))) == SAME
    f.write_bytes(b"other")
    assert Provenance(tmp_path / "seg").input_state("c", input_refs([f], (1, 2, 3, 0))) == CHANGED


NAMED = {  # name: (the inputs given now, from the two files recorded as T1 = files[0], FLAIR = files[1]; state)
    "the_same_in_another_order": (lambda f: input_refs(f[::-1], channels=["FLAIR", "T1"]), SAME),
    "the_same_in_the_same_order": (lambda f: input_refs(f, channels=["T1", "FLAIR"]), SAME),
    "the_files_named_the_other_way_round": (lambda f: input_refs(f, channels=["FLAIR", "T1"]), CHANGED),
    "unnamed_in_the_recorded_order": (lambda f: input_refs(f), SAME),
    "unnamed_in_another_order": (lambda f: input_refs(f[::-1]), CHANGED),
}


@pytest.mark.parametrize("name", list(NAMED))
def test_inputs_named_by_channel_compare_channel_by_channel_whatever_their_order(name: str, tmp_path: Path) -> None:
    """Inference records a case's inputs in the data's order, named; a model reading them in its own order, or
    evaluation reading them in the data's, compares channel by channel; names swapped over the same files are
    other inputs."""
    files = _inputs(tmp_path / "data")
    record = Provenance(tmp_path / "seg")
    record.record("c", model="m", file="c.nii.gz", inputs=input_identity(input_refs(files, channels=["T1", "FLAIR"]),
                                                                           digest=True))
    given, state = NAMED[name]
    assert Provenance(tmp_path / "seg").input_state("c", given(files)) == state


def test_a_record_from_before_channels_were_named_compares_by_position(tmp_path: Path) -> None:
    files = _inputs(tmp_path / "data")
    record = Provenance(tmp_path / "seg")
    record.record("c", model="m", file="c.nii.gz", inputs=input_identity(files, digest=True))
    again = Provenance(tmp_path / "seg")
    assert again.input_state("c", input_refs(files, channels=["T1", "FLAIR"])) == SAME
    assert again.input_state("c", input_refs(files[::-1], channels=["FLAIR", "T1"])) == CHANGED
