"""Telemetry windows and device vitals: the pure parts directly, the reader on real /proc."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.telemetry import (
    CONFIDENCE_BOUNDS,
    LATENCY_BOUNDS_MS,
    LatencyHistogram,
    SystemMonitor,
    SystemStats,
    TelemetryWindowAccumulator,
    cpu_percent,
    histogram_quantile,
    hottest,
    parse_millidegrees,
    parse_rss,
)
from edgefleet.shared import messages
from edgefleet.shared.messages import Telemetry


def test_latency_bounds_cover_microseconds_to_seconds_and_fit_a_histogram() -> None:
    assert LATENCY_BOUNDS_MS[0] == 0.01
    assert LATENCY_BOUNDS_MS[-1] == 10_000.0
    assert len(LATENCY_BOUNDS_MS) <= 64
    ratios = np.diff(np.log10(LATENCY_BOUNDS_MS))
    assert ratios.max() < 0.12  # no bucket wider than ~30 %


def test_a_latency_on_a_bound_goes_to_the_bucket_above() -> None:
    histogram = LatencyHistogram((1.0, 2.0))
    histogram.add_many(np.array([0.5, 1.0, 1.5, 2.0, 9.0]))
    histogram.add_many(np.array([2.0]))
    assert histogram.counts.tolist() == [1, 2, 3]
    assert histogram.total == 6
    assert histogram.snapshot() == messages.Histogram(bounds=(1.0, 2.0), counts=(1, 2, 3))


def test_an_empty_block_of_latencies_adds_nothing() -> None:
    histogram = LatencyHistogram()
    histogram.add_many(np.empty(0))
    assert (histogram.total, histogram.quantile(0.5)) == (0, None)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0, 10, 0, 0], 0.5, 1.5),  # halfway through the (1, 2] bucket
        ([0, 0, 10, 0], 1.0, 4.0),
        ([10, 0, 0, 0], 0.5, 0.5),  # the first bucket starts at 0
        ([0, 0, 0, 10], 0.95, 4.0),  # overflow: its floor, the last bound
        ([0, 0, 0, 0], 0.5, None),
    ],
)
def test_quantiles_interpolate_inside_a_bucket(
    counts: list[int], q: float, expected: float | None
) -> None:
    assert histogram_quantile((1.0, 2.0, 4.0), counts, q) == expected


def test_quantile_of_many_samples_is_within_one_bucket() -> None:
    values = np.random.default_rng(0).lognormal(mean=0.0, sigma=1.0, size=20_000)
    histogram = LatencyHistogram()
    for block in np.array_split(values, 80):  # as the inference service flushes them
        histogram.add_many(block)
    for q in (0.5, 0.95, 0.99):
        estimate = histogram.quantile(q)
        assert estimate is not None
        assert estimate / float(np.quantile(values, q)) == pytest.approx(1.0, rel=0.13)


def test_a_window_counts_inferences_errors_latency_and_confidence() -> None:
    window = TelemetryWindowAccumulator(start=1000.0, model="vibration", version=3)
    window.inferences += 9  # one call of 1 sample and one of 8, as the inference service adds
    window.latency.add_many(np.array([0.4, 3.0]))
    window.record_errors(2)
    window.add_confidences(np.array([0.05, 0.55, 0.97, 0.999]))
    closed = window.close(
        seq=7, now=1060.0, system=SystemStats(cpu_percent=12.5, memory_bytes=2**25)
    )
    assert (closed.seq, closed.start, closed.end) == (7, 1000.0, 1060.0)
    assert (closed.inferences, closed.errors) == (11, 2)
    assert (closed.model, closed.version) == ("vibration", 3)
    assert closed.latency_ms is not None
    assert closed.latency_ms.total == 2
    assert closed.confidence is not None
    assert closed.confidence.bounds == CONFIDENCE_BOUNDS
    assert closed.confidence.counts[0] == 1
    assert closed.confidence.counts[-1] == 1
    assert (closed.cpu_percent, closed.memory_bytes, closed.temperature_c) == (12.5, 2**25, None)
    # What the agent produces is what the server decodes.
    payload = messages.encode(Telemetry(sent_at=1060.0, windows=(closed,)))
    assert messages.decode_as(Telemetry, payload).windows == (closed,)


def test_an_idle_window_without_a_model_is_still_a_valid_heartbeat() -> None:
    closed = TelemetryWindowAccumulator(start=5.0).close(seq=0, now=65.0, system=None)
    assert (closed.inferences, closed.model, closed.latency_ms, closed.confidence) == (
        0,
        None,
        None,
        None,
    )
    messages.encode(Telemetry(sent_at=65.0, windows=(closed,)))


def test_a_clock_stepping_back_never_makes_a_window_end_before_it_starts() -> None:
    closed = TelemetryWindowAccumulator(start=100.0).close(seq=1, now=40.0, system=None)
    assert closed.end == closed.start


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, (1.0, 10.0), None),
        ((1.0, 10.0), (1.5, 11.0), 50.0),
        ((1.0, 10.0), (3.0, 11.0), 200.0),  # two cores busy
        ((1.0, 10.0), (1.0, 10.0), None),  # no time passed
        ((1.0, 10.0), (0.5, 11.0), 0.0),
    ],
)
def test_cpu_percent_from_two_readings(
    previous: tuple[float, float] | None, current: tuple[float, float], expected: float | None
) -> None:
    assert cpu_percent(previous, current) == expected


def test_rss_and_temperature_parsing() -> None:
    status = "Name:\tpython\nVmPeak:\t  9000 kB\nVmRSS:\t  4096 kB\nThreads:\t3\n"
    assert parse_rss(status) == 4096 * 1024
    assert parse_rss("Name:\tkthreadd\n") is None
    assert parse_millidegrees("48312\n") == 48.312
    assert parse_millidegrees("garbage") is None
    assert parse_millidegrees("999999") is None  # a sensor fault, not 1000 degrees
    assert hottest([None, 41.0, 55.5]) == 55.5
    assert hottest([None]) is None


def test_monitor_reads_this_process_from_proc_and_zones_from_sysfs(tmp_path: Path) -> None:
    for zone, millidegrees in (("thermal_zone0", "45000"), ("thermal_zone1", "61500")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "temp").write_text(millidegrees + "\n")
    (tmp_path / "thermal_zone2").mkdir()  # a zone without a readable temp is skipped
    monitor = SystemMonitor(thermal_root=tmp_path)
    sum(i * i for i in range(300_000))  # burn a little CPU between the readings
    stats = monitor.read()
    assert stats.temperature_c == 61.5
    assert stats.cpu_percent is not None
    assert 0.0 < stats.cpu_percent <= 100.0 * (os.cpu_count() or 1)
    assert stats.memory_bytes is not None
    assert 10 * 2**20 < stats.memory_bytes < 64 * 2**30


def test_monitor_without_proc_or_thermal_zones_reports_none(tmp_path: Path) -> None:
    monitor = SystemMonitor(proc_status=tmp_path / "missing", thermal_root=tmp_path)
    stats = monitor.read()
    assert (stats.memory_bytes, stats.temperature_c) == (None, None)
