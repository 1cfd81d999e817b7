"""The binomial bound on bootstrap exceedances, and the grid of window sizes that share limits."""

from __future__ import annotations

import math

import pytest

from edgefleet.server.drift.bounds import (
    CONFIDENCE,
    GRID_STEPS_PER_DOUBLING,
    allowed_exceedances,
    bucket,
)
from edgefleet.server.errors import InvalidInputError


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1))


@pytest.mark.parametrize(("replicates", "rate"), [(1000, 0.01), (4000, 0.01), (2000, 0.05)])
def test_the_allowed_exceedances_are_the_largest_the_binomial_bound_permits(
    replicates: int, rate: float
) -> None:
    k = allowed_exceedances(replicates, rate)
    assert binomial_cdf(k, replicates, rate) <= 1 - CONFIDENCE
    assert binomial_cdf(k + 1, replicates, rate) > 1 - CONFIDENCE


def test_four_thousand_replicates_allow_29_exceedances_at_one_percent() -> None:
    assert allowed_exceedances(4000, 0.01) == 29


def test_too_few_replicates_to_bound_the_rate_are_refused_with_the_number_needed() -> None:
    assert allowed_exceedances(299, 0.01) == 0
    with pytest.raises(InvalidInputError, match="298 replicates .* use at least 299"):
        allowed_exceedances(298, 0.01)


@pytest.mark.parametrize("rate", [0.0, -0.1, 0.5, 1.0])
def test_a_false_alarm_rate_outside_zero_to_a_half_is_refused(rate: float) -> None:
    with pytest.raises(InvalidInputError, match="false-alarm rate"):
        allowed_exceedances(4000, rate)


def test_buckets_round_down_monotonically_and_at_most_one_grid_step() -> None:
    previous = 0
    for count in range(1, 5000):
        size = bucket(count)
        assert previous <= size <= count
        assert size > count / 2 ** (1 / GRID_STEPS_PER_DOUBLING) - 1
        previous = size
    assert len({bucket(n) for n in range(1024, 2048)}) == GRID_STEPS_PER_DOUBLING


def test_a_grid_size_is_its_own_bucket() -> None:
    assert [bucket(n) for n in (1, 181, 197, 234, 256, 1024)] == [1, 181, 197, 234, 256, 1024]
    assert bucket(255) == 234


def test_a_window_of_no_inferences_has_no_bucket() -> None:
    with pytest.raises(InvalidInputError, match="at least 1"):
        bucket(0)
