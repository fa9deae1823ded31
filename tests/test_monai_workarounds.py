"""The table of MONAI workarounds (pipeline.monai_workarounds) is true to the installed MONAI and to our code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import monai
import pytest

import pipeline
import pipeline.monai_workarounds
from tests.helpers import CONFIGS

TOPIC, VERSION, WHAT, WHERE, LET_GO = range(5)


def _rows() -> list[list[str]]:
    """The table's rows as cells, continuation lines joined; the columns are the ``=`` runs of its rules."""
    lines = pipeline.monai_workarounds.__doc__.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("====")]
    assert len(rules) == 3, "the docstring holds one simple table: a rule above and below the header, one at the end"
    spans = [m.span() for m in re.finditer(r"=+", lines[rules[0]])]
    rows: list[list[str]] = []
    for line in lines[rules[1] + 1 : rules[2]]:
        cells = [line[a : (b if k < len(spans) - 1 else None)].strip() for k, (a, b) in enumerate(spans)]
        if cells[TOPIC]:
            rows.append(cells)
        else:  # a continuation line of the row above
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
    return rows


ROWS = _rows()


def test_the_table_lists_the_known_workarounds() -> None:
    topics = [row[TOPIC] for row in ROWS]
    assert len(topics) == len(set(topics)) >= 15
    assert {"loss", "val Dice", "checkpoints", "regions", "imports", "CPU autocast", "cache copy"} <= set(topics)


@pytest.mark.parametrize("row", [pytest.param(row, id=row[TOPIC]) for row in ROWS])
def test_each_workaround_was_written_for_the_installed_monai(row: list[str]) -> None:
    assert row[VERSION] == monai.__version__, (
        f"{row[TOPIC]}: written for MONAI {row[VERSION]}, MONAI {monai.__version__} is installed: check whether it "
        f"now does what the row's last column says ({row[LET_GO]}); then delete our code and the row, or update "
        "the row's version in pipeline/monai_workarounds.py")


@pytest.mark.parametrize("row", [pytest.param(row, id=row[TOPIC]) for row in ROWS])
def test_each_workaround_names_code_or_config_that_exists(row: list[str]) -> None:
    modules = {m.name.removeprefix("pipeline.") for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")}
    where = row[WHERE]
    configs = re.findall(r"\b(\w+\.yaml)\b", where)
    code = re.sub(r"\b\w+\.yaml\b", "", where)
    named = [(module, name) for module, name in re.findall(r"\b([a-z_]+(?:\.[a-z_]+)*)\.([A-Za-z_]\w*)\b", code)
             if module in modules]
    for module, name in named:
        assert hasattr(importlib.import_module(f"pipeline.{module}"), name), f"{row[TOPIC]}: pipeline.{module}.{name}"
    for config in configs:
        assert any(CONFIGS.rglob(config)), f"{row[TOPIC]}: no {config} in bundle/configs"
    if "__getattr__" in where:
        named.append(("", "__getattr__"))
        assert callable(vars(pipeline).get("__getattr__"))
    assert named or configs, f"{row[TOPIC]}: 'where' names no pipeline object or config: {where!r}"


@pytest.mark.parametrize("row", pipeline.monai_workarounds.QUIET, ids=lambda r: r[2][:24])
def test_each_silenced_notice_is_still_raised_by_the_installed_monai(row: tuple[str, str, str, str]) -> None:
    version, _, pattern, _ = row
    assert version == monai.__version__
    literal = re.sub(r"\\(.)", r"\1", pattern).split("[")[0].strip()  # the pattern's leading text
    source = "\n".join(p.read_text(errors="ignore") for p in Path(monai.__file__).parent.rglob("*.py"))
    assert literal in source, f"MONAI {monai.__version__} no longer says {literal!r}: drop the filter"


def test_quiet_silences_the_listed_notices_and_verbose_keeps_them() -> None:
    import logging
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.monai_workarounds.quiet()
        warnings.warn("parsing config_file ['a.yaml']: any ...", UserWarning, stacklevel=1)
        warnings.warn("Can't merge entry ['+train'], 'x' is not in target dict", UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]
    logger = logging.getLogger("monai.bundle.workflows")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "Not all config files are in x", (), None)
    assert not all(f.filter(record) for f in logger.filters)
