"""The drift sketch: what one model saw in one window, against its manifest's baseline.

Per window it keeps the counts of every baseline feature over the baseline's
bins (which input values make a feature, and which number stands for a
prediction in the output bins, is :mod:`edgefleet.shared.sketch`'s rule, the
one the trainer used), the mean confidence, a uniform reservoir sample of raw
inputs (Algorithm R) and the ``k`` least confident inputs ("hard examples").

Confidence is the top class probability, so it exists only for a vector
output whose values are probabilities; a regression or an anomaly score has
none, and then there are neither a mean confidence nor hard examples.

Inputs arrive in blocks (the inference service buffers them) so the numpy
work is paid once per block, not once per inference. A feature pooled over
many positions (a channel of an image or a long window) is counted at
:data:`POSITIONS_PER_SAMPLE` positions of each sample, drawn uniformly:
binning all 9,216 pixels of a 96 x 96 image took longer than the model
itself, and a uniform draw estimates the same pooled distribution the
baseline describes. Its counts then add up to that many per inference.

Uplinks can be metered: a :class:`ByteBudget` (token bucket refilled at
``bytes_per_hour``, holding at most an hour's worth) is shared by all of a
device's sketches. A message over the budget first loses samples, reservoir
draws before hard examples and the most confident hard examples first; if
even the bare counts do not fit, the whole window is dropped. Both are
counted.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.shared.agent_config import DriftSection
from edgefleet.shared.errors import MessageTooLargeError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Drift, FeatureSketch, Sample, SampleReason, encode
from edgefleet.shared.sketch import bin_counts, feature_columns, output_values

log = logging.getLogger(__name__)

SAMPLE_VALUE_LIMIT = 3e38
"""What a :class:`Sample` value may be; a float32 input beyond it is not kept."""
MAX_SAMPLES = 256
"""What one :class:`Drift` message holds."""
POSITIONS_PER_SAMPLE = 32

Rows = npt.NDArray[np.float32]
Floating = np.floating[Any]


def confidences(outputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64] | None:
    """Top class probability per row, or None when the outputs are not probabilities."""
    rows = outputs.reshape(outputs.shape[0], -1)
    if rows.shape[1] < 2 or rows.size == 0 or rows.min() < 0.0 or rows.max() > 1.0:
        return None
    top: npt.NDArray[np.float64] = rows.max(axis=1).astype(np.float64)
    return top


class ByteBudget:
    """A token bucket over encoded bytes; ``now`` is any clock in seconds."""

    def __init__(self, bytes_per_hour: int, *, now: float) -> None:
        self.capacity = float(bytes_per_hour)
        self.rate = bytes_per_hour / 3600.0
        self.tokens = self.capacity
        self._last = now
        self.sent_bytes = 0
        self.dropped_messages = 0
        self.dropped_samples = 0

    def available(self, now: float) -> float:
        # A clock stepping back refills nothing rather than draining the bucket.
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self._last) * self.rate)
        self._last = max(self._last, now)
        return self.tokens

    def spend(self, size: int) -> None:
        self.tokens -= size
        self.sent_bytes += size


@dataclass(frozen=True, slots=True)
class _Binned:
    name: str
    edges: tuple[float, ...]


class DriftSketch:
    """One model's window of drift statistics; feed blocks with :meth:`add`, then :meth:`close`."""

    def __init__(
        self,
        manifest: Manifest,
        section: DriftSection,
        *,
        rng: np.random.Generator,
        budget: ByteBudget,
        start: float,
    ) -> None:
        self.model = manifest.model
        self.version = manifest.version
        self.start = start
        self.count = 0
        self._rng = rng
        self._budget = budget
        self._reservoir_size = section.reservoir_size
        self._hard_size = section.hard_examples
        baseline = manifest.baseline
        self._features = _usable_features(manifest)
        self._feature_counts = [np.zeros(len(f.edges) + 1, np.int64) for f in self._features]
        output = baseline.output if baseline is not None else None
        self._output = None if output is None else _Binned(output.name, output.edges)
        self._output_counts = np.zeros(0 if output is None else len(output.edges) + 1, np.int64)
        self._confidence_sum = 0.0
        self._confident = 0
        self._reservoir: list[Rows] = []
        self._hard_rows: list[Rows] = []
        self._hard_confidence = np.zeros(0)

    def add(
        self,
        inputs: Rows,
        outputs: npt.NDArray[np.float32],
        confidence: npt.NDArray[np.float64] | None,
    ) -> None:
        """A block of inferences: inputs and outputs with a leading batch axis."""
        n = inputs.shape[0]
        if n == 0:
            return
        if self._features:
            columns = self._positions(feature_columns(inputs, len(self._features)), n)
            for i, feature in enumerate(self._features):
                self._feature_counts[i] += bin_counts(columns[:, i], feature.edges)
        if self._output is not None:
            self._output_counts += bin_counts(output_values(outputs), self._output.edges)
        if confidence is not None:
            self._confidence_sum += float(confidence.sum())
            self._confident += n
            self._keep_hardest(inputs, confidence)
        self._draw(inputs)
        self.count += n

    def _positions(self, columns: npt.NDArray[Floating], n: int) -> npt.NDArray[Floating]:
        """At most :data:`POSITIONS_PER_SAMPLE` rows of each sample's pooled columns."""
        per_sample = columns.shape[0] // n
        if per_sample <= POSITIONS_PER_SAMPLE:
            return columns
        drawn = self._rng.integers(0, per_sample, size=(n, POSITIONS_PER_SAMPLE))
        drawn += np.arange(n)[:, np.newaxis] * per_sample
        picked: npt.NDArray[Floating] = columns[drawn.ravel()]
        return picked

    def _draw(self, inputs: Rows) -> None:
        """Algorithm R over this window's stream, a block at a time."""
        k = self._reservoir_size
        if k == 0:
            return
        seen = self.count
        fill = max(0, min(k - seen, inputs.shape[0]))
        self._reservoir.extend(inputs[i].copy() for i in range(fill))
        if fill == inputs.shape[0]:
            return
        positions = np.arange(seen + fill, seen + inputs.shape[0])
        slots = self._rng.integers(0, positions + 1)
        for offset in np.flatnonzero(slots < k):
            self._reservoir[int(slots[offset])] = inputs[fill + offset].copy()

    def _keep_hardest(self, inputs: Rows, confidence: npt.NDArray[np.float64]) -> None:
        k = self._hard_size
        if k == 0:
            return
        candidates = np.concatenate([self._hard_confidence, confidence])
        keep = np.argsort(candidates, kind="stable")[:k]
        held = len(self._hard_rows)
        self._hard_rows = [
            self._hard_rows[i] if i < held else inputs[i - held].copy() for i in keep
        ]
        self._hard_confidence = candidates[keep]

    def close(self, *, seq: int, now: float) -> Drift | None:
        """The window as a message within the byte budget; None if empty or over budget."""
        if self.count == 0:
            return None
        samples = self._samples(seq)
        drift = Drift(
            seq=seq,
            model=self.model,
            version=self.version,
            window_start=self.start,
            window_end=max(now, self.start),
            count=self.count,
            features=tuple(
                FeatureSketch(name=f.name, counts=tuple(int(c) for c in counts))
                for f, counts in zip(self._features, self._feature_counts, strict=True)
            ),
            output=None
            if self._output is None
            else FeatureSketch(
                name=self._output.name, counts=tuple(int(c) for c in self._output_counts)
            ),
            mean_confidence=min(1.0, self._confidence_sum / self._confident)
            if self._confident
            else None,
            samples=samples,
        )
        return self._within_budget(drift, now)

    def _samples(self, seq: int) -> tuple[Sample, ...]:
        """Hard examples (least confident first), then reservoir draws: the order they survive."""
        drawn: list[tuple[Rows, SampleReason, float | None]] = [
            (row, SampleReason.LOW_CONFIDENCE, float(confidence))
            for row, confidence in zip(self._hard_rows, self._hard_confidence, strict=True)
        ]
        drawn += [(row, SampleReason.RESERVOIR, None) for row in self._reservoir]
        prefix = f"{self.model}.{self.version}.{seq}"
        return tuple(
            Sample(
                sample_id=f"{prefix}.{reason.value[0]}{i}",
                reason=reason,
                values=tuple(float(v) for v in row.ravel()),
                confidence=confidence,
            )
            for i, (row, reason, confidence) in enumerate(drawn)
            if _keepable(row)
        )[:MAX_SAMPLES]

    def _within_budget(self, drift: Drift, now: float) -> Drift | None:
        available = self._budget.available(now)
        size = _size(drift)
        kept = len(drift.samples)
        if size is None or size > available:
            # Largest number of samples that still fits; sizes grow with every sample kept.
            low, high = 0, kept - 1
            kept = -1
            while low <= high:
                middle = (low + high) // 2
                trimmed = _size(dataclasses.replace(drift, samples=drift.samples[:middle]))
                if trimmed is not None and trimmed <= available:
                    kept, low = middle, middle + 1
                else:
                    high = middle - 1
            self._budget.dropped_samples += len(drift.samples) - max(kept, 0)
            if kept < 0:
                self._budget.dropped_messages += 1
                log.warning(
                    "drift window %s of %s v%s dropped: over the byte budget",
                    drift.seq,
                    drift.model,
                    drift.version,
                )
                return None
            drift = dataclasses.replace(drift, samples=drift.samples[:kept])
            size = _size(drift)
        self._budget.spend(size or 0)
        return drift


def _keepable(row: Rows) -> bool:
    return row.size <= 65536 and float(np.abs(row).max(initial=0.0)) <= SAMPLE_VALUE_LIMIT


def _size(drift: Drift) -> int | None:
    """Encoded size, or None when over the drift channel's hard cap."""
    try:
        return len(encode(drift))
    except MessageTooLargeError:
        return None


def _usable_features(manifest: Manifest) -> tuple[_Binned, ...]:
    """The baseline's features, if the model's input splits into them (else none, logged)."""
    baseline = manifest.baseline
    if baseline is None or not baseline.features:
        return ()
    try:
        feature_columns(np.zeros((1, *manifest.inputs[0].shape[1:])), len(baseline.features))
    except ValueError as err:
        log.warning("%s v%s: no feature sketches: %s", manifest.model, manifest.version, err)
        return ()
    return tuple(_Binned(f.name, f.edges) for f in baseline.features)
