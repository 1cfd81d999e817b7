"""How many bootstrap replicates may exceed a limit, and which window sizes share limits.

Both are about keeping a promise with finite work: a bootstrap of a few
thousand replicates must still bound the false-alarm rate, and a cache of
limits must cover every window size with few entries, erring on the wide side.
"""

from __future__ import annotations

import math

from edgefleet.server.errors import InvalidInputError

CONFIDENCE = 0.95
"""How sure a calibrated limit is to keep the false-alarm rate at or under its target."""
GRID_STEPS_PER_DOUBLING = 8
"""Window-size buckets per doubling: a window is judged as at most 9 % smaller than it is."""


def allowed_exceedances(replicates: int, false_alarm_rate: float) -> int:
    """How many bootstrap replicates may exceed the limits; refuses unusable settings."""
    if not 0.0 < false_alarm_rate < 0.5:
        raise InvalidInputError(
            f"a false-alarm rate is above 0 and below 0.5, got {false_alarm_rate}"
        )
    allowed = _binomial_bound(replicates, false_alarm_rate)
    if allowed < 0:
        raise InvalidInputError(
            f"{replicates} replicates cannot bound a false-alarm rate of {false_alarm_rate} "
            f"with {CONFIDENCE:.0%} confidence; use at least "
            f"{math.ceil(math.log(1 - CONFIDENCE) / math.log1p(-false_alarm_rate))}"
        )
    return allowed


def _binomial_bound(replicates: int, rate: float) -> int:
    """The largest ``k`` with P(Binomial(replicates, rate) <= k) <= 1 - CONFIDENCE, or -1.

    With ``k`` of ``replicates`` draws over a limit, the true rate of exceeding
    it is above ``rate`` exactly when at most ``k`` of ``replicates`` draws
    land in the top ``rate`` share, which is that binomial probability.
    """
    if replicates < 1:
        return -1
    log_odds = math.log(rate) - math.log1p(-rate)
    log_pmf = replicates * math.log1p(-rate)
    log_cdf = log_pmf
    k = -1
    while log_cdf <= math.log(1 - CONFIDENCE) and k < replicates - 1:
        k += 1
        log_pmf += math.log(replicates - k) - math.log(k + 1) + log_odds
        high, low = max(log_cdf, log_pmf), min(log_cdf, log_pmf)
        log_cdf = high + math.log1p(math.exp(low - high))
    return k


def bucket(count: int) -> int:
    """``count`` rounded down to the grid ``floor(2 ** (k / 8))``.

    A smaller window has wider limits, so judging a window by the limits of
    its bucket's floor stays conservative, and a cache needs only a few
    entries per doubling of the window size.
    """
    if count < 1:
        raise InvalidInputError(f"a window size is at least 1, got {count}")
    step = math.floor(GRID_STEPS_PER_DOUBLING * math.log2(count))
    while _grid(step) > count:
        step -= 1
    while _grid(step + 1) <= count:
        step += 1
    return _grid(step)


def _grid(step: int) -> int:
    return math.floor(2 ** (step / GRID_STEPS_PER_DOUBLING))
