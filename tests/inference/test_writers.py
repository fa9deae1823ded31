"""Background writers: a case's writes in submission order (probabilities before the segmentation that records
them), a bounded number in flight, a failed write reported as the case's failure while the others go on, and
`wait` returning only when every file is written."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.inference.outputs import InferenceReport
from pipeline.inference.writers import BackgroundWriters, default_threads, writer_threads


@pytest.mark.parametrize(("value", "threads"), [(0, 0), ("2", 2), ("auto", default_threads())])
def test_writer_threads_are_read_from_the_config(value: object, threads: int) -> None:
    assert writer_threads(value) == threads
    assert 1 <= default_threads() <= 4


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_number_of_writer_threads_is_refused_naming_the_option(value: str) -> None:
    with pytest.raises(UserError, match="writer_threads"):
        writer_threads(value)


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_writes_of_one_case_keep_their_order(threads: int) -> None:
    writers, done = BackgroundWriters(threads), []
    for case in ("a", "b", "c"):
        # the first write of each case is the slow one: a later write of the case must still come after it
        writers.submit(case, lambda c=case: (time.sleep(0.05), f"{c}1")[1], done.append, pytest.fail)
        writers.submit(case, lambda c=case: f"{c}2", done.append, pytest.fail)
    writers.close()
    assert sorted(done) == ["a1", "a2", "b1", "b2", "c1", "c2"]
    for case in "abc":
        assert done.index(f"{case}1") < done.index(f"{case}2")


def test_no_more_writes_in_flight_than_allowed() -> None:
    writers, running, most, lock = BackgroundWriters(2, max_pending=2), [0], [0], threading.Lock()

    def write() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    for i in range(8):
        writers.submit(str(i), write, lambda _: None, pytest.fail)
        with lock:
            assert len(writers._pending) <= 2  # submit blocks until a slot frees
    writers.close()
    assert most[0] <= 2


def test_a_failed_write_is_reported_and_the_others_are_written() -> None:
    writers, done, failed = BackgroundWriters(2), [], []

    def broken() -> None:
        raise OSError(28, "No space left on device")

    writers.submit("a", lambda: "a", done.append, failed.append)
    writers.submit("b", broken, done.append, failed.append)
    writers.submit("b", lambda: "b2", done.append, failed.append)  # waits for the failed one, then runs
    writers.submit("c", lambda: "c", done.append, failed.append)
    writers.close()
    assert sorted(done) == ["a", "b2", "c"]
    assert len(failed) == 1 and isinstance(failed[0], OSError)


def test_wait_returns_when_every_write_has_ended() -> None:
    writers, done = BackgroundWriters(1), []
    for i in range(4):
        writers.submit(str(i), lambda i=i: (time.sleep(0.02), i)[1], done.append, pytest.fail)
    writers.wait()
    assert sorted(done) == [0, 1, 2, 3]
    writers.submit("late", lambda: "late", done.append, pytest.fail)  # still usable after a wait
    writers.close()
    assert done[-1] == "late"


def test_a_write_that_fails_in_a_thread_fails_its_case_and_the_others_are_written(tmp_path: Path) -> None:
    report = InferenceReport(tmp_path, model="m", writer_threads=2)

    def refused() -> Path:
        raise OSError(28, "No space left on device")

    report.write("a", tmp_path / "a.nii.gz", refused, lambda path: report.wrote("a", path))
    for case in ("b", "c"):
        path = tmp_path / f"{case}.nii.gz"
        report.write(case, path, lambda p=path: (p.write_bytes(b"x"), p)[1], lambda p, c=case: report.wrote(c, p))
    with pytest.raises(SystemExit) as stop:
        report.finish()  # waits for the threads, then reports
    assert stop.value.code == 1
    assert sorted(report.written) == ["b", "c"] and list(report.failed) == ["a"]
    assert f"case a: writing {tmp_path / 'a.nii.gz'} failed (OSError" in report.summary()


def test_a_segmentation_keeps_the_inputs_grid_but_not_its_display_window(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from pipeline.inference.predict import write_label_like

    image = nib.Nifti1Image(np.full((4, 5, 6), 900, np.int16), np.diag([1.0, 1.2, 1.5, 1.0]))
    image.header["cal_min"], image.header["cal_max"] = 0, 1200  # a viewer would show labels 1-4 near black
    image.header["descrip"] = b"FLAIR, scanner X"
    nib.save(image, tmp_path / "flair.nii.gz")
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 4
    out = nib.load(write_label_like(labels, tmp_path / "flair.nii.gz", tmp_path / "seg.nii.gz"))
    np.testing.assert_array_equal(out.affine, nib.load(tmp_path / "flair.nii.gz").affine)  # as stored (float32)
    assert out.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(out.dataobj), labels)
    assert (float(out.header["cal_min"]), float(out.header["cal_max"])) == (0.0, 0.0)
    assert out.header["descrip"].tobytes().rstrip(b"\0") == b"segmentation"


@pytest.mark.parametrize("files", [["/data/BraTS:2021/c1/c1_t1.nii.gz", "/data/BraTS:2021/c1/c1_t2.nii.gz"],
                                   ["/data/MSD/imagesTs/c1.nii.gz"], ["relative dir/c1_0000.nii.gz"]],
                         ids=["colon_in_path", "one_4d_file", "space_in_path"])
def test_a_cases_input_files_reach_the_writer_as_they_were_whatever_characters_they_hold(files: list[str]) -> None:
    """Joined with os.pathsep (':'), a dataset under /data/BraTS:2021 was recorded as the inputs '/data/BraTS' and
    '2021/...': every later run into that folder was refused as another dataset's, and evaluation too."""
    from pipeline.inference.outputs import INPUTS_KEY, with_inputs
    from pipeline.inference.predict import input_files

    image = files[0] if len(files) == 1 else files
    item = with_inputs([{"case": "c1", "image": image}])[0]
    assert input_files(item) == files
    assert input_files({**item, INPUTS_KEY: [item[INPUTS_KEY]]}) == files  # as a DataLoader batch of one carries it
    named = with_inputs([{"case": "c1", "image": image, "channel_index": [1, 0]}], ["t1c", "T2-FLAIR"])[0]
    expected = ([{"path": files[0], "volume": 1, "channel": "T1ce"}, {"path": files[0], "volume": 0,
                                                                       "channel": "FLAIR"}] if len(files) == 1 else
                [{"path": f, "channel": c} for f, c in zip(files, ["T1ce", "FLAIR"], strict=True)])
    assert input_files({**named, INPUTS_KEY: [named[INPUTS_KEY]]}) == expected  # named by canonical channel
