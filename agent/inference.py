"""The one path every prediction on the device takes: serve, count, time, sketch, shadow.

The served model is swapped atomically (:meth:`InferenceService.activate`):
a call that started on the old model finishes on it and is counted for it.
Counters are per model, from its activation on, so the probation judge can
compare a new model with the one before it (``activate`` hands back the
final counters of the model it replaces).

Cheap per call, because the bar is a bare ``invoke()`` loop: under one lock,
two counter increments, the call's latency written into a float array and a
copy of the inputs and outputs into a block. Latency histograms, confidences,
feature bins and samples are computed per block of :data:`BLOCK_ROWS` rows
(one ``searchsorted`` for a block's latencies instead of a ``bisect`` per
call); whatever reads the counters flushes the block's latencies first, so
the probation judge sees every call.

Telemetry windows and drift sketches are per model too. When a model is
replaced mid-window its partial window is closed at the switch and sent with
the next batch, so nothing it served is lost or attributed to its successor.
Closing swaps in fresh accumulators under the lock and builds the messages
outside it: sequence numbers come from the on-disk outbox, and a disk write
must not stall inference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgefleet.agent.errors import InferenceFailedError, InferenceInputError, NoModelError
from edgefleet.agent.runtime import ModelRunner
from edgefleet.agent.shadow import NO_SHADOW, ShadowReport, ShadowRunner
from edgefleet.agent.sketch import ByteBudget, DriftSketch, confidences
from edgefleet.agent.telemetry import LatencyHistogram, SystemStats, TelemetryWindowAccumulator
from edgefleet.agent.tensors import RealArray
from edgefleet.shared.agent_config import DriftSection
from edgefleet.shared.messages import Drift, Histogram, Slot, TelemetryWindow

BLOCK_ROWS = 256
BLOCK_BYTES = 1 << 20
"""A block holds at most this many bytes of inputs and outputs (large inputs, fewer rows)."""


@dataclass(frozen=True, slots=True)
class InferenceCounters:
    """Everything one model did since it was activated (``model`` None: before any model)."""

    model: str | None
    version: int | None
    since: float
    """Monotonic clock reading at activation."""
    inferences: int
    errors: int
    """Samples in calls the model failed (interpreter error, non-finite output)."""
    rejected: int
    """Calls refused before the model ran: bad input, or no model yet."""
    latency_ms: Histogram
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.inferences if self.inferences else None


@dataclass(frozen=True, slots=True)
class ActiveModel:
    runner: ModelRunner
    slot: Slot | None
    since: float
    """Wall-clock time of activation."""


class _Block:
    """Inputs, outputs and latencies of recent calls, processed together."""

    def __init__(self, runner: ModelRunner) -> None:
        row_bytes = 4 * (
            int(np.prod(runner.input_shape, dtype=np.int64))
            + int(np.prod(runner.output_shape, dtype=np.int64))
        )
        self.rows = max(1, min(BLOCK_ROWS, BLOCK_BYTES // row_bytes))
        self.inputs = np.empty((self.rows, *runner.input_shape), np.float32)
        self.outputs = np.empty((self.rows, *runner.output_shape), np.float32)
        self.fill = 0
        # A call adds at least a row, or bypasses the block and is flushed: calls <= rows.
        self.latencies = np.empty(self.rows, np.float64)
        self.calls = 0


@dataclass(eq=False)
class _Served:
    """One model's state while it is served; guarded by the service lock."""

    active: ActiveModel
    window: TelemetryWindowAccumulator
    sketch: DriftSketch | None
    since: float
    block: _Block
    inferences: int = 0
    errors: int = 0
    rejected: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def record(self, inputs: RealArray, outputs: RealArray, elapsed_ms: float) -> None:
        count = len(inputs)
        self.inferences += count
        self.window.inferences += count
        block = self.block
        if block.fill + count > block.rows:
            self.flush()
        block.latencies[block.calls] = elapsed_ms
        block.calls += 1
        if count >= block.rows:
            self._observe(inputs, outputs)
            self.flush_latencies()
            return
        fill = block.fill
        block.inputs[fill : fill + count] = inputs
        block.outputs[fill : fill + count] = outputs
        block.fill = fill + count

    def flush(self) -> None:
        self.flush_latencies()
        block = self.block
        if block.fill:
            self._observe(block.inputs[: block.fill], block.outputs[: block.fill])
            block.fill = 0

    def flush_latencies(self) -> None:
        block = self.block
        if block.calls:
            latencies = block.latencies[: block.calls]
            self.latency.add_many(latencies)
            self.window.latency.add_many(latencies)
            block.calls = 0

    def _observe(self, inputs: RealArray, outputs: RealArray) -> None:
        confidence = confidences(outputs)
        if confidence is not None:
            self.window.add_confidences(confidence)
        if self.sketch is not None:
            self.sketch.add(inputs, outputs, confidence)

    def counters(self) -> InferenceCounters:
        self.flush_latencies()
        manifest = self.active.runner.manifest
        return _counters(
            manifest.model,
            manifest.version,
            self.since,
            self.latency,
            (self.inferences, self.errors, self.rejected),
        )


