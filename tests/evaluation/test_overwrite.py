"""``--overwrite`` replaces an evaluation or a comparison only with a new one: a new one refused while scoring (a
label outside the scheme) leaves the old one whole (its files were deleted before the scoring began)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.core.files import replaced_on_success
from tests.helpers import checksums, corrupted_predictions


def _with_a_foreign_label(predictions: Path) -> Path:
    """One prediction holds label 7, outside the BraTS scheme: its scoring is refused."""
    first = sorted(predictions.glob("*.nii.gz"))[0]
    img = nib.load(first)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), first)
    return predictions


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_an_overwrite_refused_while_scoring_keeps_the_old_result(tiny_dataset: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture, command: str) -> None:
    good = [corrupted_predictions(tiny_dataset, tmp_path / f"good{e}", e) for e in (0, 1)]
    bad = _with_a_foreign_label(corrupted_predictions(tiny_dataset, tmp_path / "bad", 2))
    out = tmp_path / "out"

    def run(*folders: Path, overwrite: bool = False) -> int:
        argv = (["evaluate", str(folders[0]), str(tiny_dataset), "--out", str(out), "--no-pictures"]
                if command == "evaluate" else ["compare", str(tiny_dataset), *map(str, folders), "--out", str(out)])
        return pipeline_main(argv + (["--overwrite"] if overwrite else []))

    assert run(*good) == 0
    before = checksums(out)
    capsys.readouterr()
    assert run(bad, good[1], overwrite=True) == 2
    assert "7" in capsys.readouterr().err.strip().splitlines()[-1]
    after = checksums(out)
    assert {k: v for k, v in after.items() if k in before} == before  # every file of the old result, unchanged


def test_a_comparison_refused_at_a_later_algorithm_puts_the_earlier_evaluations_back(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Under the same names, the first algorithm's evaluation folder is replaced (other predictions) before the
    second's scoring is refused: the old comparison comes back whole, its per-algorithm evaluations included."""
    a, b = (corrupted_predictions(tiny_dataset, tmp_path / f"good{e}", e) for e in (0, 1))
    bad = _with_a_foreign_label(corrupted_predictions(tiny_dataset, tmp_path / "bad", 2))
    out = tmp_path / "out"

    def compare(*folders: Path, overwrite: bool = False) -> int:
        return pipeline_main(["compare", str(tiny_dataset), *map(str, folders), "--out", str(out), "--names", "one",
                              "two", *(["--overwrite"] if overwrite else [])])

    assert compare(a, b) == 0
    before = checksums(out)
    capsys.readouterr()
    assert compare(b, bad, overwrite=True) == 2  # "one" is scored anew from b's predictions, then "two" refused
    assert "7" in capsys.readouterr().err.strip().splitlines()[-1]
    after = checksums(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not [f for f in out.rglob("*replaced~*")]  # no copy left aside
    assert compare(b, a, overwrite=True) == 0  # and a comparison that succeeds replaces it
    assert not [f for f in out.rglob("*replaced~*")]


def test_files_of_the_old_result_the_new_one_did_not_write_go_when_it_succeeds(tmp_path: Path) -> None:
    from pipeline.core.files import atomic_write_text

    rewritten, stale, absent = tmp_path / "metrics.csv", tmp_path / "official.csv", tmp_path / "report.html"
    rewritten.write_text("old")
    stale.write_text("old")
    with replaced_on_success([rewritten, stale, absent]):
        atomic_write_text(rewritten, "new")
    assert rewritten.read_text() == "new" and not stale.exists() and not absent.exists()
    stale.write_text("old")
    with pytest.raises(RuntimeError), replaced_on_success([stale]):
        raise RuntimeError("scoring refused")
    assert stale.read_text() == "old"


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard_links", "copies"])
def test_a_failed_block_puts_back_what_it_wrote_over_or_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                hard_links: bool) -> None:
    from pipeline.core.files import atomic_write_text

    if not hard_links:  # a file system without hard links: the files are copied aside
        def no_link(*_: object) -> None:
            raise OSError("no hard links here")
        monkeypatch.setattr("os.link", no_link)
    replaced, kept = tmp_path / "comparison.csv", tmp_path / "one" / "metrics.csv"
    kept.parent.mkdir()
    replaced.write_text("old table")
    kept.write_text("old metrics")
    untouched = tmp_path / "ranking.csv"
    untouched.write_text("old ranking")
    with pytest.raises(RuntimeError), replaced_on_success([replaced, untouched], restore=[kept]):
        atomic_write_text(kept, "new metrics")  # the first algorithm's evaluation, written anew
        replaced.unlink()
        raise RuntimeError("the second algorithm refused")
    assert (replaced.read_text(), kept.read_text(), untouched.read_text()) == ("old table", "old metrics",
                                                                               "old ranking")
    untouched.unlink()
    with replaced_on_success([replaced], restore=[kept]):  # a success: restore-only files are never deleted
        pass
    assert not replaced.exists() and kept.read_text() == "old metrics"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics.csv", "one"]  # no copy left aside


