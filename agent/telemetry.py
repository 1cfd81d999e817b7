"""Per-window inference metrics, and the device vitals sent with them.

Latency buckets follow the R10 preferred numbers (10 per decade, about 26 %
apart) from 10 us to 10 s: a p95 read back from them is within one bucket of
the truth whether the model takes microseconds on a gateway or seconds on a
microcontroller-class board, and 61 bounds fit a :class:`Histogram`.

Only successful inferences are timed; a failed one counts as an error (and as
an inference, so ``errors <= inferences`` holds). Inputs refused before they
reach the model are the caller's fault, not the model's, and stay out of the
window: they must not make a healthy model look broken.

Reading ``/proc`` and ``/sys`` happens only in :class:`SystemMonitor`; what
it reads is parsed by pure functions tested on their own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgefleet.shared.messages import Histogram, TelemetryWindow
from edgefleet.shared.sketch import bin_counts, bin_indices
from edgefleet.shared.sketch import histogram_quantile as histogram_quantile

_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    *(round(step * 10.0**decade, 6) for decade in range(-2, 4) for step in _R10),
    10_000.0,
)
CONFIDENCE_BOUNDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
MAX_CPU_PERCENT = 6400.0


class LatencyHistogram:
    """Counts of latencies over fixed bounds, added a block of calls at a time.

    One ``searchsorted`` per block instead of a ``bisect`` per call: the
    inference path only writes each call's latency into a float array, and
    this bins the array when the block is flushed.
    """

    __slots__ = ("bounds", "counts")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS_MS) -> None:
        self.bounds = tuple(bounds)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)

    def add_many(self, values: npt.ArrayLike) -> None:
        # A value on a bound goes above it: shared.sketch's rule, so the server reads it alike.
        self.counts += np.bincount(bin_indices(values, self.bounds), minlength=len(self.counts))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(self.bounds, self.counts.tolist(), q)

    def snapshot(self) -> Histogram:
        return Histogram(bounds=self.bounds, counts=tuple(self.counts.tolist()))


@dataclass(frozen=True, slots=True)
class SystemStats:
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    temperature_c: float | None = None


class TelemetryWindowAccumulator:
    """One window's counts for one model; :meth:`close` turns them into a message.

    The inference service adds to :attr:`inferences` on every call and to
    :attr:`latency` a block of calls at a time (see :mod:`edgefleet.agent.inference`).
    """

    def __init__(
        self,
        *,
        start: float,
        model: str | None = None,
        version: int | None = None,
        latency_bounds: Sequence[float] = LATENCY_BOUNDS_MS,
        confidence_bounds: Sequence[float] = CONFIDENCE_BOUNDS,
    ) -> None:
        self.start = start
        self.model = model
        self.version = version
        self.inferences = 0
        self.errors = 0
        self.latency = LatencyHistogram(latency_bounds)
        self._confidence_bounds = tuple(confidence_bounds)
        self._confidence = np.zeros(len(self._confidence_bounds) + 1, dtype=np.int64)

    def record_errors(self, count: int) -> None:
        self.inferences += count
        self.errors += count

    def add_confidences(self, confidences: npt.ArrayLike) -> None:
        self._confidence += bin_counts(confidences, self._confidence_bounds)

    def close(self, *, seq: int, now: float, system: SystemStats | None) -> TelemetryWindow:
        """The window from ``start`` to ``now``; the accumulator is not used after this."""
        vitals = system or SystemStats()
        served = self.latency.total > 0
        confident = bool(self._confidence.any())
        return TelemetryWindow(
            seq=seq,
            start=self.start,
            end=max(now, self.start),
            inferences=self.inferences,
            errors=self.errors,
            model=self.model,
            version=self.version,
            latency_ms=self.latency.snapshot() if served else None,
            confidence=Histogram(
                bounds=self._confidence_bounds, counts=tuple(int(c) for c in self._confidence)
            )
            if confident
            else None,
            cpu_percent=vitals.cpu_percent,
            memory_bytes=vitals.memory_bytes,
            temperature_c=vitals.temperature_c,
        )


# -- device vitals: pure parsing ------------------------------------------------


def cpu_percent(previous: tuple[float, float] | None, current: tuple[float, float]) -> float | None:
    """Process CPU use between two ``(cpu_seconds, wall_seconds)`` readings; 100 = one core."""
    if previous is None:
        return None
    wall = current[1] - previous[1]
    if wall <= 0:
        return None
    used = max(0.0, current[0] - previous[0])
    return min(MAX_CPU_PERCENT, 100.0 * used / wall)


def parse_rss(status: str) -> int | None:
    """Resident set size in bytes from ``/proc/<pid>/status`` (``VmRSS:  1234 kB``)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def parse_millidegrees(text: str) -> float | None:
    """A ``thermal_zone*/temp`` reading (millidegrees Celsius), if plausible."""
    try:
        celsius = int(text.strip()) / 1000.0
    except ValueError:
        return None
    return celsius if -100.0 <= celsius <= 250.0 else None


def hottest(readings: Iterable[float | None]) -> float | None:
    """The hottest zone is the one that throttles the board first."""
    known = [r for r in readings if r is not None]
    return max(known) if known else None


# -- device vitals: the reader -----------------------------------------------------


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class SystemMonitor:
    """Reads this process's CPU and memory and the board's temperature, once per window."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_seconds: Callable[[], float] = _process_cpu_seconds,
        proc_status: Path = Path("/proc/self/status"),
        thermal_root: Path = Path("/sys/class/thermal"),
    ) -> None:
        self._clock = clock
        self._cpu_seconds = cpu_seconds
        self._proc_status = proc_status
        self._thermal_root = thermal_root
        self._previous: tuple[float, float] | None = (cpu_seconds(), clock())

    def read(self) -> SystemStats:
        current = (self._cpu_seconds(), self._clock())
        cpu = cpu_percent(self._previous, current)
        self._previous = current
        return SystemStats(
            cpu_percent=cpu, memory_bytes=self._rss(), temperature_c=self._temperature()
        )

    def _rss(self) -> int | None:
        try:
            return parse_rss(self._proc_status.read_text())
        except OSError:
            return None

    def _temperature(self) -> float | None:
        readings = []
        for zone in sorted(self._thermal_root.glob("thermal_zone*/temp")):
            try:
                readings.append(parse_millidegrees(zone.read_text()))
            except OSError:
                continue
        return hottest(readings)
