"""Minute buckets of the presence chart: coverage, distinct counts, runs, settling, peaks."""

from __future__ import annotations

import pytest

from edgefleet.server.fleet.rollup_plan import (
    MAX_WINDOW,
    Window,
    longest_window,
    minute_counts,
    peaks,
    settled,
    touched_ranges,
)

T = 1_767_225_600.0
"""A minute boundary."""


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        (T, T + 60, [T]),
        (T + 10, T + 70, [T, T + 60]),
        (T, T + 300, [T, T + 60, T + 120, T + 180, T + 240]),
        (T + 59.5, T + 60, [T]),
        (T + 30, T + 30, [T]),
        (T + 30, T + 20, [T]),
    ],
)
def test_a_window_counts_in_every_minute_it_overlaps(
    start: float, end: float, minutes: list[float]
) -> None:
    counts = minute_counts([("d", start, end)], T - 60, T + 600)
    assert [m for m, n in counts.items() if n] == minutes


def test_duplicates_and_overlapping_windows_of_one_device_count_once() -> None:
    windows: list[Window] = [
        ("a", T, T + 60),
        ("a", T, T + 60),
        ("a", T + 30, T + 90),
        ("b", T + 0.5, T + 120),
    ]
    assert minute_counts(windows, T, T + 180) == {T: 2, T + 60: 2, T + 120: 0}


def test_counts_cover_only_the_asked_minutes() -> None:
    counts = minute_counts([("a", T - 600, T + 600)], T, T + 120)
    assert counts == {T: 1, T + 60: 1}
    assert minute_counts([], T, T + 120) == {T: 0, T + 60: 0}


def test_touched_minutes_form_contiguous_runs() -> None:
    windows: list[Window] = [
        ("a", T + 120, T + 180),
        ("b", T, T + 90),
        ("c", T + 3600, T + 3605),
    ]
    assert touched_ranges(windows) == [(T, T + 180), (T + 3600, T + 3660)]
    assert touched_ranges([]) == []


def test_longest_window() -> None:
    assert longest_window([("a", T, T + 60), ("b", T, T + 900)]) == 900.0
    assert longest_window([]) == 0.0


def test_rows_wait_from_the_first_one_not_settled() -> None:
    assert settled([1.0, 2.0, 9.0, 3.0], before=5.0) == 2
    assert settled([1.0, 5.0], before=5.0) == 2
    assert settled([], before=5.0) == 0


def test_a_chart_bucket_shows_its_peak_minute() -> None:
    minutes = {T: 3, T + 60: 7, T + 120: 5, T + 180: 1}
    starts = [T, T + 120, T + 240]
    ends = [T + 120, T + 240, T + 360]
    assert peaks(minutes, starts, ends) == [7, 5, 0]


def test_an_unaligned_bucket_takes_every_minute_it_overlaps() -> None:
    minutes = {T: 3, T + 60: 7, T + 120: 5}
    assert peaks(minutes, [T + 30, T + 90], [T + 90, T + 150]) == [7, 7]
    assert peaks(minutes, [T + 60], [T + 120]) == [7]


def test_a_window_longer_than_the_longest_an_agent_sends_is_left_out() -> None:
    """One bad clock must not claim billions of minutes (memory) or widen every recount."""
    windows: list[Window] = [("bad", 0.0, 1e11), ("a", T, T + 60), ("b", T, T + MAX_WINDOW)]
    assert touched_ranges(windows) == [(T, T + MAX_WINDOW)]
    assert minute_counts(windows, T, T + 120) == {T: 2, T + 60: 1}
    assert longest_window(windows) == MAX_WINDOW
    assert touched_ranges([("bad", 0.0, 1e11)]) == []