def test_nested_blocks_each_put_back_their_own_and_new_files_go(tmp_path: Path) -> None:
    """A comparison's block around an evaluation's, on the same files: the inner one succeeds (its stale file
    deleted, its copies removed), the outer one fails and puts the first state back, without the inner's new file."""
    from pipeline.core.files import atomic_write_text

    folder = tmp_path / "one"
    folder.mkdir()
    metrics, stale = folder / "metrics.csv", folder / "official.csv"
    metrics.write_text("old metrics")
    stale.write_text("old official")
    with pytest.raises(RuntimeError), replaced_on_success([], restore=[metrics, stale], folders=[folder]):
        with replaced_on_success([metrics, stale]):
            atomic_write_text(metrics, "new metrics")
            atomic_write_text(folder / "overlay.png", "new picture")
        assert not stale.exists()
        raise RuntimeError("the second algorithm refused")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"metrics.csv": "old metrics",
                                                                 "official.csv": "old official"}


@pytest.mark.parametrize("left_holds", ["another_version", "the_same_file", "the_same_bytes"])
def test_a_copy_left_by_a_killed_replacement_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                      left_holds: str) -> None:
    """A process killed inside its block cannot put its copies back: the next replacement of that file names the
    copy (it may hold the only whole version), and leaves it where it is; a copy that is the file itself (a hard
    link) or holds its bytes is nothing but a second name, and goes without a word (red team: a killed compare left
    links of its sub-folders' locks, warned about forever)."""
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid is no longer alive
    pid = finished.pid
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("new, half written?")
    left = tmp_path / f".metrics.csv.replaced~{pid}-0"
    if left_holds == "the_same_file":
        os.link(metrics, left)
    else:
        left.write_text("old, whole" if left_holds == "another_version" else metrics.read_text())
    with caplog.at_level(logging.WARNING, logger="pipeline.core.files"), replaced_on_success([metrics]):
        pass
    if left_holds == "another_version":
        assert str(left) in caplog.text and "died while replacing metrics.csv" in caplog.text
        assert left.read_text() == "old, whole"
    else:
        assert "died while replacing" not in caplog.text and not left.exists()


@pytest.mark.parametrize("rewritten", [True, False], ids=["predictions_rewritten", "predictions_unchanged"])
@pytest.mark.parametrize("first,second", [("legacy", "official"), ("official", "legacy")])
def test_the_other_protocols_tables_go_when_the_predictions_were_rewritten_since(
        tiny_dataset: Path, tmp_path: Path, first: str, second: str, rewritten: bool) -> None:
    """Both protocols of one pair share a folder. When the predictions were written again between them (``infer
    --overwrite``), the first protocol's tables score files that are no longer there: they go once the second is
    written, not left beside it; with the predictions unchanged both stay."""
    pytest.importorskip("brats_evaluation", reason="pip install -e '.[official]'")
    preds = corrupted_predictions(tiny_dataset, tmp_path / "preds", 1)
    out = tmp_path / "out"

    def evaluate(protocol: str) -> int:
        return pipeline_main(["evaluate", str(preds), str(tiny_dataset), "--out", str(out), "--protocol", protocol,
                              "--no-pictures"])

    own = {"legacy": {"metrics.csv", "summary.json"}, "official": {"official.csv", "official_summary.json"}}
    assert evaluate(first) == 0
    if rewritten:  # the same folder segmented again, other labels in one case
        shutil.rmtree(preds)
        corrupted_predictions(tiny_dataset, preds, 2)
    assert evaluate(second) == 0
    names = {p.name for p in out.iterdir()}
    assert own[second] <= names
    assert (own[first] & names) == (set() if rewritten else own[first])
    assert not [p for p in out.iterdir() if "replaced~" in p.name]


