"""Drift sketches on the real test classifier, with a baseline built by the shared binning rule."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.agent.sketch import POSITIONS_PER_SAMPLE, ByteBudget, DriftSketch, confidences
from edgefleet.shared import messages
from edgefleet.shared.agent_config import DriftSection
from edgefleet.shared.manifest import (
    Baseline,
    BaselineBins,
    Manifest,
    SelfTest,
    SelfTestVector,
    TensorDType,
    TensorSpec,
)
from edgefleet.shared.messages import Drift, SampleReason
from edgefleet.shared.sketch import bin_counts, output_values, probabilities, quantile_edges
from tests.agent.conftest import ServedModel
from tests.harness.models import TfliteModels

Floats = npt.NDArray[Any]
HOUR = 3600.0


def bins(name: str, values: Floats, count: int) -> BaselineBins:
    edges = quantile_edges(values, count)
    return BaselineBins(
        name=name, edges=edges, probabilities=probabilities(bin_counts(values, edges))
    )


@pytest.fixture(scope="module")
def manifest(float_model: ServedModel, tflite_models: TfliteModels) -> Manifest:
    """The float model's manifest with a baseline from its calibration data."""
    data = tflite_models.representative
    outputs = float_model.load().predict(data)
    baseline = Baseline(
        features=tuple(bins(f"x{i}", data[:, i], 8) for i in range(4)),
        output=bins("class", output_values(outputs), 3),
    )
    return dataclasses.replace(float_model.manifest, baseline=baseline)


def sketch(
    manifest: Manifest,
    *,
    seed: int = 0,
    budget: ByteBudget | None = None,
    reservoir: int = 16,
    hard: int = 8,
) -> DriftSketch:
    return DriftSketch(
        manifest,
        DriftSection(reservoir_size=reservoir, hard_examples=hard),
        rng=np.random.default_rng(seed),
        budget=budget or ByteBudget(10**9, now=0.0),
        start=100.0,
    )


def observed(
    float_model: ServedModel, n: int, seed: int = 1
) -> tuple[Floats, Floats, Floats | None]:
    inputs = np.random.default_rng(seed).uniform(-1, 1, (n, 4)).astype(np.float32)
    outputs = float_model.load().predict(inputs)
    return inputs, outputs, confidences(outputs)


def test_counts_follow_the_baseline_bins_and_the_message_round_trips(
    manifest: Manifest, float_model: ServedModel
) -> None:
    inputs, outputs, confidence = observed(float_model, 300)
    assert confidence is not None
    drifting = sketch(manifest)
    drifting.add(inputs[:100], outputs[:100], confidence[:100])
    drifting.add(inputs[100:], outputs[100:], confidence[100:])
    drift = drifting.close(seq=4, now=160.0)
    assert drift is not None
    assert manifest.baseline is not None
    assert (drift.seq, drift.count, drift.window_start, drift.window_end) == (4, 300, 100.0, 160.0)
    for i, (feature, reference) in enumerate(
        zip(drift.features, manifest.baseline.features, strict=True)
    ):
        assert feature.name == reference.name
        assert feature.counts == bin_counts(inputs[:, i], reference.edges)
    assert drift.output is not None
    assert manifest.baseline.output is not None
    assert drift.output.counts == bin_counts(output_values(outputs), manifest.baseline.output.edges)
    assert drift.mean_confidence == pytest.approx(float(confidence.mean()))
    assert messages.decode_as(Drift, messages.encode(drift)) == drift


def test_hard_examples_are_the_least_confident_inputs_of_the_window(
    manifest: Manifest, float_model: ServedModel
) -> None:
    inputs, outputs, confidence = observed(float_model, 500, seed=2)
    assert confidence is not None
    drifting = sketch(manifest, hard=5)
    for start in range(0, 500, 64):
        block = slice(start, start + 64)
        drifting.add(inputs[block], outputs[block], confidence[block])
    drift = drifting.close(seq=1, now=200.0)
    assert drift is not None
    hard = [s for s in drift.samples if s.reason is SampleReason.LOW_CONFIDENCE]
    lowest = np.sort(confidence)[:5]
    assert [s.confidence for s in hard] == pytest.approx(lowest.tolist())
    for sample in hard:
        assert sample.confidence is not None
        index = int(np.flatnonzero(np.isclose(confidence, sample.confidence))[0])
        assert sample.values == pytest.approx(inputs[index].tolist())
    assert len({s.sample_id for s in drift.samples}) == len(drift.samples)


