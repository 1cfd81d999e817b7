"""The one binning rule that drift sketches and their baselines share.

The server computes a baseline's reference histogram from training data and
the agent counts live inputs into the same bins; if the two disagreed about
which bin a value on an edge belongs to, a model with no drift at all would
show some. So both call :func:`bin_counts`.

``n`` edges make ``n + 1`` bins: bin 0 holds values below ``edges[0]``, bin
``i`` holds ``edges[i-1] <= v < edges[i]``, the last bin holds values at or
above ``edges[-1]`` (right-open bins, like ``numpy.searchsorted(side="right")``).
NaN is not a value in any bin: it is left out of the counts and reported
separately, because a sensor emitting NaN is a fault, not a distribution shift.

Which numbers are binned is shared too: :func:`feature_columns` says which input
values make up each baseline feature and :func:`output_values` which number
stands for a prediction in the output bins. :func:`histogram_quantile` reads a
quantile back from such counts; the agent's probation and the server's rollout
gates both compare p95 latencies, and two readings of one histogram would let
them disagree about the same device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def bin_indices(values: npt.ArrayLike, edges: Sequence[float]) -> npt.NDArray[np.intp]:
    """The bin of each non-NaN value (NaNs dropped first)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[~np.isnan(array)]
    indices: npt.NDArray[np.intp] = np.searchsorted(
        np.asarray(edges, dtype=np.float64), array, side="right"
    )
    return indices


def bin_counts(values: npt.ArrayLike, edges: Sequence[float]) -> tuple[int, ...]:
    """Counts per bin, ``len(edges) + 1`` of them."""
    counts = np.bincount(bin_indices(values, edges), minlength=len(edges) + 1)
    return tuple(int(c) for c in counts)


def nan_count(values: npt.ArrayLike) -> int:
    return int(np.count_nonzero(np.isnan(np.asarray(values, dtype=np.float64))))


def quantile_edges(values: npt.NDArray[Any], bins: int) -> tuple[float, ...]:
    """Edges that split ``values`` into about ``bins`` equally likely bins.

    Repeated quantiles (a feature with few distinct values) collapse into one
    edge, so edges stay strictly increasing as the manifest requires; such a
    feature simply gets fewer bins.
    """
    if bins < 2:
        raise ValueError("quantile_edges needs at least 2 bins")
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        raise ValueError("quantile_edges needs at least one finite value")
    inner = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(inner)
    if edges.size == 0:
        edges = np.asarray([finite[0]])
    return tuple(float(e) for e in edges)


def probabilities(counts: Sequence[int]) -> tuple[float, ...]:
    """Counts as shares that sum to 1 (uniform when there are no counts)."""
    total = sum(counts)
    if total == 0:
        return tuple(1.0 / len(counts) for _ in counts)
    shares = [c / total for c in counts]
    shares[-1] = max(0.0, 1.0 - sum(shares[:-1]))
    return tuple(shares)


def feature_columns(inputs: npt.ArrayLike, features: int) -> npt.NDArray[np.floating[Any]]:
    """Model inputs (leading batch axis) as one column per baseline feature.

    The baseline and the agent must agree on which values make up "feature
    i", or drift would be measured on the wrong numbers. A sample of exactly
    ``features`` values is tabular: feature ``i`` is its ``i``-th value. Else,
    when the sample's last axis has ``features`` entries, each is a channel
    (a sensor axis over a time window, an image's colour) pooled over every
    other axis. Any other shape has no agreed reading and is refused. Float
    inputs keep their precision (a view, no copy): binning converts anyway.
    """
    array = np.asarray(inputs)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if array.ndim < 1 or features < 1:
        raise ValueError("feature_columns needs a batch axis and at least one feature")
    sample = array.shape[1:]
    if math.prod(sample) == features:
        return array.reshape(array.shape[0], features)
    if sample and sample[-1] == features:
        return array.reshape(-1, features)
    raise ValueError(f"a sample of shape {sample} does not split into {features} features")


def output_values(outputs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The one number per prediction that a baseline's ``output`` bins describe.

    A single-value output (a regression, an anomaly score) is its own value;
    a vector output is a classifier's, and the predicted class index is what
    its distribution shift shows in.
    """
    array = np.asarray(outputs, dtype=np.float64)
    rows = array.reshape(array.shape[0], -1)
    values: npt.NDArray[np.float64] = (
        rows[:, 0] if rows.shape[1] == 1 else np.argmax(rows, axis=1).astype(np.float64)
    )
    return values


def histogram_quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """Interpolated inside the bucket (a probation ratio wants more than a bucket's edge);
    the overflow bucket has no top, so it gives its floor."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            low = bounds[index - 1] if index else min(0.0, bounds[0])
            return low + (bounds[index] - low) * max(0.0, rank - seen) / count
        seen += count
    return bounds[-1]
