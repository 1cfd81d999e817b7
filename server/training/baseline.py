"""The drift baseline a manifest carries: quantile bins per input feature and for the output.

Which values make a feature, which number stands for a prediction and which
bin a value falls in are :mod:`edgefleet.shared.sketch`'s rules
(``feature_columns``, ``output_values``, ``bin_counts``), the ones the agent
counts live inputs with, so a model that sees its training distribution
shows no drift. Features are the dataset's ``feature_names`` in order: a
tabular sample's columns, a time window's channels, an image's colours.

A classifier's output value is its predicted class index; its bins are the
classes themselves (edges ``1, 2, ..., K-1``), so the reference histogram is
the share of each predicted class. An anomaly model's output is its score,
binned by quantiles like a feature.

A manifest has room for :data:`MAX_FEATURES` binned features; a model with
more gets the output bins only (a partial list would misalign the rest).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.shared.manifest import Baseline, BaselineBins
from edgefleet.shared.sketch import (
    bin_counts,
    feature_columns,
    output_values,
    probabilities,
    quantile_edges,
)

DEFAULT_BINS = 10
MAX_FEATURES = 128
MAX_CLASS_EDGES = 256
OUTPUT_PREDICTION = "prediction"
OUTPUT_SCORE = "anomaly_score"


def _binned(
    name: str, values: npt.NDArray[np.floating[Any]], edges: tuple[float, ...]
) -> BaselineBins:
    return BaselineBins(
        name=name, edges=edges, probabilities=probabilities(bin_counts(values, edges))
    )


def compute(
    *,
    x: npt.NDArray[np.floating[Any]],
    feature_names: tuple[str, ...],
    outputs: npt.NDArray[np.floating[Any]],
    classes: int,
    bins: int = DEFAULT_BINS,
) -> Baseline:
    """Bins over training inputs ``x`` (samples first) and the model's ``outputs`` on them.

    ``classes`` is the classifier's class count, or 0 for a model with one score.
    """
    features: tuple[BaselineBins, ...] = ()
    if len(feature_names) <= MAX_FEATURES:
        columns = feature_columns(x, len(feature_names))
        features = tuple(
            _binned(name, columns[:, k], quantile_edges(columns[:, k], bins))
            for k, name in enumerate(feature_names)
        )
    predicted = output_values(outputs)
    if 2 <= classes <= MAX_CLASS_EDGES + 1:
        output = _binned(OUTPUT_PREDICTION, predicted, tuple(float(c) for c in range(1, classes)))
    else:
        name = OUTPUT_PREDICTION if classes else OUTPUT_SCORE
        output = _binned(name, predicted, quantile_edges(predicted, bins))
    return Baseline(features=features, output=output)
