"""Turning real converter output into tensor specs and self-test vectors.

The reproduction check runs the model the way a device will: a fresh
interpreter, real-valued inputs quantized with the manifest's parameters,
outputs dequantized, compared within the manifest's tolerance.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tflite_runtime.interpreter import Interpreter

from edgefleet.server import tflite_model, tflite_probe
from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.server.tflite_model import (
    ModelDescription,
    build_manifest,
    describe,
    load_interpreter_class,
    self_test_vectors,
)
from edgefleet.shared.manifest import (
    ArtifactSpec,
    Manifest,
    SelfTest,
    SelfTestVector,
    TensorDType,
)
from tests.harness.models import TfliteModels

NOW = 1_800_000_000


def interpreter(data: bytes) -> Interpreter:
    fresh = Interpreter(model_content=data)
    fresh.allocate_tensors()
    return fresh


def run_like_a_device(data: bytes, description: ModelDescription, vector: SelfTestVector):
    """Outputs in real values for a vector's real inputs, on a fresh interpreter."""
    fresh = interpreter(data)
    values = np.asarray(vector.input, dtype=np.float64)
    offset = 0
    for spec, detail in zip(description.inputs, fresh.get_input_details(), strict=True):
        real = values[offset : offset + spec.size].reshape(spec.shape)
        offset += spec.size
        if spec.quantization is not None:
            q = spec.quantization
            real = np.clip(np.rint(real / q.scale) + q.zero_point, -128, 127)
        fresh.set_tensor(detail["index"], real.astype(detail["dtype"]))
    fresh.invoke()
    outputs = []
    for spec, detail in zip(description.outputs, fresh.get_output_details(), strict=True):
        raw = fresh.get_tensor(detail["index"]).astype(np.float64).ravel()
        if spec.quantization is not None:
            raw = spec.quantization.scale * (raw - spec.quantization.zero_point)
        outputs.append(raw)
    return np.concatenate(outputs)


def artifact(data: bytes) -> ArtifactSpec:
    return ArtifactSpec(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        chunk_size=1024,
        chunk_count=-(-len(data) // 1024),
    )


# -- describe ------------------------------------------------------------------


def test_describe_float_model(tflite_models: TfliteModels):
    description = describe(tflite_models.float32)

    [x] = description.inputs
    [y] = description.outputs
    assert (x.dtype, x.shape, x.quantization) == (TensorDType.FLOAT32, (1, 4), None)
    assert (y.dtype, y.shape, y.quantization) == (TensorDType.FLOAT32, (1, 3), None)
    assert (description.input_size, description.output_size) == (4, 3)


def test_describe_int8_model_reads_quantization_from_the_interpreter(tflite_models):
    description = describe(tflite_models.int8)

    fresh = interpreter(tflite_models.int8)
    [x_detail] = fresh.get_input_details()
    [y_detail] = fresh.get_output_details()
    [x] = description.inputs
    [y] = description.outputs
    assert (x.dtype, x.shape, y.dtype, y.shape) == (
        TensorDType.INT8,
        (1, 4),
        TensorDType.INT8,
        (1, 3),
    )
    assert x.quantization is not None
    assert y.quantization is not None
    assert x.quantization.scale == pytest.approx(float(x_detail["quantization"][0]), rel=1e-7)
    assert x.quantization.zero_point == x_detail["quantization"][1]
    # TFLite pins an int8 softmax's output to scale 1/256, zero point -128.
    assert (y.quantization.scale, y.quantization.zero_point) == (1 / 256, -128)
    assert y.quantization.scale == pytest.approx(float(y_detail["quantization"][0]))


def test_dynamic_batch_dimension_is_described_as_one(tflite_models):
    [detail] = interpreter(tflite_models.float32).get_input_details()
    assert list(detail["shape_signature"]) == [-1, 4]  # what the converter left dynamic

    assert describe(tflite_models.float32).inputs[0].shape == (1, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"garbage bytes that are no model", "flatbuffer identifier"),
        (b"\x00" * 64, "flatbuffer identifier"),
        (b"\xff\xff\xff\x7fTFL3" + b"\x00" * 64, "root table offset"),
    ],
    ids=["empty", "text", "zeros", "root-offset-outside"],
)
def test_bytes_that_are_not_tflite_are_refused_with_a_reason(data, message):
    with pytest.raises(InvalidInputError, match=message) as caught:
        describe(data)
    assert caught.value.reason == "not_tflite"


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_model_is_refused_without_taking_the_server_down(tflite_models, keep):
    """The interpreter segfaults on some truncations: it must do so in the child."""
    data = tflite_models.int8[: int(len(tflite_models.int8) * keep)]

    with pytest.raises(InvalidInputError) as caught:
        describe(data)
    assert caught.value.reason in {"not_tflite", "tflite_crashed"}


