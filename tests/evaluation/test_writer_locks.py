"""One writer per output folder: every command that writes a folder of results is refused in one line while another
live process writes that folder, before it writes or deletes anything there (two evaluations into one folder at
once left one's metrics.csv beside the other's summary.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.__main__ import main as pipeline_main
from pipeline.core.files import FolderLock
from tests.helpers import corrupted_predictions


@pytest.fixture
def other_process() -> Iterator[int]:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield holder.pid
    holder.kill()
    holder.wait()


def _plant(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FolderLock.NAME).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "what": "evaluation"}))


def _evaluate(tiny: Path, tmp: Path) -> tuple[list[str], Path]:
    pred = corrupted_predictions(tiny, tmp / "pred", 1)
    return ["evaluate", str(pred), str(tiny), "--out", str(tmp / "out"), "--no-pictures"], tmp / "out"


def _compare(tiny: Path, tmp: Path) -> tuple[list[str], Path]:
    algs = [corrupted_predictions(tiny, tmp / f"alg{e}", e) for e in (0, 1)]
    return ["compare", str(tiny), *map(str, algs), "--out", str(tmp / "out")], tmp / "out"


def _pictures(tiny: Path, tmp: Path) -> tuple[list[str], Path]:
    argv, evaluated = _evaluate(tiny, tmp)
    assert pipeline_main(argv) == 0  # that evaluation has ended: its folder is free again
    pictures = tmp / "pics"
    return ["plot", "evaluation", str(evaluated), str(tmp / "pred"), str(tiny), "--out", str(pictures)], pictures


def _synth(tiny: Path, tmp: Path) -> tuple[list[str], Path]:
    return ["synth", str(tmp / "out"), "--cases", "1", "--shape", "32", "32", "24"], tmp / "out"


WRITERS: dict[str, Callable[[Path, Path], tuple[list[str], Path]]] = {
    "evaluate": _evaluate, "compare": _compare, "plot_evaluation": _pictures, "synth": _synth}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_folder_another_process_writes_is_refused_in_one_line_before_anything_is_written(
        writer: str, tiny_dataset: Path, tmp_path: Path, other_process: int, capsys: pytest.CaptureFixture) -> None:
    argv, out = WRITERS[writer](tiny_dataset, tmp_path)
    _plant(out, other_process)
    capsys.readouterr()
    assert pipeline_main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{out} is being written by another process (pid {other_process}, evaluation)" in line, line
    assert sorted(p.name for p in out.iterdir()) == [FolderLock.NAME]  # nothing written, nothing deleted


@pytest.mark.parametrize("writer", list(WRITERS))
def test_the_same_command_writes_once_the_folder_is_free_and_leaves_no_lock(writer: str, tiny_dataset: Path,
                                                                           tmp_path: Path) -> None:
    argv, out = WRITERS[writer](tiny_dataset, tmp_path)
    assert pipeline_main(argv) == 0  # the command's end releases its folder: no release_held_folders() needed
    assert any(out.iterdir()) and not (out / FolderLock.NAME).exists()


def _evaluated(tiny: Path, tmp: Path) -> tuple[Path, Path]:
    from pipeline.evaluation.evaluate import evaluate

    pred = corrupted_predictions(tiny, tmp / "pred", 1)
    evaluate("legacy", pred, tiny, tmp / "eval")
    return pred, tmp / "eval"


def _py_evaluate(tiny: Path, tmp: Path) -> Path:
    return _evaluated(tiny, tmp)[1]


def _py_compare(tiny: Path, tmp: Path) -> Path:
    from pipeline.evaluation.compare import compare

    compare(tiny, [corrupted_predictions(tiny, tmp / f"alg{e}", e) for e in (0, 1)], tmp / "cmp", names=["a", "b"])
    return tmp / "cmp"


def _py_pictures(tiny: Path, tmp: Path) -> Path:
    from pipeline.evaluation.plots import plot_evaluation

    pred, evaluated = _evaluated(tiny, tmp)
    plot_evaluation(evaluated, pred, tiny, out_dir=tmp / "pics")
    return tmp / "pics"


def _py_report(tiny: Path, tmp: Path) -> Path:
    from pipeline.evaluation.evaluate import write_report

    evaluated = _evaluated(tiny, tmp)[1]
    write_report(evaluated)
    return evaluated


PYTHON_CALLERS: dict[str, Callable[[Path, Path], Path]] = {
    "evaluate": _py_evaluate, "compare": _py_compare, "plot_evaluation": _py_pictures, "write_report": _py_report}


@pytest.mark.parametrize("call", list(PYTHON_CALLERS))
def test_a_python_caller_leaves_no_lock_once_the_function_returns(call: str, tiny_dataset: Path,
                                                                  tmp_path: Path) -> None:
    """A notebook calling evaluate() held the folder until its kernel ended: a second process was refused."""
    out = PYTHON_CALLERS[call](tiny_dataset, tmp_path)
    assert any(out.iterdir()) and not (out / FolderLock.NAME).exists()


def test_a_report_is_refused_while_another_process_writes_its_folder(tiny_dataset: Path, tmp_path: Path,
                                                                    other_process: int) -> None:
    from pipeline.core.errors import UserError
    from pipeline.evaluation.evaluate import write_report

    evaluated = _evaluated(tiny_dataset, tmp_path)[1]
    _plant(evaluated, other_process)
    with pytest.raises(UserError, match=f"being written by another process \\(pid {other_process}"):
        write_report(evaluated)
    assert not (evaluated / "report.html").exists()
