"""InferenceService on real models: counting, timing, model swaps, windows, sketches, shadow."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.agent.errors import InferenceFailedError, InferenceInputError, NoModelError
from edgefleet.agent.inference import InferenceService
from edgefleet.agent.runtime import ModelRunner
from edgefleet.agent.shadow import ShadowReport, ShadowRunner, agreeing
from edgefleet.agent.telemetry import SystemStats
from edgefleet.shared import messages
from edgefleet.shared.agent_config import DriftSection
from edgefleet.shared.manifest import Baseline, BaselineBins
from edgefleet.shared.messages import Drift, ShadowSummary, Slot, Telemetry
from edgefleet.shared.sketch import bin_counts
from tests.agent.conftest import ServedModel
from tests.harness.models import TfliteModels

Floats = npt.NDArray[Any]
STEP = 0.002
"""The fake monotonic clock advances 2 ms per reading: every call takes exactly 2 ms."""


def ticking(step: float = STEP) -> Callable[[], float]:
    readings = itertools.count(start=1000.0, step=step)
    return lambda: next(readings)


class WallClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seqs() -> Callable[[], int]:
    numbers: Iterator[int] = itertools.count(1)
    return lambda: next(numbers)


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def service(wall: WallClock) -> Iterator[InferenceService]:
    running = InferenceService(rng=np.random.default_rng(0), clock=ticking(), wall_clock=wall)
    yield running
    running.close()


@pytest.fixture(scope="module")
def inputs(tflite_models: TfliteModels) -> Floats:
    return tflite_models.representative


def test_nothing_is_served_before_a_model_is_active(service: InferenceService) -> None:
    with pytest.raises(NoModelError) as caught:
        service.predict([0.1, 0.2, 0.3, 0.4])
    assert caught.value.reason == "no_model"
    counters = service.counters()
    assert (counters.model, counters.inferences, counters.rejected) == (None, 0, 1)
    assert service.active is None


def test_every_call_is_counted_and_timed(
    service: InferenceService, float_model: ServedModel, inputs: Floats
) -> None:
    runner = float_model.load()
    service.activate(runner, slot=Slot.A)
    expected = runner.predict(inputs[:10])
    for row, want in zip(inputs[:10], expected, strict=True):
        np.testing.assert_allclose(service.predict(row)[0], want, atol=1e-6)
    np.testing.assert_allclose(service.predict(inputs[:10]), expected, atol=1e-6)
    counters = service.counters()
    assert (counters.model, counters.version) == ("vibration", 1)
    assert (counters.inferences, counters.errors, counters.rejected) == (20, 0, 0)
    assert counters.latency_ms.total == 11  # calls, not samples
    assert counters.p50_ms == pytest.approx(2.0, rel=0.25)
    assert counters.error_rate == 0.0
    active = service.active
    assert active is not None
    assert (active.runner, active.slot) == (runner, Slot.A)


def test_bad_input_is_the_callers_fault_and_not_an_error_of_the_model(
    service: InferenceService, float_model: ServedModel, wall: WallClock
) -> None:
    service.activate(float_model.load())
    with pytest.raises(InferenceInputError):
        service.predict([1.0, 2.0])
    service.predict([0.1, 0.2, 0.3, 0.4])
    counters = service.counters()
    assert (counters.inferences, counters.errors, counters.rejected) == (1, 0, 1)
    (window,) = service.close_telemetry(now=wall.now + 60, system=None, next_seq=seqs())
    assert (window.inferences, window.errors) == (1, 0)


def test_a_model_giving_nan_counts_errors_against_itself(
    service: InferenceService, nan_model: ServedModel, wall: WallClock
) -> None:
    service.activate(nan_model.load())
    served = service.predict([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(served[0], np.log([1.0, 2.0, 3.0, 4.0]), rtol=1e-6)
    with pytest.raises(InferenceFailedError, match="non-finite outputs") as caught:
        service.predict([1.0, -2.0, 3.0, 4.0])
    assert caught.value.reason == "inference_failed"
    counters = service.counters()
    assert (counters.inferences, counters.errors) == (2, 1)
    assert counters.error_rate == 0.5
    (window,) = service.close_telemetry(now=wall.now + 60, system=None, next_seq=seqs())
    assert (window.inferences, window.errors) == (2, 1)


def test_a_swap_hands_back_the_old_models_counters_and_starts_new_ones(
    service: InferenceService,
    float_model: ServedModel,
    int8_model: ServedModel,
    inputs: Floats,
    wall: WallClock,
) -> None:
    service.activate(float_model.load())
    service.predict(inputs[:7])
    wall.now += 30
    final = service.activate(int8_model.load(), slot=Slot.B)
    assert (final.model, final.version, final.inferences) == ("vibration", 1, 7)
    service.predict(inputs[:3])
    assert (service.counters().version, service.counters().inferences) == (2, 3)
    wall.now += 30
    windows = service.close_telemetry(
        now=wall.now, system=SystemStats(memory_bytes=123), next_seq=seqs()
    )
    # The stretch before the first model served nothing and is not sent.
    assert [(w.version, w.inferences, w.seq) for w in windows] == [(1, 7, 1), (2, 3, 2)]
    assert windows[0].end == windows[1].start
    assert [w.memory_bytes for w in windows] == [None, 123]
    messages.encode(Telemetry(sent_at=wall.now, windows=tuple(windows)))
    # The next window starts empty, for the model now served.
    (after,) = service.close_telemetry(now=wall.now + 60, system=None, next_seq=seqs())
    assert (after.version, after.inferences, after.start) == (2, 0, wall.now)


def test_windows_carry_the_confidences_of_every_call(
    service: InferenceService, float_model: ServedModel, inputs: Floats, wall: WallClock
) -> None:
    service.activate(float_model.load())
    outputs = np.concatenate([service.predict(row) for row in inputs[:300]])
    (window,) = service.close_telemetry(now=wall.now + 60, system=None, next_seq=seqs())
    assert window.confidence is not None
    assert window.confidence.counts == bin_counts(outputs.max(axis=1), window.confidence.bounds)


def test_drift_is_sketched_per_model_and_closed_per_window(
    service: InferenceService,
    float_model: ServedModel,
    int8_model: ServedModel,
    inputs: Floats,
    wall: WallClock,
) -> None:
    baseline = Baseline(
        features=tuple(
            BaselineBins(name=f"x{i}", edges=(-0.5, 0.0, 0.5), probabilities=(0.25,) * 4)
            for i in range(4)
        )
    )
    served_with_baseline = ModelRunner.load(
        float_model.path,
        dataclasses.replace(float_model.manifest, baseline=baseline),
        threads=1,
        xnnpack=True,
    )
    service.activate(served_with_baseline)
    for row in inputs[:40]:
        service.predict(row)
    wall.now += 10
    service.activate(int8_model.load())
    service.predict(inputs[40:45])
    wall.now += 50
    drifts = service.close_drift(now=wall.now, next_seq=seqs())
    assert [(d.version, d.count, d.seq) for d in drifts] == [(1, 40, 1), (2, 5, 2)]
    assert drifts[0].window_end == drifts[1].window_start
    assert drifts[0].features[2].counts == bin_counts(inputs[:40, 2], (-0.5, 0.0, 0.5))
    assert drifts[1].features == ()  # the int8 manifest has no baseline
    for drift in drifts:
        assert messages.decode_as(Drift, messages.encode(drift)) == drift
    assert service.close_drift(now=wall.now + 60, next_seq=seqs()) == []  # nothing new
    assert service.drift_budget.sent_bytes == sum(len(messages.encode(d)) for d in drifts)


def test_no_drift_budget_means_no_sketch(float_model: ServedModel, wall: WallClock) -> None:
    service = InferenceService(drift=DriftSection(bytes_per_hour=0), wall_clock=wall)
    service.activate(float_model.load())
    service.predict([0.1, 0.2, 0.3, 0.4])
    assert service.close_drift(now=wall.now + 60, next_seq=seqs()) == []


def test_concurrent_callers_are_all_counted(
    float_model: ServedModel, inputs: Floats, wall: WallClock
) -> None:
    service = InferenceService(wall_clock=wall)
    service.activate(float_model.load())

    def call() -> None:
        for i in range(250):
            service.predict(inputs[i % 100] if i % 5 else inputs[:4])

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters = service.counters()
    assert counters.inferences == 4 * (200 + 50 * 4)
    assert counters.latency_ms.total == 1000
    drifts = service.close_drift(now=wall.now + 60, next_seq=seqs())
    assert [d.count for d in drifts] == [counters.inferences]
    (window,) = service.close_telemetry(now=wall.now + 60, system=None, next_seq=seqs())
    assert window.inferences == counters.inferences
    assert window.latency_ms is not None
    assert window.latency_ms.total == 1000


def test_batches_larger_than_a_block_are_counted_timed_and_sketched(
    service: InferenceService, float_model: ServedModel, inputs: Floats, wall: WallClock
) -> None:
    service.activate(float_model.load())
    big = np.resize(inputs, (600, inputs.shape[1]))  # over the 256 rows a block holds
    service.predict(inputs[0])
    service.predict(big)
    service.predict(big)
    service.predict(inputs[:3])
    counters = service.counters()
    assert (counters.inferences, counters.latency_ms.total) == (1204, 4)
    assert counters.p50_ms == pytest.approx(2.0, rel=0.25)
    (window,) = service.close_telemetry(now=wall.now + 60, system=None, next_seq=seqs())
    assert window.latency_ms is not None
    assert (window.inferences, window.latency_ms.total) == (1204, 4)
    assert window.confidence is not None
    assert window.confidence.total == 1204
    (drift,) = service.close_drift(now=wall.now + 60, next_seq=seqs())
    assert drift.count == 1204


# -- shadow ----------------------------------------------------------------------------


def test_a_shadow_of_the_same_model_agrees_everywhere(
    service: InferenceService, float_model: ServedModel, inputs: Floats
) -> None:
    service.activate(float_model.load())
    service.set_shadow(float_model.load())
    for row in inputs[:30]:
        service.predict(row)
    service.predict(inputs[30:50])
    assert service.wait_for_shadow(timeout=10)
    report = service.shadow_report()
    assert (report.samples, report.agreement_rate, report.errors, report.skipped) == (50, 1.0, 0, 0)
    assert report.latency_delta_ms is not None
    assert report.summary() == ShadowSummary(50, 1.0, report.latency_delta_ms)


def test_an_int8_candidate_mostly_agrees_with_the_float_model(
    service: InferenceService, float_model: ServedModel, int8_model: ServedModel, inputs: Floats
) -> None:
    service.activate(float_model.load())
    service.set_shadow(int8_model.load())
    service.predict(inputs)
    assert service.wait_for_shadow(timeout=10)
    report = service.shadow_report()
    assert report.samples == len(inputs)
    assert report.agreement_rate is not None
    assert report.agreement_rate >= 0.9


def test_a_failing_shadow_never_reaches_the_caller(
    service: InferenceService, float_model: ServedModel, nan_model: ServedModel
) -> None:
    service.activate(float_model.load())
    service.set_shadow(nan_model.load())
    for _ in range(5):
        service.predict([-1.0, 0.5, 0.5, 0.5])  # NaN for the candidate, fine for the served
    assert service.wait_for_shadow(timeout=10)
    report = service.shadow_report()
    assert (report.samples, report.errors, report.agreement_rate) == (5, 5, 0.0)
    # No candidate call finished, so there is no latency to compare: None, not a made-up 0.
    assert report.summary() == ShadowSummary(samples=5, agreement=0.0, latency_delta_ms=None)
    assert service.counters().errors == 0
    service.set_shadow(None)
    assert service.shadow_report().samples == 0
    assert service.shadow_report().summary() is None


def test_a_shadow_summary_stays_within_what_an_event_may_carry() -> None:
    slow = ShadowReport(samples=3, agreement_rate=1.0, latency_delta_ms=5e6)
    fast = dataclasses.replace(slow, latency_delta_ms=-5e6)
    assert [r.summary() for r in (slow, fast)] == [
        ShadowSummary(3, 1.0, 1e6),
        ShadowSummary(3, 1.0, -1e6),
    ]


def test_a_full_shadow_queue_skips_instead_of_blocking(float_model: ServedModel) -> None:
    shadow = ShadowRunner(float_model.load(), served_tolerance=0.0, queue_limit=0)
    shadow.offer(np.zeros((3, 4), np.float32), np.zeros((3, 3), np.float32), 1.0)
    assert shadow.wait_idle(timeout=5)
    assert (shadow.report().skipped, shadow.report().samples) == (3, 0)
    assert shadow.report().summary() is None  # nothing compared: nothing to report
    shadow.stop()


@pytest.mark.parametrize(
    ("served", "candidate", "expected"),
    [
        ([[0.1, 0.9], [0.6, 0.4]], [[0.3, 0.7], [0.4, 0.6]], 1),  # classes: argmax
        ([[1.0], [2.0], [3.0]], [[1.05], [2.2], [3.0]], 2),  # values: within 0.1
        ([[1.0, 2.0]], [[1.0]], 0),  # different shapes never agree
    ],
)
def test_agreement(served: list[list[float]], candidate: list[list[float]], expected: int) -> None:
    assert agreeing(np.array(served), np.array(candidate), 0.1) == expected
