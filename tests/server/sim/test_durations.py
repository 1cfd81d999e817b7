"""Durations as scenario authors write them, and the reasons the rest are refused."""

from __future__ import annotations

import pytest

from edgefleet.server.sim.durations import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("0s", 0.0),
        ("500ms", 0.5),
        ("90s", 90.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("2m500ms", 120.5),
        ("1h0m0s250ms", 3600.25),
    ],
)
def test_accepted(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


def test_a_number_comes_back_as_a_float() -> None:
    assert type(parse_duration(30)) is float


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "cannot be negative"),
        (-0.5, "cannot be negative"),
        ("-5s", "cannot be negative"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
        ("9" * 400 + "h", "must be finite"),
        ("", "not a duration"),
        ("30", "not a duration"),
        ("5 s", "not a duration"),
        ("5d", "not a duration"),
        (".5s", "not a duration"),
        ("1e3s", "not a duration"),
        ("5sec", "not a duration"),
        ("30s1m", "out of order or repeated"),
        ("1m1m", "out of order or repeated"),
        ("500ms1s", "out of order or repeated"),
        (True, "expected a duration"),
        (None, "expected a duration"),
        ([30], "expected a duration"),
    ],
)
def test_refused_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(value)
