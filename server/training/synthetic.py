"""A seeded generator of machine-sensor windows with fault classes and a controllable drift.

numpy only (no TensorFlow): the fleet simulator and the drift tests reuse it.
A sample is a window of ``spec.window`` time steps by three channels,
``vibration_x``, ``vibration_y`` (g) and ``temperature`` (degrees C), of a
shaft turning at about ``spec.shaft_hz``:

* ``normal``: a sinusoid at the shaft frequency (amplitude and frequency
  jitter from window to window) plus noise; temperature near ``spec.temperature_c``.
* ``imbalance``: the shaft component 2.5 times stronger.
* ``bearing``: decaying impulses at the bearing's defect frequency
  (5.1 times the shaft's) and twice the noise.
* ``overheat``: temperature 12 degrees higher and rising through the window.

``drift`` shifts the mean of the chosen channels by that many standard
deviations of the channel's value under normal operation
(:func:`normal_std`), the unit drift detection is specified in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema, Samples

CHANNELS = ("vibration_x", "vibration_y", "temperature")
FAULT_CLASSES = ("normal", "imbalance", "bearing", "overheat")
MAX_COUNT = 1_000_000
_AMPLITUDE_JITTER = 0.1
_FREQUENCY_JITTER = 0.05
_BEARING_RATIO = 5.1


@dataclass(frozen=True, slots=True)
class SensorSpec:
    window: int = 64
    sample_rate_hz: float = 1000.0
    shaft_hz: float = 25.0
    vibration_amplitude: float = 1.0
    vibration_noise: float = 0.2
    temperature_c: float = 40.0
    temperature_spread: float = 1.5
    """Standard deviation of a window's mean temperature between windows."""
    temperature_noise: float = 0.1


def normal_std(spec: SensorSpec = SensorSpec()) -> tuple[float, float, float]:
    """Standard deviation of one reading of each channel under normal operation.

    A sinusoid of amplitude ``A`` has variance ``A**2 / 2``; amplitude jitter
    ``j`` (uniform +-j) scales that by ``E[(1 + u)**2] = 1 + j**2 / 3``.
    """
    amplitude = spec.vibration_amplitude**2 / 2 * (1 + _AMPLITUDE_JITTER**2 / 3)
    vibration = math.sqrt(amplitude + spec.vibration_noise**2)
    temperature = math.hypot(spec.temperature_spread, spec.temperature_noise)
    return vibration, vibration, temperature


def _fault_signal(
    label: str, spec: SensorSpec, t: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """One window, ``(window, 3)``."""
    shaft = spec.shaft_hz * (1 + rng.uniform(-_FREQUENCY_JITTER, _FREQUENCY_JITTER))
    amplitude = spec.vibration_amplitude * (1 + rng.uniform(-_AMPLITUDE_JITTER, _AMPLITUDE_JITTER))
    noise = spec.vibration_noise
    phase = rng.uniform(0, 2 * math.pi)
    temperature = spec.temperature_c + rng.normal(0, spec.temperature_spread) + np.zeros_like(t)
    if label == "imbalance":
        amplitude *= 2.5
    angle = 2 * math.pi * shaft * t + phase
    x = amplitude * np.sin(angle)
    y = amplitude * np.cos(angle)
    if label == "bearing":
        period = 1.0 / (shaft * _BEARING_RATIO)
        since = np.mod(t + rng.uniform(0, period), period)
        impulses = 2.0 * np.exp(-since * 4000.0) * np.sin(2 * math.pi * 3000.0 * t)
        x, y, noise = x + impulses, y + 0.7 * impulses, noise * 2
    elif label == "overheat":
        temperature = temperature + 12.0 + 40.0 * t
    columns = (
        x + rng.normal(0, noise, t.shape),
        y + rng.normal(0, noise, t.shape),
        temperature + rng.normal(0, spec.temperature_noise, t.shape),
    )
    return np.stack(columns, axis=-1)


def generate(
    count: int,
    *,
    seed: int,
    spec: SensorSpec = SensorSpec(),
    classes: Sequence[str] = FAULT_CLASSES,
    weights: Sequence[float] | None = None,
    drift: float = 0.0,
    drift_channels: Sequence[str] = CHANNELS,
) -> Samples:
    """``count`` labelled windows; the same arguments give the same arrays."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInputError(f"want 1..{MAX_COUNT} windows, got {count}")
    unknown = sorted(set(classes) - set(FAULT_CLASSES)) + sorted(
        set(drift_channels) - set(CHANNELS)
    )
    if unknown or not classes or len(set(classes)) != len(classes):
        raise InvalidInputError(
            f"classes are distinct names from {FAULT_CLASSES} and drift channels from "
            f"{CHANNELS}; got {unknown or list(classes)}"
        )
    if not 2 <= spec.window <= 65_536 or not math.isfinite(drift):
        raise InvalidInputError("window must be 2..65536 steps and drift a finite number")
    rng = np.random.default_rng(seed)
    shares = None if weights is None else np.asarray(weights, dtype=np.float64)
    if shares is not None:
        if shares.shape != (len(classes),) or (shares < 0).any() or shares.sum() <= 0:
            raise InvalidInputError(f"want {len(classes)} non-negative class weights")
        shares = shares / shares.sum()
    y = rng.choice(len(classes), size=count, p=shares).astype(np.int32)
    t = np.arange(spec.window) / spec.sample_rate_hz
    x = np.stack([_fault_signal(classes[label], spec, t, rng) for label in y])
    shift = np.asarray(normal_std(spec)) * drift
    x += np.where([c in drift_channels for c in CHANNELS], shift, 0.0)
    # One class is no classification: such windows are unlabelled (anomaly-detection data).
    labelled = len(classes) > 1
    schema = DatasetSchema(
        kind=DatasetKind.TIMESERIES,
        shape=(spec.window, 3),
        feature_names=CHANNELS,
        labels=tuple(classes) if labelled else (),
    )
    return Samples(schema, x.astype(np.float32), y if labelled else None)


def csv_rows(samples: Samples, *, spec: SensorSpec = SensorSpec()) -> list[list[str]]:
    """The windows as the rows of a time-series CSV (one series per window), header first.

    The layout :func:`~edgefleet.server.training.parsing.parse_csv` reads with
    ``series_column="machine"``, ``time_column="t"``, ``window=spec.window``.
    """
    header = ["machine", "t", *samples.schema.feature_names]
    if samples.y is not None:
        header.append("label")
    rows = [header]
    for index, window in enumerate(samples.x):
        label = [] if samples.y is None else [samples.schema.labels[samples.y[index]]]
        for step, values in enumerate(window):
            time = f"{step / spec.sample_rate_hz:.6f}"
            rows.append([f"m{index}", time, *(repr(float(v)) for v in values), *label])
    return rows
