from __future__ import annotations

import math

import numpy as np
import pytest

from edgefleet.shared.manifest import BaselineBins
from edgefleet.shared.sketch import bin_counts, nan_count, probabilities, quantile_edges


@pytest.mark.parametrize(
    ("value", "expected_bin"),
    [(-5.0, 0), (0.0, 1), (0.5, 1), (1.0, 2), (1.5, 2), (2.0, 3), (9.0, 3)],
)
def test_values_on_an_edge_go_to_the_bin_above(value: float, expected_bin: int) -> None:
    counts = bin_counts([value], (0.0, 1.0, 2.0))
    assert counts.index(1) == expected_bin
    assert sum(counts) == 1


def test_nan_is_counted_apart_and_infinities_land_in_the_end_bins() -> None:
    values = [math.nan, -math.inf, math.inf, 0.5]
    assert bin_counts(values, (0.0, 1.0)) == (1, 1, 1)
    assert nan_count(values) == 1


def test_quantile_edges_split_evenly_and_make_a_valid_baseline() -> None:
    values = np.random.default_rng(1).normal(size=10_000)
    edges = quantile_edges(values, 10)
    shares = probabilities(bin_counts(values, edges))
    assert len(edges) == 9
    assert all(abs(s - 0.1) < 0.01 for s in shares)
    BaselineBins(name="x", edges=edges, probabilities=shares)


def test_few_distinct_values_collapse_into_fewer_strictly_increasing_edges() -> None:
    edges = quantile_edges(np.array([0.0] * 90 + [1.0] * 10), 10)
    assert list(edges) == sorted(set(edges))
    assert len(edges) <= 2


def test_no_finite_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        quantile_edges(np.array([math.nan]), 4)


def test_probabilities_of_nothing_are_uniform_and_always_sum_to_one() -> None:
    assert probabilities((0, 0, 0, 0)) == (0.25, 0.25, 0.25, 0.25)
    assert math.isclose(sum(probabilities((1, 2, 3, 7))), 1.0)