def _counters(
    model: str | None,
    version: int | None,
    since: float,
    latency: LatencyHistogram,
    tally: tuple[int, int, int],
) -> InferenceCounters:
    inferences, errors, rejected = tally
    return InferenceCounters(
        model=model,
        version=version,
        since=since,
        inferences=inferences,
        errors=errors,
        rejected=rejected,
        latency_ms=latency.snapshot(),
        p50_ms=latency.quantile(0.50),
        p95_ms=latency.quantile(0.95),
        p99_ms=latency.quantile(0.99),
    )


class InferenceService:
    """Holds the served model (and an optional shadow) and accounts for every call."""

    def __init__(
        self,
        *,
        drift: DriftSection | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._drift = drift or DriftSection()
        self._rng = rng or np.random.default_rng()
        self._clock = clock
        self._wall_clock = wall_clock
        self._budget = ByteBudget(self._drift.bytes_per_hour, now=wall_clock())
        self._lock = threading.Lock()
        self._served: _Served | None = None
        self._shadow: ShadowRunner | None = None
        self._idle_since = clock()
        self._idle_window = TelemetryWindowAccumulator(start=wall_clock())
        self._unserved = 0
        self._retired_windows: list[tuple[TelemetryWindowAccumulator, float]] = []
        self._retired_sketches: list[tuple[DriftSketch, float]] = []

    # -- serving ---------------------------------------------------------------------

    def predict(self, inputs: npt.ArrayLike) -> RealArray:
        """The served model's real outputs, leading batch axis (as :meth:`ModelRunner.predict`)."""
        served = self._served
        if served is None:
            with self._lock:
                self._unserved += 1
            raise NoModelError("no model is active yet")
        runner = served.active.runner
        started = self._clock()
        try:
            batch = runner.prepare(inputs)
        except InferenceInputError:
            with self._lock:
                served.rejected += 1
            raise
        try:
            outputs = runner.run(batch)
        except InferenceFailedError:
            with self._lock:
                served.errors += len(batch)
                served.inferences += len(batch)
                served.window.record_errors(len(batch))
            raise
        elapsed_ms = (self._clock() - started) * 1000.0
        with self._lock:
            served.record(batch, outputs, elapsed_ms)
        shadow = self._shadow
        if shadow is not None:
            shadow.offer(batch, outputs, elapsed_ms)
        return outputs

    @property
    def active(self) -> ActiveModel | None:
        served = self._served
        return None if served is None else served.active

    def activate(self, runner: ModelRunner, *, slot: Slot | None = None) -> InferenceCounters:
        """Serve ``runner`` from now on; returns the final counters of what it replaces."""
        now = self._wall_clock()
        since = self._clock()
        served = _Served(
            active=ActiveModel(runner=runner, slot=slot, since=now),
            window=TelemetryWindowAccumulator(
                start=now, model=runner.manifest.model, version=runner.manifest.version
            ),
            sketch=self._new_sketch(runner, now),
            since=since,
            block=_Block(runner),
        )
        with self._lock:
            previous = self._served
            if previous is None:
                final = self._idle_counters()
                self._retired_windows.append((self._idle_window, now))
            else:
                previous.flush()
                final = previous.counters()
                self._retired_windows.append((previous.window, now))
                if previous.sketch is not None:
                    self._retired_sketches.append((previous.sketch, now))
            self._served = served
        return final

    def counters(self) -> InferenceCounters:
        """The served model's counters since its activation."""
        with self._lock:
            served = self._served
            return self._idle_counters() if served is None else served.counters()

    def _idle_counters(self) -> InferenceCounters:
        return _counters(None, None, self._idle_since, LatencyHistogram(), (0, 0, self._unserved))

    def _new_sketch(self, runner: ModelRunner, now: float) -> DriftSketch | None:
        if self._drift.bytes_per_hour == 0:
            return None
        return DriftSketch(
            runner.manifest, self._drift, rng=self._rng, budget=self._budget, start=now
        )

    # -- shadow ----------------------------------------------------------------------

    def set_shadow(self, runner: ModelRunner | None) -> None:
        """Start comparing ``runner`` with the served model (None stops the comparison)."""
        served = self._served
        tolerance = 0.0 if served is None else served.active.runner.manifest.self_test.tolerance
        shadow = None if runner is None else ShadowRunner(runner, served_tolerance=tolerance)
        previous, self._shadow = self._shadow, shadow
        if previous is not None:
            previous.stop()

    def shadow_report(self) -> ShadowReport:
        shadow = self._shadow
        return NO_SHADOW if shadow is None else shadow.report()

    def wait_for_shadow(self, timeout: float) -> bool:
        """True once the shadow has compared every call offered so far (or there is none)."""
        shadow = self._shadow
        return True if shadow is None else shadow.wait_idle(timeout)

    def close(self) -> None:
        self.set_shadow(None)

    # -- reporting -------------------------------------------------------------------

    def close_telemetry(
        self, *, now: float, system: SystemStats | None, next_seq: Callable[[], int]
    ) -> list[TelemetryWindow]:
        """Windows finished since the last call, oldest first, and the current one (always
        sent: it carries the device's vitals and doubles as a heartbeat)."""
        with self._lock:
            retired, self._retired_windows = self._retired_windows, []
            served = self._served
            if served is None:
                current, self._idle_window = (
                    self._idle_window,
                    TelemetryWindowAccumulator(start=now),
                )
            else:
                served.flush()
                current = served.window
                manifest = served.active.runner.manifest
                served.window = TelemetryWindowAccumulator(
                    start=now, model=manifest.model, version=manifest.version
                )
        windows = [
            window.close(seq=next_seq(), now=end, system=None)
            for window, end in retired
            if window.inferences  # vitals go on the current window; an idle stretch says nothing
        ]
        windows.append(current.close(seq=next_seq(), now=now, system=system))
        return windows

    def close_drift(self, *, now: float, next_seq: Callable[[], int]) -> list[Drift]:
        """Drift messages for every sketch with data since the last call, within the budget."""
        with self._lock:
            closing, self._retired_sketches = self._retired_sketches, []
            served = self._served
            if served is not None and served.sketch is not None:
                served.flush()
                closing.append((served.sketch, now))
                served.sketch = self._new_sketch(served.active.runner, now)
        messages = []
        for sketch, end in closing:
            if sketch.count:
                drift = sketch.close(seq=next_seq(), now=end)
                if drift is not None:
                    messages.append(drift)
        return messages

    @property
    def drift_budget(self) -> ByteBudget:
        """Bytes sent and what the hourly budget made the sketches drop."""
        return self._budget