def test_corrupted_model_is_refused(tflite_models):
    data = bytearray(tflite_models.float32)
    data[8:] = bytes(len(data) - 8)  # keep the header, wipe the tables

    with pytest.raises(InvalidInputError):
        describe(bytes(data))


def test_importing_the_modules_loads_no_tflite_runtime():
    probe = textwrap.dedent(
        """
        import sys
        import edgefleet.server.tflite_model, edgefleet.server.tflite_probe
        heavy = {"tflite_runtime", "ai_edge_litert", "tensorflow"}
        print(sorted(m for m in sys.modules if m.partition(".")[0] in heavy))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    assert done.stdout.strip() == b"[]"


def test_interpreter_falls_back_to_the_next_runtime(monkeypatch):
    monkeypatch.setattr(
        tflite_model,
        "RUNTIMES",
        (
            ("edgefleet_no_such_runtime", "Interpreter"),
            ("tflite_runtime.interpreter", "Interpreter"),
        ),
    )
    assert load_interpreter_class() is Interpreter


def test_missing_runtime_names_the_install_command(monkeypatch):
    monkeypatch.setattr(tflite_model, "RUNTIMES", (("edgefleet_no_such_runtime", "X"),))
    with pytest.raises(ConfigError, match="pip install") as caught:
        load_interpreter_class()
    assert caught.value.reason == "no_tflite_runtime"


# -- self-test vectors ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_self_test_vectors_reproduce_on_a_fresh_interpreter(tflite_models, kind):
    data = getattr(tflite_models, kind)
    description = describe(data)

    self_test = self_test_vectors(data, count=6, seed=7)

    assert len(self_test.vectors) == 6
    for vector in self_test.vectors:
        assert (len(vector.input), len(vector.expected)) == (4, 3)
        got = run_like_a_device(data, description, vector)
        assert np.max(np.abs(got - vector.expected)) <= self_test.tolerance
        assert sum(vector.expected) == pytest.approx(1.0, abs=0.02)  # softmax, in real values


def test_tolerance_follows_the_output_dtype(tflite_models):
    float_test = self_test_vectors(tflite_models.float32)
    int8_test = self_test_vectors(tflite_models.int8)

    assert 0 < float_test.tolerance <= 1e-3
    assert int8_test.tolerance == pytest.approx(2 / 256)  # two steps of the softmax's scale


def test_quantized_inputs_are_recorded_on_the_grid(tflite_models):
    [x] = describe(tflite_models.int8).inputs
    assert x.quantization is not None

    self_test = self_test_vectors(tflite_models.int8, count=8)

    steps = np.asarray([v.input for v in self_test.vectors]) / x.quantization.scale
    steps += x.quantization.zero_point
    assert np.max(np.abs(steps - np.rint(steps))) < 1e-3
    assert steps.min() >= -128
    assert steps.max() <= 127


def test_given_real_inputs_are_used(tflite_models):
    inputs = np.array([[0.1, -0.2, 0.3, -0.4], [0.5, 0.5, -0.5, 0.0]])

    float_test = self_test_vectors(tflite_models.float32, inputs=inputs)
    int8_test = self_test_vectors(tflite_models.int8, inputs=inputs)

    assert len(float_test.vectors) == len(int8_test.vectors) == 2
    for row, vector in zip(inputs, float_test.vectors, strict=True):
        assert (
            np.asarray(vector.input, dtype=np.float32).tolist() == row.astype(np.float32).tolist()
        )
    quantization = describe(tflite_models.int8).inputs[0].quantization
    assert quantization is not None
    step = quantization.scale
    for row, vector in zip(inputs, int8_test.vectors, strict=True):
        assert np.max(np.abs(np.asarray(vector.input) - row)) <= step / 2 + 1e-9


def test_int8_vectors_are_dequantized_to_the_float_model_outputs(tflite_models):
    """Real values on both sides: the quantized model tracks the float one."""
    inputs = tflite_models.representative[:8].astype(np.float64)

    float_test = self_test_vectors(tflite_models.float32, inputs=inputs)
    int8_test = self_test_vectors(tflite_models.int8, inputs=inputs)

    for f, q in zip(float_test.vectors, int8_test.vectors, strict=True):
        assert np.max(np.abs(np.subtract(f.expected, q.expected))) < 0.05


def test_one_input_shape_rows_and_a_single_vector_are_accepted(tflite_models):
    assert len(self_test_vectors(tflite_models.float32, inputs=np.zeros(4)).vectors) == 1
    assert len(self_test_vectors(tflite_models.float32, inputs=np.zeros((3, 1, 4))).vectors) == 3


def test_drawn_vectors_are_reproducible_from_the_seed(tflite_models):
    first = self_test_vectors(tflite_models.int8, seed=3)
    again = self_test_vectors(tflite_models.int8, seed=3)
    other = self_test_vectors(tflite_models.int8, seed=4)

    assert first == again
    assert first.vectors != other.vectors


def test_explicit_tolerance_wins(tflite_models):
    assert self_test_vectors(tflite_models.float32, tolerance=0.25).tolerance == 0.25


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0},
        {"count": 33},
        {"inputs": np.zeros((2, 5))},
        {"inputs": np.array([[np.nan, 0, 0, 0]])},
        {"inputs": np.zeros((0, 4))},
        {"tolerance": -1.0},
    ],
    ids=["no-vectors", "too-many", "wrong-width", "nan", "empty", "negative-tolerance"],
)
def test_bad_self_test_requests_are_refused(tflite_models, kwargs):
    with pytest.raises(InvalidInputError):
        self_test_vectors(tflite_models.float32, **kwargs)


def test_vectors_over_the_manifest_budget_are_trimmed_only_when_drawn(monkeypatch):
    vector = SelfTestVector(input=(0.123456789,) * 400, expected=(0.5,))
    monkeypatch.setattr(tflite_probe, "SELF_TEST_MAX_BYTES", 20_000)

    trimmed = tflite_probe._fit([vector] * 8, 0.1, drop=True)

    assert 1 <= len(trimmed.vectors) < 8
    with pytest.raises(InvalidInputError, match="self-test vectors take"):
        tflite_probe._fit([vector] * 8, 0.1, drop=False)


# -- manifests -----------------------------------------------------------------


def test_build_manifest_from_a_real_model(tflite_models):
    data = tflite_models.int8

    manifest = build_manifest(
        model="vibration",
        version=4,
        hardware_profile="rpi4",
        data=data,
        artifact=artifact(data),
        now=NOW,
        validity_days=30,
    )

    assert manifest.inputs == describe(data).inputs
    assert manifest.expires_at == NOW + 30 * 86_400
    assert manifest.self_test == self_test_vectors(data)
    assert Manifest.from_signed(manifest.to_signed()) == manifest


def test_build_manifest_keeps_a_given_self_test(tflite_models):
    given = SelfTest(
        vectors=(SelfTestVector(input=(0.0,) * 4, expected=(0.3, 0.3, 0.4)),), tolerance=0.5
    )

    manifest = build_manifest(
        model="m",
        version=1,
        hardware_profile="rpi4",
        data=tflite_models.float32,
        artifact=artifact(tflite_models.float32),
        now=NOW,
        validity_days=1,
        self_test=given,
    )

    assert manifest.self_test == given


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model": "Not A Name/"}, "bad_format"),
        ({"version": 0}, "out_of_range"),
        ({"artifact": "other bytes"}, "artifact_mismatch"),
        (
            {
                "self_test": SelfTest(
                    vectors=(SelfTestVector(input=(0.0,), expected=(0.0,)),), tolerance=0.1
                )
            },
            "inconsistent",
        ),
    ],
    ids=["bad-name", "version-zero", "artifact-of-other-bytes", "self-test-of-other-shape"],
)
def test_build_manifest_refuses_what_a_device_would(tflite_models, changes, reason):
    data = tflite_models.float32
    kwargs = {
        "model": "m",
        "version": 1,
        "hardware_profile": "rpi4",
        "data": data,
        "artifact": artifact(data),
        "now": NOW,
        "validity_days": 1,
    }
    if "artifact" in changes:
        changes = {"artifact": artifact(changes["artifact"].encode() * 300)}
    kwargs.update(changes)

    with pytest.raises(InvalidInputError) as caught:
        build_manifest(**kwargs)
    assert caught.value.reason == reason
