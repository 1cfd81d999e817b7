from __future__ import annotations

import math

import numpy as np
import pytest

from edgefleet.shared.manifest import BaselineBins
from edgefleet.shared.sketch import (
    bin_counts,
    feature_columns,
    nan_count,
    output_values,
    probabilities,
    quantile_edges,
)


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


def test_a_tabular_sample_gives_one_feature_per_value() -> None:
    batch = np.arange(8.0).reshape(2, 4)
    assert feature_columns(batch, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_a_window_of_channels_pools_each_channel_over_time() -> None:
    windows = np.arange(12.0).reshape(2, 3, 2)  # 2 samples, 3 time steps, 2 channels
    columns = feature_columns(windows, 2)
    assert columns.shape == (6, 2)
    assert columns[:, 0].tolist() == [0, 2, 4, 6, 8, 10]


def test_a_shape_with_no_agreed_feature_reading_is_refused() -> None:
    with pytest.raises(ValueError, match="does not split into 5 features"):
        feature_columns(np.zeros((2, 3, 2)), 5)


def test_outputs_are_the_value_itself_or_the_predicted_class() -> None:
    assert output_values(np.array([[0.25], [3.0]])).tolist() == [0.25, 3.0]
    assert output_values(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])).tolist() == [1.0, 0.0]
