"""Broken models for ``bad_model`` events: shaped like the real one, accepted by the server's
checks, broken where the devices will see it. Built with the real converter, probed by the
server's own TFLite child."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from edgefleet.server import tflite_model
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.sim.bad_model import SLOW_WIDTH, build, shapes
from edgefleet.shared.manifest import ArtifactSpec, Manifest, SelfTest, SelfTestVector, TensorDType
from tests.harness.models import TfliteModels

pytestmark = pytest.mark.slow


def manifest_of(data: bytes) -> Manifest:
    artifact = ArtifactSpec(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), chunk_size=65536, chunk_count=1
    )
    return tflite_model.build_manifest(
        model="vibration",
        version=1,
        hardware_profile="sim",
        data=data,
        artifact=artifact,
        now=1_800_000_000,
        validity_days=30,
    )


def test_a_nan_model_passes_the_servers_checks_and_fails_on_readings(
    tflite_models: TfliteModels,
) -> None:
    wanted = shapes(manifest_of(tflite_models.float32))
    assert wanted == ((1, 4), (1, 3))
    data = build("nan", *wanted)
    described = tflite_model.describe(data)
    assert [(t.shape, t.dtype) for t in (*described.inputs, *described.outputs)] == [
        ((1, 4), TensorDType.FLOAT32),
        ((1, 3), TensorDType.FLOAT32),
    ]
    # What the upload computes: vectors drawn in [-1, 1], where the model answers.
    drawn = tflite_model.self_test_vectors(data)
    assert all(np.isfinite(v.expected).all() for v in drawn.vectors)
    # A sensor reading outside that range: NaN, which the probe (like the agent) refuses.
    with pytest.raises(InvalidInputError, match="not finite"):
        tflite_model.self_test_vectors(data, inputs=[[40.0, 0.5, -0.5, 0.0]])


def test_a_slow_model_has_the_shape_and_carries_its_extra_layers() -> None:
    data = build("slow", (1, 32, 3), (1, 4))
    described = tflite_model.describe(data)
    assert [t.shape for t in (*described.inputs, *described.outputs)] == [(1, 32, 3), (1, 4)]
    # The repeated wide layer is stored once: its weights, not its depth, set the size.
    assert SLOW_WIDTH * SLOW_WIDTH * 4 < len(data) < 2 * SLOW_WIDTH * SLOW_WIDTH * 4
    assert tflite_model.self_test_vectors(data).vectors


def test_unknown_flaws_and_many_tensors_are_refused(tflite_models: TfliteModels) -> None:
    with pytest.raises(InvalidInputError, match="unknown flaw 'odd'"):
        build("odd", (1, 4), (1, 3))
    one = manifest_of(tflite_models.float32)
    vectors = tuple(
        SelfTestVector(input=v.input, expected=v.expected * 2) for v in one.self_test.vectors
    )
    two = dataclasses.replace(
        one,
        outputs=one.outputs * 2,
        self_test=SelfTest(vectors=vectors, tolerance=one.self_test.tolerance),
    )
    with pytest.raises(InvalidInputError, match="1 inputs and 2 outputs"):
        shapes(two)
