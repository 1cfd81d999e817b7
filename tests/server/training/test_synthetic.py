"""The seeded sensor generator: reproducible, distinguishable faults, drift in sigma units."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import synthetic


def test_same_seed_same_windows_other_seed_other_windows() -> None:
    first = synthetic.generate(50, seed=1)
    np.testing.assert_array_equal(first.x, synthetic.generate(50, seed=1).x)
    assert not np.array_equal(first.x, synthetic.generate(50, seed=2).x)
    assert first.x.shape == (50, 64, 3)
    assert first.schema.labels == synthetic.FAULT_CLASSES


def test_normal_std_matches_what_normal_windows_show() -> None:
    normal = synthetic.generate(2000, seed=5, classes=("normal",))
    measured = normal.x.reshape(-1, 3).std(axis=0)
    np.testing.assert_allclose(measured, synthetic.normal_std(), rtol=0.05)


def test_drift_shifts_the_chosen_channels_by_that_many_sigmas() -> None:
    base = synthetic.generate(400, seed=9, classes=("normal",))
    drifted = synthetic.generate(
        400, seed=9, classes=("normal",), drift=0.5, drift_channels=("temperature",)
    )
    shift = drifted.x.reshape(-1, 3).mean(axis=0) - base.x.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(shift, [0.0, 0.0, 0.5 * synthetic.normal_std()[2]], atol=1e-4)


def test_fault_classes_leave_their_signature() -> None:
    spec = synthetic.SensorSpec()
    samples = synthetic.generate(400, seed=2, spec=spec)
    assert samples.y is not None
    by_class = {name: samples.x[samples.y == i] for i, name in enumerate(samples.schema.labels)}
    rms = {name: float(np.sqrt((x[:, :, 0] ** 2).mean())) for name, x in by_class.items()}
    temperature = {name: float(x[:, :, 2].mean()) for name, x in by_class.items()}
    assert rms["imbalance"] > 2 * rms["normal"]
    assert rms["bearing"] > rms["normal"]
    assert temperature["overheat"] > temperature["normal"] + 10
    assert abs(temperature["normal"] - spec.temperature_c) < 1


def test_class_weights_and_bad_arguments() -> None:
    skewed = synthetic.generate(1000, seed=0, weights=[0.85, 0.05, 0.05, 0.05])
    assert skewed.y is not None
    assert 0.8 < float(np.mean(skewed.y == 0)) < 0.9
    with pytest.raises(InvalidInputError, match="distinct names"):
        synthetic.generate(10, seed=0, classes=("normal", "meltdown"))
    with pytest.raises(InvalidInputError, match="class weights"):
        synthetic.generate(10, seed=0, weights=[1.0])
