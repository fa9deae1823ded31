"""pipeline.config: a flag reads the same from YAML (a bool) and from the command line (a string)."""

from __future__ import annotations

import pytest

from pipeline.core.config import as_bool, as_folds
from pipeline.core.errors import UserError


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


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(0.1, 0.1, id="number"), pytest.param("0.25", 0.25, id="text_from_the_cli"),
    pytest.param(0, 0.0, id="zero"), pytest.param(1, 1.0, id="one")])
def test_a_share_reads_numbers_and_their_text(value: object, expected: float) -> None:
    from pipeline.core.config import as_fraction

    assert as_fraction(value, "share") == expected


@pytest.mark.parametrize("value", [pytest.param("abc", id="text"), pytest.param(-0.1, id="negative"),
                                   pytest.param(1.5, id="above_one"), pytest.param(True, id="a_flag")])
def test_a_share_outside_0_to_1_or_not_a_number_is_one_line_naming_the_flag(value: object) -> None:
    from pipeline.core.config import as_fraction
    from pipeline.core.errors import UserError

    with pytest.raises(UserError, match=r"^--share must be a number from 0 to 1, got "):
        as_fraction(value, "share")


@pytest.mark.parametrize(("value", "expected"), [(0, 0), ("3", 3), (" 2 ", 2), ("all", "all"), ("ALL", "all")])
def test_a_fold_is_a_number_or_all(value: object, expected: int | str) -> None:
    from pipeline.core.config import as_fold

    assert as_fold(value) == expected


@pytest.mark.parametrize("value", ["al", "-1", "1.5", True, None])
def test_a_fold_neither_a_number_nor_all_is_refused_naming_the_option(value: object) -> None:
    from pipeline.core.config import as_fold

    with pytest.raises(UserError, match=r"--fold must be a fold number \(0, 1, \.\.\.\) or all"):
        as_fold(value)


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param([0, 1], [0, 1], id="list"), pytest.param("[0,1]", [0, 1], id="cli_text"),
    pytest.param("0, 2", [0, 2], id="commas"), pytest.param("10", [10], id="one_two_digit_fold_not_two_folds"),
    pytest.param(3, [3], id="one_number"), pytest.param(("1", "2"), [1, 2], id="texts")])
def test_a_fold_list_reads_every_way_the_cli_hands_it_over(value: object, expected: list[int]) -> None:
    assert as_folds(value, "ensemble_folds") == expected


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("[0,0]", r"fold\(s\) \[0\] given twice", id="a_fold_twice_would_count_twice"),
    pytest.param("[]", "lists no fold", id="empty"), pytest.param([True], "whole number", id="bool"),
    pytest.param("[0,-1]", "at least 0", id="negative"), pytest.param("a,b", "whole number", id="text")])
def test_a_fold_list_that_is_not_distinct_fold_numbers_is_refused_naming_the_option(value: object,
                                                                                   message: str) -> None:
    with pytest.raises(UserError, match=rf"^--ensemble_folds .*{message}"):
        as_folds(value, "ensemble_folds")
