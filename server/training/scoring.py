"""Model quality numbers from outputs and labels: pure numpy, no TensorFlow, no scikit-learn.

The same functions score the Keras float model and every ``.tflite`` variant,
so the quantization gate compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]]


class Metric(StrEnum):
    ACCURACY = "accuracy"
    F1 = "f1"
    """Macro-averaged over classes: a rare fault class counts as much as the common one."""
    AUC = "auc"
    """ROC AUC of anomaly scores against the anomaly labels."""
    INLIER_RATE = "inlier_rate"
    """Share of samples scored under the threshold (unlabelled anomaly data)."""


def accuracy(labels: Array, predicted: Array) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predicted)))


def macro_f1(labels: Array, predicted: Array, classes: int) -> float:
    """Mean F1 over the classes present in ``labels`` or ``predicted``."""
    truth, guess = np.asarray(labels), np.asarray(predicted)
    scores = []
    for label in range(classes):
        actual, claimed = truth == label, guess == label
        if not actual.any() and not claimed.any():
            continue
        hits = float(np.sum(actual & claimed))
        scores.append(2 * hits / (float(actual.sum()) + float(claimed.sum())))
    return float(np.mean(scores)) if scores else 0.0


def roc_auc(anomalous: npt.NDArray[np.bool_], scores: Array) -> float | None:
    """Probability that an anomaly scores above a normal sample (ties count half).

    None when one of the two groups is empty: there is nothing to rank.
    """
    positive = np.asarray(anomalous, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # Average ranks over ties (1-based), the Mann-Whitney U convention.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def best_f1_threshold(anomalous: npt.NDArray[np.bool_], scores: Array) -> float:
    """The score threshold (flag ``score > threshold``) with the best F1 for anomalies."""
    values = np.asarray(scores, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered, positive = values[order], np.asarray(anomalous, dtype=bool)[order]
    candidates = np.unique(ordered)
    at_or_below = np.searchsorted(ordered, candidates, side="right")
    positives_below = np.r_[0, np.cumsum(positive)][at_or_below]
    hits = positive.sum() - positives_below
    flagged = len(values) - at_or_below
    f1 = 2 * hits / np.maximum(flagged + positive.sum(), 1)
    return float(candidates[int(np.argmax(f1))])


def quantile_threshold(scores: Array, quantile: float = 0.99) -> float:
    """For unlabelled data: flag what scores above ``quantile`` of normal operation."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), quantile))


@dataclass(frozen=True, slots=True)
class Scores:
    """Every metric a model earns on one split; ``primary`` is what the gate compares."""

    primary: Metric
    values: dict[str, float]

    @property
    def value(self) -> float:
        return self.values[self.primary.value]


def classification(labels: Array, probabilities: Array, classes: int, primary: Metric) -> Scores:
    predicted = np.argmax(np.asarray(probabilities).reshape(len(labels), -1), axis=1)
    return Scores(
        primary,
        {
            Metric.ACCURACY.value: accuracy(labels, predicted),
            Metric.F1.value: macro_f1(labels, predicted, classes),
        },
    )


def anomaly(anomalous: npt.NDArray[np.bool_] | None, scores: Array, threshold: float) -> Scores:
    """AUC and F1 at ``threshold`` where anomalies are labelled, else the inlier rate."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    inliers = float(np.mean(values <= threshold))
    auc = None if anomalous is None else roc_auc(anomalous, values)
    if auc is None or anomalous is None:
        return Scores(Metric.INLIER_RATE, {Metric.INLIER_RATE.value: inliers})
    flagged = values > threshold
    hits = float(np.sum(flagged & anomalous))
    f1 = 2 * hits / (float(flagged.sum()) + float(anomalous.sum()) or 1.0)
    return Scores(
        Metric.AUC,
        {Metric.AUC.value: auc, Metric.F1.value: f1, Metric.INLIER_RATE.value: inliers},
    )
