"""Chart buckets: round steps, at most a few hundred points, registered devices over time."""

from __future__ import annotations

import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.fleet.buckets import (
    MAX_POINTS,
    bucket_starts,
    choose_step,
    registered_counts,
)

HOUR, DAY = 3600.0, 86_400.0


@pytest.mark.parametrize(
    ("span", "points", "step"),
    [
        (HOUR, 300, 60.0),
        (DAY, 300, 300.0),
        (DAY, 200, 600.0),
        (7 * DAY, 300, 3600.0),
        (7 * DAY, 12, 86_400.0),
        (90 * DAY, 30, 3 * 86_400.0),
    ],
)
def test_choose_step_is_round_and_bounded(span: float, points: int, step: float) -> None:
    assert choose_step(1000.0, 1000.0 + span, points) == step
    assert len(bucket_starts(1000.0, 1000.0 + span, step)) <= points


def test_a_week_of_a_large_fleet_stays_a_few_hundred_points() -> None:
    step = choose_step(0.0, 7 * DAY)
    assert len(bucket_starts(0.0, 7 * DAY, step)) <= MAX_POINTS


@pytest.mark.parametrize(
    ("since", "until", "points"),
    [(10.0, 10.0, 10), (10.0, 5.0, 10), (0.0, 91 * DAY, 10), (0.0, DAY, 0), (0.0, DAY, 301)],
)
def test_bad_ranges_are_refused(since: float, until: float, points: int) -> None:
    with pytest.raises(InvalidInputError):
        choose_step(since, until, points)


def test_registered_counts_created_minus_revoked_at_each_instant() -> None:
    created = [10.0, 20.0, 30.0, 40.0]
    revoked = [25.0, 45.0]
    assert registered_counts(created, revoked, [5.0, 10.0, 24.0, 25.0, 50.0]) == [0, 1, 2, 1, 2]
