"""Telemetry windows shaped like a real agent's: counts, two histograms, vitals.

Shared by the ingest volume test and the ingest benchmark, so both push the
same kind of payload through the server (the golden fixture's shape, with
values drawn from a seeded generator).
"""

from __future__ import annotations

import random

from edgefleet.shared import messages
from edgefleet.shared.messages import Histogram, Telemetry, TelemetryWindow

T = 1_767_225_600.0
WINDOW_SECONDS = 60.0
LATENCY_BOUNDS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
CONFIDENCE_BOUNDS = (0.5, 0.7, 0.9)


def window(rng: random.Random, seq: int) -> TelemetryWindow:
    """Window ``seq`` of a device running model ``kws`` v3."""
    inferences = rng.randint(100, 4000)
    latency = [rng.randint(0, inferences // 4) for _ in range(len(LATENCY_BOUNDS_MS) + 1)]
    confidence = [rng.randint(0, inferences // 4) for _ in range(len(CONFIDENCE_BOUNDS) + 1)]
    start = T + WINDOW_SECONDS * seq
    return TelemetryWindow(
        seq=seq,
        start=start,
        end=start + WINDOW_SECONDS,
        inferences=inferences,
        errors=rng.randint(0, 3),
        model="kws",
        version=3,
        latency_ms=Histogram(bounds=LATENCY_BOUNDS_MS, counts=tuple(latency)),
        confidence=Histogram(bounds=CONFIDENCE_BOUNDS, counts=tuple(confidence)),
        cpu_percent=round(rng.uniform(5, 90), 1),
        memory_bytes=rng.randint(30, 60) * 2**20,
        temperature_c=round(rng.uniform(35, 75), 2),
    )


def payload(windows: tuple[TelemetryWindow, ...] | list[TelemetryWindow]) -> bytes:
    """The wire bytes of one telemetry message carrying ``windows``."""
    return messages.encode(Telemetry(sent_at=windows[-1].end, windows=tuple(windows)))
