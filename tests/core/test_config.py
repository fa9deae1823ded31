"""pipeline.config: a flag reads the same from YAML (a bool) and from the command line (a string)."""

from __future__ import annotations

import pytest

from pipeline.core.config import as_bool


@pytest.mark.parametrize("value, expected", [
    pytest.param(True, True, id="bool_true"), pytest.param(False, False, id="bool_false"),
    pytest.param("true", True, id="true"), pytest.param("False", False, id="False"),
    pytest.param(" yes ", True, id="yes"), pytest.param("no", False, id="no"),
    pytest.param("1", True, id="one"), pytest.param(0, False, id="zero"),
    pytest.param(None, False, id="none"), pytest.param("", False, id="empty"),
])
def test_as_bool_reads_a_flag_whichever_way_it_came(value: object, expected: bool) -> None:
    assert as_bool(value) is expected


def test_as_bool_names_the_flag_when_the_value_is_not_one() -> None:
    with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
        as_bool("maybe", "resume")
