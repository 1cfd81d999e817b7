"""Reconnect delays: growing, capped, jittered, reset on success."""

from __future__ import annotations

import pytest

from edgefleet.agent.backoff import Backoff


def test_windows_double_up_to_the_cap() -> None:
    upper = Backoff(initial=1.0, maximum=10.0, uniform=lambda _lo, hi: hi)
    assert [upper.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    lower = Backoff(initial=1.0, maximum=10.0, uniform=lambda lo, _hi: lo)
    assert [lower.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0, uniform=lambda _lo, hi: hi)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_real_jitter_spreads_a_fleet() -> None:
    delays = [Backoff(initial=1.0, maximum=60.0).next_delay() for _ in range(50)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 40


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0)
    for _ in range(2000):
        assert 0 < backoff.next_delay() <= 60.0


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_nonsense_bounds_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="want 0 < initial"):
        Backoff(initial=initial, maximum=maximum)
