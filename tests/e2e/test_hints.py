"""A refusal's hint works through the CLI that printed it: every flag a ``python -m pipeline`` refusal names (the
bundle's spelling: ``--resume true``, ``--run_dir``, ``--output_dir``) is one that ``python -m pipeline`` takes."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import build_parser, bundle_spelling
from tests.warm import run_module

#: How each verb is called without the flag under test (its required arguments).
BASE = {"train": ["train", "DATA"], "infer": ["infer", "-i", "DATA", "--run", "RUN"]}


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param(["train", "DATA", "--resume", "true"], {"resume": True, "overwrite": False}, id="resume_true"),
    pytest.param(["train", "DATA", "--resume=false"], {"resume": False}, id="resume_false"),
    pytest.param(["train", "--resume", "DATA"], {"resume": True, "dataset": "DATA"}, id="resume_then_dataset"),
    pytest.param(["train", "DATA", "--overwrite", "TRUE"], {"overwrite": True, "resume": False}, id="overwrite"),
    pytest.param(["train", "DATA", "--run_dir", "r"], {"run": "r"}, id="run_dir"),
    pytest.param(["infer", "-i", "DATA", "--run_dir", "r", "--output_dir", "o", "--overwrite", "true"],
                 {"run": "r", "output": "o", "overwrite": True}, id="infer_bundle_spelling"),
    pytest.param(["infer", "-i", "DATA", "--run", "r", "-o", "o"], {"run": "r", "output": "o", "overwrite": False},
                 id="infer_own_spelling"),
    pytest.param(["evaluate", "P", "R", "--allow_mixed", "true"], {"allow_mixed": True}, id="evaluate_allow_mixed"),
    pytest.param(["compare", "R", "P", "Q", "--allow-mixed=false"], {"allow_mixed": False}, id="compare_allow_mixed"),
])
def test_the_cli_reads_the_bundles_spelling_of_its_flags(argv: list[str], expected: dict) -> None:
    args = build_parser().parse_args(bundle_spelling(argv))
    assert {k: getattr(args, k) for k in expected} == expected


def test_a_switch_with_another_value_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(bundle_spelling(["train", "DATA", "--resume=maybe"]))


def _refusal(argv: list[str], cwd: Path) -> str:
    result = run_module([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, cwd=cwd,
                        timeout=600)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and last.startswith("error: "), (result.stdout + result.stderr)[-3000:]
    return last


@pytest.mark.parametrize("case", ["train_into_a_finished_run", "infer_into_the_data", "infer_into_a_case"])
def test_every_flag_a_refusal_names_is_taken_by_the_cli_that_printed_it(case: str, tiny_dataset: Path,
                                                                        trained_run: Path, tmp_path: Path) -> None:
    if case == "train_into_a_finished_run":
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        verb, argv = "train", ["train", str(tiny_dataset), "--run", str(run)]
    elif case == "infer_into_the_data":
        verb, argv = "infer", ["infer", "-i", str(tiny_dataset), "-o", str(tiny_dataset), "--run", str(trained_run)]
    else:
        case_dir = next(p for p in sorted(tiny_dataset.iterdir()) if p.is_dir())
        verb, argv = "infer", ["infer", "-i", str(tiny_dataset), "-o", str(case_dir), "--run", str(trained_run)]
    line = _refusal(argv, tmp_path)
    named = re.findall(r"(?<![\w-])(--?[a-z][a-z_]*)(?: ([a-z_#]+))?", line)  # a flag, and the word after it
    assert named, line
    takes_a_path = ("--run_dir", "--output_dir", "--run", "--output", "-o", "-i")
    for flag, after in named:
        if flag == "--set":  # --set ID VALUE: the id and a value
            words = [*BASE[verb], flag, after, "X"]
        else:
            value = [after] if after in ("true", "false") else ["X"] if flag in takes_a_path else []
            words = [*BASE[verb], flag, *value]
        build_parser().parse_args(bundle_spelling(words))  # SystemExit (and the test fails) if the CLI lacks it