def _users_table(out: Path) -> list[Path]:
    (out / "metrics.csv").write_text("my own table\n")
    return [out / "metrics.csv"]


def _users_picture(out: Path) -> list[Path]:
    (out / "overlays").mkdir()
    (out / "overlays" / "photo.png").write_bytes(b"my own picture")
    return [out / "overlays" / "photo.png"]


def _users_summary(out: Path) -> list[Path]:
    (out / "summary.json").write_text('{"my": "numbers"}')
    return [out / "summary.json"]


def _users_report(out: Path) -> list[Path]:
    (out / "report.html").write_text("<p>mine</p>")
    (out / "ranking.csv").write_text("mine\n")
    return [out / "report.html", out / "ranking.csv"]


@pytest.mark.parametrize(("command", "where", "users"), [
    pytest.param("evaluate", "", _users_table, id="evaluate_a_table"),
    pytest.param("evaluate", "", _users_picture, id="evaluate_a_picture"),
    pytest.param("evaluate", "", _users_summary, id="evaluate_a_summary_of_theirs"),
    pytest.param("evaluate_function", "", _users_table, id="the_bundles_evaluate_a_table"),
    pytest.param("compare", "", _users_report, id="compare_its_report_and_ranking"),
    pytest.param("compare", "one", _users_picture, id="compare_an_algorithms_pictures"),
    pytest.param("compare", "one", _users_table, id="compare_an_algorithms_table"),
])
def test_an_output_folder_of_the_users_own_files_is_refused_unless_overwrite(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str, where: str, users) -> None:
    """evaluate and compare wrote into an existing folder that no evaluation or comparison of theirs had written,
    replacing the user's metrics.csv, report.html or ranking.csv and deleting their overlays/*.png, without
    --overwrite. They now refuse it, naming a file; --overwrite replaces them as asked."""
    from pipeline.core.errors import UserError
    from pipeline.evaluation.evaluate import evaluate

    preds = [corrupted_predictions(tiny_dataset, tmp_path / f"p{e}", e) for e in (0, 1)]
    out = tmp_path / "out"
    (out / where).mkdir(parents=True)
    theirs = users(out / where)
    before = checksums(out)

    def run(overwrite: bool) -> int:
        if command == "evaluate_function":
            try:
                evaluate("legacy", preds[0], tiny_dataset, out, overwrite=overwrite)
            except UserError as e:
                print(e, file=__import__("sys").stderr)
                return 2
            return 0
        argv = (["evaluate", str(preds[0]), str(tiny_dataset), "--out", str(out), "--no-pictures"]
                if command == "evaluate" else
                ["compare", str(tiny_dataset), *map(str, preds), "--out", str(out), "--names", "one", "two"])
        return pipeline_main(argv + (["--overwrite"] if overwrite else []))

    assert run(overwrite=False) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--overwrite" in last and any(str(f) in last for f in theirs)
    assert checksums(out) == before  # nothing written, nothing deleted
    assert run(overwrite=True) == 0
    record = "comparison.json" if command == "compare" and not where else "summary.json"
    assert (out / where / record).is_file()  # the new result, in place of the user's files


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_run_that_fails_after_writing_leaves_nothing_that_refuses_its_rerun(
        tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """A comparison that failed at its report left its tables without comparison.json, and the same command again
    was refused as a folder of the user's files; the failed run's new files now go with it."""
    import pipeline.evaluation.compare as compare_module
    import pipeline.evaluation.evaluate as evaluate_module

    preds = [corrupted_predictions(tiny_dataset, tmp_path / f"p{e}", e) for e in (0, 1)]
    out = tmp_path / "out"
    argv = (["evaluate", str(preds[0]), str(tiny_dataset), "--out", str(out), "--no-pictures"]
            if command == "evaluate" else ["compare", str(tiny_dataset), *map(str, preds), "--out", str(out)])

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cut short")

    if command == "evaluate":  # after metrics.csv, before summary.json is read back
        original = evaluate_module.evaluate_folders

        def half(*args: object, **kwargs: object) -> None:
            original(*args, **kwargs)
            (out / "summary.json").unlink()
            fail()
        monkeypatch.setattr(evaluate_module, "evaluate_folders", half)
    else:
        monkeypatch.setattr(compare_module, "comparison_report", fail)
    with pytest.raises(RuntimeError, match="cut short"):
        pipeline_main(argv)
    assert not [f for f in out.rglob("*") if f.is_file() and f.name != ".lock"]
    monkeypatch.undo()
    assert pipeline_main(argv) == 0


@pytest.mark.parametrize("path", ["evaluate_again", "evaluate_overwrite_other_predictions", "plot_evaluation_again"])
def test_a_users_picture_among_the_overlays_is_never_deleted(tiny_dataset: Path, tmp_path: Path, path: str) -> None:
    """Evaluating again (or drawing again) deleted every PNG in ``overlays/``, a user's figure too: only the
    pictures this package drew (their mark) are replaced."""
    preds = [corrupted_predictions(tiny_dataset, tmp_path / f"pred{e}", e) for e in (0, 1)]
    out = tmp_path / "eval"
    assert pipeline_main(["evaluate", str(preds[0]), str(tiny_dataset), "--out", str(out)]) == 0
    drawn = sorted((out / "overlays").glob("*.png"))
    assert drawn
    mine = out / "overlays" / "my_figure.png"
    mine.write_bytes(b"\x89PNG\r\n\x1a\n a figure of the user's")
    drawn[0].write_bytes(b"\x89PNG\r\n\x1a\n the user's, under a case's name")  # not drawn over either
    again = {"evaluate_again": ["evaluate", str(preds[0]), str(tiny_dataset), "--out", str(out)],
             "evaluate_overwrite_other_predictions": ["evaluate", str(preds[1]), str(tiny_dataset), "--out", str(out),
                                                      "--overwrite"],
             "plot_evaluation_again": ["plot", "evaluation", str(out), str(preds[0]), str(tiny_dataset)]}[path]
    assert pipeline_main(again) == 0
    assert mine.read_bytes() == b"\x89PNG\r\n\x1a\n a figure of the user's"
    assert drawn[0].read_bytes() == b"\x89PNG\r\n\x1a\n the user's, under a case's name"
    assert len(list((out / "overlays").glob("*.png"))) > 2  # the package's own drawn again


@pytest.mark.parametrize("command", ["evaluate", "plot_evaluation"])
def test_an_overlays_folder_that_is_a_link_is_refused(tiny_dataset: Path, tmp_path: Path, command: str,
                                                      capsys: pytest.CaptureFixture) -> None:
    """An ``overlays`` link to a user's figures folder: its pictures were deleted and the overlays drawn there."""
    pred = corrupted_predictions(tiny_dataset, tmp_path / "pred", 0)
    out = tmp_path / "eval"
    assert pipeline_main(["evaluate", str(pred), str(tiny_dataset), "--out", str(out), "--no-pictures"]) == 0
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "paper_fig1.png").write_bytes(b"a figure")
    (out / "overlays").symlink_to(figures)
    argv = (["evaluate", str(pred), str(tiny_dataset), "--out", str(out)] if command == "evaluate"
            else ["plot", "evaluation", str(out), str(pred), str(tiny_dataset)])
    assert pipeline_main(argv) == 2
    assert "is a link" in capsys.readouterr().err.strip().splitlines()[-1]
    assert [p.name for p in figures.iterdir()] == ["paper_fig1.png"]
