"""Time buckets for fleet charts, so a week of a 10,000-device fleet crosses the wire
as a few hundred points. Pure."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from edgefleet.server.errors import InvalidInputError

MAX_POINTS = 300
NICE_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400)
MAX_SPAN = 90 * 86_400


def choose_step(since: float, until: float, max_points: int = MAX_POINTS) -> float:
    """The smallest round step (a minute, five, an hour...) giving at most ``max_points``."""
    if until <= since:
        raise InvalidInputError("'until' must be after 'since'")
    if until - since > MAX_SPAN:
        raise InvalidInputError(f"at most {MAX_SPAN // 86_400} days per chart")
    if not 1 <= max_points <= MAX_POINTS:
        raise InvalidInputError(f"points must be between 1 and {MAX_POINTS}")
    for step in NICE_STEPS:
        if math.ceil((until - since) / step) <= max_points:
            return float(step)
    return float(math.ceil((until - since) / max_points / 86_400) * 86_400)


def bucket_starts(since: float, until: float, step: float) -> list[float]:
    return [since + i * step for i in range(math.ceil((until - since) / step))]


def registered_counts(
    created: Sequence[float], revoked: Sequence[float], instants: Sequence[float]
) -> list[int]:
    """Devices that existed and were not revoked at each instant; both inputs sorted."""
    return [bisect_right(created, t) - bisect_right(revoked, t) for t in instants]
