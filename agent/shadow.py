"""Shadow mode: a candidate model runs on live inputs beside the served one, never served.

It runs on its own thread from a short queue, so a slow or broken candidate
costs the caller nothing but a copy of the inputs; when the queue is full the
inputs are skipped (and counted) instead of making callers wait. Any failure
of the candidate counts as disagreement.

Agreement, per sample: the same predicted class for a vector output, every
value within tolerance otherwise. The tolerance is the larger of the two
manifests' self-test tolerances: each model is trusted to that precision, so
an int8 candidate is not held to a float32 model's last digit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgefleet.agent.errors import AgentError
from edgefleet.agent.runtime import ModelRunner
from edgefleet.shared.messages import ShadowSummary

log = logging.getLogger(__name__)

QUEUE_LIMIT = 64
MAX_DELTA_MS = 1e6
"""What an event's latency delta may say; a candidate slower than that by more is reported at it."""

Outputs = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """How a candidate compares with the served model so far (rates are None before any)."""

    samples: int
    agreement_rate: float | None
    latency_delta_ms: float | None
    """Mean latency per call, candidate minus served: positive means the candidate is slower."""
    errors: int = 0
    skipped: int = 0

    def summary(self) -> ShadowSummary | None:
        """The report as an event carries it; None before any sample was compared."""
        if self.agreement_rate is None:
            return None
        delta = self.latency_delta_ms
        return ShadowSummary(
            samples=self.samples,
            agreement=self.agreement_rate,
            latency_delta_ms=None
            if delta is None
            else min(max(delta, -MAX_DELTA_MS), MAX_DELTA_MS),
        )


NO_SHADOW = ShadowReport(samples=0, agreement_rate=None, latency_delta_ms=None)


def agreeing(served: Outputs, candidate: Outputs, tolerance: float) -> int:
    """How many samples (rows of the leading axis) the two models agree on."""
    a = served.reshape(served.shape[0], -1)
    b = candidate.reshape(candidate.shape[0], -1)
    if a.shape != b.shape:
        return 0
    if a.shape[1] > 1:
        return int(np.count_nonzero(a.argmax(axis=1) == b.argmax(axis=1)))
    return int(np.count_nonzero((np.abs(a - b) <= tolerance).all(axis=1)))


class ShadowRunner:
    """Compares ``candidate`` with the served model on the inputs :meth:`offer` hands it."""

    def __init__(
        self,
        candidate: ModelRunner,
        *,
        served_tolerance: float,
        clock: Callable[[], float] = time.perf_counter,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self.candidate = candidate
        self._tolerance = max(served_tolerance, candidate.manifest.self_test.tolerance)
        self._clock = clock
        self._limit = queue_limit
        self._pending: deque[tuple[npt.NDArray[np.float32], Outputs, float]] = deque()
        self._changed = threading.Condition()
        self._busy = False
        self._stopped = False
        self._samples = self._agreed = self._errors = self._skipped = self._calls = 0
        self._latency_delta_sum = 0.0
        self._thread = threading.Thread(target=self._work, name="edgefleet-shadow", daemon=True)
        self._thread.start()

    def offer(self, inputs: npt.NDArray[np.float32], outputs: Outputs, served_ms: float) -> None:
        """Queue one served call for comparison; never blocks on the candidate."""
        with self._changed:
            if self._stopped or len(self._pending) >= self._limit:
                self._skipped += len(inputs)
                return
            # The caller owns ``inputs`` and may reuse it once predict() returns.
            self._pending.append((inputs.copy(), outputs, served_ms))
            self._changed.notify()

    def report(self) -> ShadowReport:
        with self._changed:
            return ShadowReport(
                samples=self._samples,
                agreement_rate=self._agreed / self._samples if self._samples else None,
                latency_delta_ms=self._latency_delta_sum / self._calls if self._calls else None,
                errors=self._errors,
                skipped=self._skipped,
            )

    def wait_idle(self, timeout: float) -> bool:
        """True once everything offered so far has been compared."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._busy, timeout)

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._pending.clear()
            self._changed.notify_all()
        self._thread.join(timeout=5.0)

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._stopped)
                if self._stopped:
                    return
                inputs, outputs, served_ms = self._pending.popleft()
                self._busy = True
            try:
                self._compare(inputs, outputs, served_ms)
            except Exception:
                # A bug here must not end shadow mode silently; the next call tries again.
                log.exception("shadow comparison failed")
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _compare(self, inputs: npt.NDArray[np.float32], served: Outputs, served_ms: float) -> None:
        count = len(inputs)
        started = self._clock()
        try:
            candidate = self.candidate.run(self.candidate.prepare(inputs))
        except AgentError as err:
            log.info("shadow candidate failed: %s", err)
            with self._changed:
                self._samples += count
                self._errors += count
            return
        elapsed_ms = (self._clock() - started) * 1000.0
        agreed = agreeing(served, candidate, self._tolerance)
        with self._changed:
            self._samples += count
            self._agreed += agreed
            self._calls += 1
            self._latency_delta_sum += elapsed_ms - served_ms