def test_the_reservoir_is_a_uniform_sample_of_the_window(manifest: Manifest) -> None:
    """Algorithm R: every one of n inputs ends up among k draws with probability k/n."""
    n, k, trials = 60, 6, 1000
    rows = np.repeat(np.arange(n, dtype=np.float32)[:, np.newaxis], 4, axis=1)
    outputs = np.full((n, 3), 1 / 3, dtype=np.float32)
    hits = np.zeros(n)
    unbinned = dataclasses.replace(manifest, baseline=None)  # only the draws matter here
    block_sizes = np.random.default_rng(99).integers(1, 13, size=trials)
    for trial in range(trials):
        drifting = sketch(unbinned, seed=trial, reservoir=k, hard=0)
        step = int(block_sizes[trial])
        for start in range(0, n, step):
            drifting.add(rows[start : start + step], outputs[start : start + step], None)
        drift = drifting.close(seq=1, now=101.0)
        assert drift is not None
        drawn = [int(s.values[0]) for s in drift.samples]
        assert len(set(drawn)) == k
        hits[drawn] += 1
    expected = trials * k / n
    sigma = np.sqrt(trials * (k / n) * (1 - k / n))
    assert np.abs(hits - expected).max() < 4.5 * sigma
    # and neither early nor late inputs are favoured
    assert abs(hits[: n // 2].sum() - hits[n // 2 :].sum()) < 4.5 * sigma * np.sqrt(n)


def test_the_same_seed_draws_the_same_samples(manifest: Manifest, float_model: ServedModel) -> None:
    inputs, outputs, confidence = observed(float_model, 200, seed=3)
    drawn = []
    for _ in range(2):
        drifting = sketch(manifest, seed=7)
        drifting.add(inputs, outputs, confidence)
        drift = drifting.close(seq=2, now=110.0)
        assert drift is not None
        drawn.append(drift.samples)
    assert drawn[0] == drawn[1]


def test_an_empty_window_sends_nothing(manifest: Manifest) -> None:
    assert sketch(manifest).close(seq=1, now=500.0) is None


def test_a_regression_output_has_no_confidence_and_no_hard_examples(manifest: Manifest) -> None:
    regression = dataclasses.replace(
        manifest,
        outputs=(TensorSpec(name="score", dtype=TensorDType.FLOAT32, shape=(1, 1)),),
        self_test=SelfTest(
            vectors=(SelfTestVector(input=(0.0, 0.0, 0.0, 0.0), expected=(1.0,)),),
            tolerance=0.0,
        ),
        baseline=Baseline(
            features=(),
            output=BaselineBins(name="score", edges=(0.0, 10.0), probabilities=(0.2, 0.6, 0.2)),
        ),
    )
    outputs = np.array([[-3.0], [4.0], [12.0], [5.0]], dtype=np.float32)
    assert confidences(outputs) is None
    drifting = sketch(regression)
    drifting.add(np.zeros((4, 4), np.float32), outputs, None)
    drift = drifting.close(seq=1, now=101.0)
    assert drift is not None
    assert drift.output is not None
    assert drift.output.counts == (1, 2, 1)
    assert drift.mean_confidence is None
    assert {s.reason for s in drift.samples} == {SampleReason.RESERVOIR}


def test_logits_are_not_mistaken_for_probabilities() -> None:
    assert confidences(np.array([[2.5, -1.0, 0.3]], dtype=np.float32)) is None


def test_inputs_that_do_not_split_into_the_baseline_features_get_no_feature_sketch(
    manifest: Manifest, caplog: pytest.LogCaptureFixture
) -> None:
    odd = dataclasses.replace(
        manifest,
        baseline=Baseline(
            features=tuple(
                BaselineBins(name=f"f{i}", edges=(0.0,), probabilities=(0.5, 0.5)) for i in range(3)
            )
        ),
    )
    with caplog.at_level(logging.WARNING):
        drifting = sketch(odd)
    assert "does not split into 3 features" in caplog.text
    drifting.add(np.zeros((2, 4), np.float32), np.full((2, 3), 1 / 3, np.float32), None)
    drift = drifting.close(seq=1, now=101.0)
    assert drift is not None
    assert (drift.features, drift.count) == ((), 2)


def test_over_budget_samples_go_first_reservoir_before_hard_examples(
    manifest: Manifest, float_model: ServedModel
) -> None:
    inputs, outputs, confidence = observed(float_model, 400, seed=4)
    full = sketch(manifest)
    full.add(inputs, outputs, confidence)
    complete = full.close(seq=1, now=101.0)
    assert complete is not None
    bare = len(messages.encode(dataclasses.replace(complete, samples=())))
    with_hard = len(messages.encode(dataclasses.replace(complete, samples=complete.samples[:8])))
    budget = ByteBudget(with_hard + 10, now=101.0)
    tight = sketch(manifest, budget=budget)
    tight.add(inputs, outputs, confidence)
    trimmed = tight.close(seq=1, now=101.0)
    assert trimmed is not None
    assert len(complete.samples) == 24
    assert trimmed.samples == complete.samples[:8]
    assert all(s.reason is SampleReason.LOW_CONFIDENCE for s in trimmed.samples)
    assert budget.dropped_samples == 16
    assert budget.sent_bytes == len(messages.encode(trimmed))
    assert bare < budget.sent_bytes <= with_hard


def test_an_exhausted_budget_drops_whole_windows_until_it_refills(
    manifest: Manifest, float_model: ServedModel
) -> None:
    inputs, outputs, confidence = observed(float_model, 50, seed=5)
    budget = ByteBudget(4000, now=0.0)
    sent, now = [], 0.0
    for seq in range(6):
        drifting = sketch(manifest, budget=budget)
        drifting.add(inputs, outputs, confidence)
        now += 60.0
        sent.append(drifting.close(seq=seq, now=now))
    assert sent[0] is not None  # the bucket starts with an hour's worth
    assert None in sent
    assert budget.dropped_messages == sent.count(None)
    assert budget.sent_bytes <= 4000 + 4000 * now / HOUR
    later = sketch(manifest, budget=budget)
    later.add(inputs, outputs, confidence)
    assert later.close(seq=9, now=now + HOUR) is not None  # refilled


def test_a_clock_stepping_back_does_not_refill_the_budget() -> None:
    budget = ByteBudget(3600, now=1000.0)
    budget.spend(3600)
    assert budget.available(500.0) == 0.0
    assert budget.available(1010.0) == pytest.approx(10.0)


def test_a_channel_pooled_over_many_positions_is_counted_at_a_uniform_draw_of_them(
    manifest: Manifest,
) -> None:
    images = dataclasses.replace(
        manifest,
        inputs=(TensorSpec(name="image", dtype=TensorDType.FLOAT32, shape=(1, 48, 48, 1)),),
        self_test=SelfTest(
            vectors=(SelfTestVector(input=(0.0,) * 48 * 48, expected=(1.0, 0.0, 0.0)),),
            tolerance=0.0,
        ),
        baseline=Baseline(
            features=(
                BaselineBins(name="gray", edges=(0.25, 0.5, 0.75), probabilities=(0.25,) * 4),
            )
        ),
    )
    # Left half dark, right half bright: only a draw over all positions sees both halves right.
    pixels = np.zeros((200, 48, 48, 1), np.float32)
    pixels[:, :, :24] = np.random.default_rng(8).uniform(0.0, 0.5, (200, 48, 24, 1))
    pixels[:, :, 24:] = np.random.default_rng(9).uniform(0.5, 1.0, (200, 48, 24, 1))
    drifting = sketch(images)
    drifting.add(pixels, np.full((200, 3), 1 / 3, np.float32), None)
    drift = drifting.close(seq=1, now=101.0)
    assert drift is not None
    (gray,) = drift.features
    assert sum(gray.counts) == 200 * POSITIONS_PER_SAMPLE
    shares = np.array(gray.counts) / sum(gray.counts)
    np.testing.assert_allclose(shares, 0.25, atol=0.02)
