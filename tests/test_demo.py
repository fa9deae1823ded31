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


