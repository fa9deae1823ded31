"""`make demo` (python -m pipeline demo): every stage through the MONAI CLI, the table and the `demo:` line."""

from __future__ import annotations

import pytest

from pipeline import demo
from pipeline.__main__ import build_parser


@pytest.mark.parametrize(("argv", "fast"), [pytest.param([], True, id="default_fast"),
                                            pytest.param(["--plain"], False, id="plain_flag")])
def test_demo_command_line_chooses_the_configuration(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                     fast: bool) -> None:
    seen: dict = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.update(kwargs))
    args = build_parser().parse_args(["demo", *argv])
    assert args.func(args) == 0 and seen["fast"] is fast




@pytest.mark.parametrize("holds", ["models/model.pt", "seg", "run.json", "datalist.json"])
def test_a_second_demo_never_writes_into_a_started_or_finished_run(tmp_path, holds: str) -> None:
    run = tmp_path / "runs" / "demo"
    (run / holds).parent.mkdir(parents=True, exist_ok=True)
    (run / holds).mkdir() if holds == "seg" else (run / holds).write_text("{}")
    assert demo.free_run_dir(run) == tmp_path / "runs" / "demo_2"
    assert demo.free_run_dir(tmp_path / "runs" / "fresh") == tmp_path / "runs" / "fresh"


def test_too_few_demo_cases_for_its_folds_is_one_line_naming_the_demos_option(tmp_path, capsys) -> None:
    from pipeline.__main__ import main

    assert main(["demo", "--cases", "3", "--data-dir", str(tmp_path / "d"), "--run-dir", str(tmp_path / "r")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"error: the demo splits its synthetic cases into {demo.DEMO_FOLDS} folds (one validates): pass " \
                   f"--cases {demo.DEMO_FOLDS} or more, not 3"
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()
