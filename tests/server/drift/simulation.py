"""Simulated devices on synthetic sensor data: windows counted like the agent, judged like ingest.

Shared by the drift tests and ``tests.bench.bench_drift``. The baseline is
the trainer's (``baseline.compute`` on ``synthetic.generate`` windows, the
true labels one-hot as the model's outputs so the output bins exist: an
oracle classifier, whose predictions do not move when its inputs drift).
Windows are counted by the agent's own :class:`DriftSketch` (with its draw of
32 positions per sample), closed into a real ``Drift`` message, and judged by
``statistics.judge`` with limits from a ``Calibration``, as ingest would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.sketch import ByteBudget, DriftSketch, confidences
from edgefleet.server.drift.statistics import Calibration, WindowDrift, judge
from edgefleet.server.training import baseline as baselines
from edgefleet.server.training import synthetic
from edgefleet.shared.agent_config import DriftSection
from edgefleet.shared.manifest import (
    Baseline,
    Manifest,
    SelfTest,
    SelfTestVector,
    TensorDType,
    TensorSpec,
)
from tests.shared import factories

N_TRAIN = 5000
"""Training windows behind the baseline, and so its ``reference_size``."""
TRAIN_SEED = 7
CLASSES = len(synthetic.FAULT_CLASSES)
SHIFT = 0.5
"""The drift to detect: a mean shift of half a standard deviation in one channel."""
KEY = "synthetic-v1"
_SECTION = DriftSection(reservoir_size=0, hard_examples=0)
_MAX_BATCH = 20_000

Floats = npt.NDArray[Any]


def one_hot(labels: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    rows: npt.NDArray[np.float32] = np.eye(CLASSES, dtype=np.float32)[labels]
    return rows


def seed_for(*parts: int) -> int:
    """A generator seed of its own for every (purpose, window size, device, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def fit_baseline(n_train: int = N_TRAIN, seed: int = TRAIN_SEED) -> Baseline:
    data = synthetic.generate(n_train, seed=seed)
    assert data.y is not None
    return baselines.compute(
        x=data.x,
        feature_names=data.schema.feature_names,
        outputs=one_hot(data.y),
        classes=CLASSES,
    )


def manifest_for(baseline: Baseline) -> Manifest:
    """The factories' manifest, reshaped for a 64 x 3 sensor window in and four classes out."""
    spec = synthetic.SensorSpec()
    return dataclasses.replace(
        factories.manifest(),
        inputs=(TensorSpec(name="x", dtype=TensorDType.FLOAT32, shape=(1, spec.window, 3)),),
        outputs=(TensorSpec(name="y", dtype=TensorDType.FLOAT32, shape=(1, CLASSES)),),
        self_test=SelfTest(
            vectors=(
                SelfTestVector(
                    input=(0.0,) * (spec.window * 3), expected=(1.0,) + (0.0,) * (CLASSES - 1)
                ),
            ),
            tolerance=0.01,
        ),
        baseline=baseline,
    )


def fresh_samples(
    count: int,
    *,
    seed: int,
    multiple: int = 1,
    drift: float = 0.0,
    channels: Sequence[str] = synthetic.CHANNELS,
) -> Iterator[tuple[Floats, npt.NDArray[Any]]]:
    """``count`` new labelled samples (64 x 3 sensor windows), in batches of a ``multiple`` of them.

    Batches keep the generator's memory bounded; whole multiples keep a drift
    window (or a trial of several) from straddling two batches.
    """
    step = max(1, _MAX_BATCH // multiple) * multiple
    for batch, start in enumerate(range(0, count, step)):
        data = synthetic.generate(
            min(step, count - start),
            seed=seed_for(seed, batch),
            drift=drift,
            drift_channels=channels,
        )
        assert data.y is not None
        yield data.x, data.y


class Device:
    """One simulated device: its own position draws, a budget that never binds."""

    def __init__(self, baseline: Baseline, calibration: Calibration, *, seed: int) -> None:
        self.baseline = baseline
        self.manifest = manifest_for(baseline)
        self.calibration = calibration
        self.rng = np.random.default_rng(seed)
        self.budget = ByteBudget(2**40, now=0.0)
        self.seq = 0

    def window(self, x: Floats, labels: npt.NDArray[Any]) -> WindowDrift:
        """One window of inferences through the agent's sketch and the server's judge."""
        sketch = DriftSketch(self.manifest, _SECTION, rng=self.rng, budget=self.budget, start=0.0)
        outputs = one_hot(labels)
        sketch.add(x, outputs, confidences(outputs))
        self.seq += 1
        drift = sketch.close(seq=self.seq, now=1.0)
        assert drift is not None
        assert drift.output is not None
        thresholds = self.calibration.thresholds(
            KEY, self.baseline, drift.count, reference_size=N_TRAIN
        )
        return judge(
            self.baseline,
            [(f.name, f.counts) for f in drift.features],
            (drift.output.name, drift.output.counts),
            thresholds,
        )

    def windows(self, x: Floats, labels: npt.NDArray[Any], size: int) -> list[WindowDrift]:
        """Consecutive windows of ``size`` inferences (a partial last one is left out)."""
        return [
            self.window(x[start : start + size], labels[start : start + size])
            for start in range(0, len(x) - size + 1, size)
        ]
