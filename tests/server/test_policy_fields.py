"""The converters both policies share: ranges as the messages say them, type checks,
records refusing unknown and missing keys by path, and the JSON form written back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.policy_fields import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    PERCENT,
    POSITIVE,
    Convert,
    Range,
    boolean,
    check,
    check_cron,
    choice,
    integer,
    join,
    number,
    optional,
    plain,
    record,
    string,
)


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class Inner:
    size: int
    colour: Colour = Colour.RED


@dataclass(frozen=True, slots=True)
class Outer:
    inner: Inner
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] | None = None


@pytest.mark.parametrize(
    ("allowed", "said"),
    [
        (PERCENT, "in (0, 100]"),
        (NON_NEGATIVE, ">= 0"),
        (POSITIVE, "> 0"),
        (AT_LEAST_ONE, ">= 1"),
        (Range(0, 1, high_open=True), "in [0, 1)"),
        (Range(0.5, 2.25), "in [0.5, 2.25]"),
    ],
)
def test_a_range_says_itself_as_the_messages_do(allowed: Range, said: str) -> None:
    assert str(allowed) == said


@pytest.mark.parametrize(
    ("allowed", "inside", "outside"),
    [
        (PERCENT, [1e-9, 50, 100], [0, -1, 100.0001]),
        (NON_NEGATIVE, [0, 1e12], [-1e-9, math.inf, math.nan]),
        (POSITIVE, [1e-9], [0, math.inf]),
        (Range(0, 1, high_open=True), [0, 0.999], [1, math.nan]),
    ],
)
def test_a_range_holds_its_bounds_and_never_infinity_or_nan(
    allowed: Range, inside: list[float], outside: list[float]
) -> None:
    assert all(allowed.contains(value) for value in inside)
    assert not any(allowed.contains(value) for value in outside)


def test_check_names_the_path_the_range_and_the_value() -> None:
    check(100, "x.percent", PERCENT)
    with pytest.raises(InvalidInputError, match=r"^x\.percent must be in \(1, 100\], got 0\.1$"):
        check(0.1, "x.percent", Range(1, 100, low_open=True))


@pytest.mark.parametrize(
    ("convert", "value", "message"),
    [
        (number, True, "f must be a number, got bool"),
        (number, "1", "f must be a number, got str"),
        (number, None, "f must be a number, got null"),
        (integer, 1.0, "f must be a whole number, got float"),
        (integer, False, "f must be a whole number, got bool"),
        (boolean, 0, "f must be true or false, got int"),
        (string, b"x", "f must be a string, got bytes"),
        (choice(Colour), "RED", "f must be one of red, blue, got 'RED'"),
        (optional(integer), "1", "f must be a whole number, got str"),
    ],
)
def test_converters_refuse_the_wrong_type_naming_the_path(
    convert: Convert, value: object, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        convert(value, "f")
    assert str(caught.value) == message


def test_converters_pass_good_values_through() -> None:
    assert number(3, "f") == 3.0
    assert type(number(3, "f")) is float
    assert integer(3, "f") == 3
    assert boolean(False, "f") is False
    assert string("", "f") == ""
    assert choice(Colour)("blue", "f") is Colour.BLUE
    assert optional(integer)(None, "f") is None


_inner = record(Inner, {"size": integer, "colour": choice(Colour)})
_outer = record(
    Outer,
    {
        "inner": _inner,
        "tags": lambda value, path: tuple(string(tag, path) for tag in value),
        "extra": optional(lambda value, path: dict(value)),
    },
)


def test_a_record_fills_defaults_and_converts_each_field() -> None:
    assert _outer({"inner": {"size": 2}}, "") == Outer(inner=Inner(size=2))
    assert _outer({"inner": {"size": 2, "colour": "blue"}, "tags": ["a"]}, "") == Outer(
        inner=Inner(size=2, colour=Colour.BLUE), tags=("a",)
    )


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ([], "", "policy must be an object, got list"),
        (None, "rollout", "rollout must be an object, got null"),
        ({"inner": {"size": 1}, "tag": []}, "", "tag is not a policy field (known: inner, tags"),
        ({}, "", "inner is required"),
        ({"inner": {}}, "p", "p.inner.size is required"),
        ({"inner": {"size": 1, "colour": "green"}}, "", "inner.colour must be one of red, blue"),
        ({"inner": {"size": "1"}}, "a.b", "a.b.inner.size must be a whole number, got str"),
    ],
)
def test_a_record_refuses_by_path(data: object, path: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        _outer(data, path)
    assert str(caught.value).startswith(message)


def test_join_starts_a_path_at_the_root() -> None:
    assert join("", "waves") == "waves"
    assert join("waves[0]", "count") == "waves[0].count"


def test_plain_writes_json_and_copies_every_container() -> None:
    extra = {"waves": [{"percent": 100}], "mode": Colour.BLUE}
    value = Outer(inner=Inner(size=1), tags=("a", "b"), extra=extra)
    written = plain(value)
    assert written == {
        "inner": {"size": 1, "colour": "red"},
        "tags": ["a", "b"],
        "extra": {"waves": [{"percent": 100}], "mode": "blue"},
    }
    assert type(written["inner"]["colour"]) is str
    written["extra"]["waves"][0]["percent"] = 5
    written["extra"]["waves"].append({})
    assert extra == {"waves": [{"percent": 100}], "mode": Colour.BLUE}


@pytest.mark.parametrize(
    ("cron", "timezone", "message"),
    [
        ("0 3 * *", "UTC", "at.cron: cron needs 5 fields"),
        ("0 3 * * *", "Europe/Atlantis", "at.timezone: unknown time zone 'Europe/Atlantis'"),
    ],
)
def test_check_cron_prefixes_the_window_modules_refusal(
    cron: str, timezone: str, message: str
) -> None:
    check_cron("30 2 * * mon-fri", "America/New_York", "at")
    with pytest.raises(InvalidInputError) as caught:
        check_cron(cron, timezone, "at")
    assert str(caught.value).startswith(message)
