"""Metrics, the quantization gate and the drift baseline: pure functions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgefleet.server.training import baseline, scoring
from edgefleet.server.training.gate import decide
from edgefleet.server.training.pipeline import VariantResult, select_variants
from edgefleet.server.training.quantize import VariantKey
from edgefleet.shared.profiles import HardwareProfile, Variant
from edgefleet.shared.sketch import bin_counts, feature_columns


def test_auc_is_the_share_of_correctly_ordered_pairs() -> None:
    rng = np.random.default_rng(0)
    anomalous = rng.random(60) < 0.3
    scores = np.round(rng.normal(size=60) + anomalous, 1)  # rounding makes ties
    pairs = [
        1.0 if a > n else 0.5 if a == n else 0.0
        for a, n in itertools.product(scores[anomalous], scores[~anomalous])
    ]
    assert scoring.roc_auc(anomalous, scores) == pytest.approx(np.mean(pairs))
    assert scoring.roc_auc(np.zeros(5, bool), scores[:5]) is None


def test_best_f1_threshold_separates_separable_scores() -> None:
    anomalous = np.array([False] * 5 + [True] * 3)
    scores = np.array([0.1, 0.2, 0.15, 0.3, 0.25, 0.9, 0.8, 0.95])
    threshold = scoring.best_f1_threshold(anomalous, scores)
    assert 0.3 <= threshold < 0.8
    assert scoring.anomaly(anomalous, scores, threshold).values["f1"] == 1.0


def test_macro_f1_weighs_a_rare_class_like_a_common_one() -> None:
    labels = np.array([0] * 9 + [1])
    predicted = np.zeros(10, dtype=int)
    assert scoring.accuracy(labels, predicted) == 0.9
    assert scoring.macro_f1(labels, predicted, 2) == pytest.approx((2 * 9 / 19 + 0) / 2)


@pytest.mark.parametrize(
    ("reference", "candidate", "budget", "publishable"),
    [
        (0.980, 0.972, 1.0, True),
        (0.980, 0.970, 1.0, True),  # exactly the budget
        (0.980, 0.969, 1.0, False),
        (0.900, 0.950, 0.0, True),  # better than the float model
        (0.900, 0.899, 0.0, False),
    ],
)
def test_gate_passes_only_within_the_budget(
    reference: float, candidate: float, budget: float, publishable: bool
) -> None:
    decision = decide(reference=reference, candidate=candidate, budget_points=budget)
    assert decision.publishable is publishable
    assert decision.loss_points == pytest.approx((reference - candidate) * 100)


def test_gate_blocks_a_variant_that_failed() -> None:
    decision = decide(reference=0.9, candidate=None, budget_points=1.0, error="op LOG v2")
    assert not decision.publishable
    assert decision.reason == "op LOG v2"


def test_baseline_bins_are_what_the_agent_counts_on_training_data() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16, 3)).astype(np.float32) * [1, 5, 20]
    outputs = rng.dirichlet(np.ones(4), size=500)
    found = baseline.compute(x=x, feature_names=("a", "b", "c"), outputs=outputs, classes=4)
    columns = feature_columns(x, 3)
    for k, bins in enumerate(found.features):
        counts = np.asarray(bin_counts(columns[:, k], bins.edges))
        np.testing.assert_allclose(counts / counts.sum(), bins.probabilities, atol=1e-12)
        assert len(bins.edges) == 9
    assert found.output is not None
    assert found.output.name == "prediction"
    assert found.output.edges == (1.0, 2.0, 3.0)
    shares = np.bincount(outputs.argmax(axis=1), minlength=4) / 500
    np.testing.assert_allclose(found.output.probabilities, shares)


def test_anomaly_baseline_bins_the_score_and_wide_inputs_skip_features() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, baseline.MAX_FEATURES + 1)).astype(np.float32)
    names = tuple(f"f{i}" for i in range(x.shape[1]))
    found = baseline.compute(x=x, feature_names=names, outputs=rng.random((200, 1)), classes=0)
    assert found.features == ()
    assert found.output is not None
    assert found.output.name == "anomaly_score"


def test_a_variant_failing_the_gate_is_skipped_for_the_next_preference() -> None:
    profiles = tuple(
        HardwareProfile(name=name, description="", variants=variants)
        for name, variants in (
            ("rpi4", (Variant.INT8, Variant.DYNAMIC_RANGE, Variant.FLOAT32)),
            ("sim", (Variant.INT8,)),
        )
    )
    passing = decide(reference=0.9, candidate=0.9, budget_points=1.0)
    failing = decide(reference=0.9, candidate=0.85, budget_points=1.0)
    variants = {
        "int8": VariantResult(VariantKey(Variant.INT8), failing, b"x"),
        "dynamic_range": VariantResult(VariantKey(Variant.DYNAMIC_RANGE), passing, b"y"),
        "float32": VariantResult(VariantKey(Variant.FLOAT32), passing, b"z"),
    }
    selection, unserved = select_variants(profiles, variants)
    assert selection == {"rpi4": "dynamic_range"}
    assert unserved == {"sim": "int8: loses 5.00 points against the float model; budget 1"}
