"""ModelRunner on the real float32 and int8 test models, against TensorFlow's own interpreter."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.agent.errors import (
    InferenceInputError,
    ModelLoadError,
    RuntimeUnavailableError,
    SelfTestError,
)
from edgefleet.agent.runtime import MAX_INVOKE_BATCH, ModelRunner
from edgefleet.shared.manifest import SelfTest, SelfTestVector
from tests.agent.conftest import ServedModel, artifact_spec, tensorflow_outputs
from tests.harness.models import TfliteModels

Floats = npt.NDArray[Any]


@pytest.fixture(scope="module")
def samples(tflite_models: TfliteModels) -> Floats:
    return tflite_models.representative[:20]


def test_float_model_matches_tensorflow(float_model: ServedModel, samples: Floats) -> None:
    runner = float_model.load()
    expected = tensorflow_outputs(float_model.data, samples)
    batch = runner.predict(samples)
    single = runner.predict(samples[0])
    assert runner.runtime == "tflite_runtime"
    assert batch.dtype == np.float32
    assert batch.shape == (20, 3)
    assert single.shape == (1, 3)
    np.testing.assert_allclose(batch, expected, atol=1e-6)
    np.testing.assert_allclose(single[0], expected[0], atol=1e-6)


def test_int8_model_quantizes_inputs_and_dequantizes_outputs(
    int8_model: ServedModel, float_model: ServedModel, samples: Floats
) -> None:
    runner = int8_model.load()
    got = runner.predict(samples.astype(np.float64))
    (out,) = int8_model.manifest.outputs
    assert out.quantization is not None
    step = out.quantization.scale
    # Same integers in, same integers out as TensorFlow's interpreter fed by hand.
    np.testing.assert_allclose(got, tensorflow_outputs(int8_model.data, samples), atol=step / 2)
    # And real probabilities close to the float model's: quantization costs a few steps.
    assert got.min() >= 0.0
    assert got.max() <= 1.0
    np.testing.assert_allclose(got, float_model.load().predict(samples), atol=8 * step)


def test_self_test_vectors_recorded_by_the_server_reproduce(
    float_model: ServedModel, int8_model: ServedModel
) -> None:
    for served in (float_model, int8_model):
        served.load().run_self_test()


def test_self_test_catches_outputs_beyond_tolerance(int8_model: ServedModel) -> None:
    vector = int8_model.manifest.self_test.vectors[0]
    shifted = tuple(v + 0.05 for v in vector.expected)
    broken = dataclasses.replace(
        int8_model.manifest,
        self_test=SelfTest(
            vectors=(SelfTestVector(input=vector.input, expected=shifted),),
            tolerance=int8_model.manifest.self_test.tolerance,
        ),
    )
    runner = ModelRunner.load(int8_model.path, broken, threads=1, xnnpack=True)
    with pytest.raises(SelfTestError, match="self-test vector 0: output") as caught:
        runner.run_self_test()
    assert caught.value.reason == "self_test_failed"


def test_batches_beyond_one_invoke_and_alternating_sizes_give_per_sample_results(
    float_model: ServedModel,
) -> None:
    runner = float_model.load()
    inputs = np.random.default_rng(3).uniform(-1, 1, (MAX_INVOKE_BATCH + 44, 4))
    one_by_one = np.concatenate([runner.predict(row) for row in inputs])
    assert runner.dynamic_batch
    np.testing.assert_allclose(runner.predict(inputs), one_by_one, atol=1e-6)
    np.testing.assert_allclose(runner.predict(inputs[:3]), one_by_one[:3], atol=1e-6)
    np.testing.assert_allclose(runner.predict(inputs[5]), one_by_one[5:6], atol=1e-6)


def test_concurrent_callers_each_get_their_own_outputs(float_model: ServedModel) -> None:
    runner = float_model.load()
    inputs = np.random.default_rng(4).uniform(-1, 1, (4, 50, 4)).astype(np.float32)
    expected = [runner.predict(block) for block in inputs]
    failures: list[str] = []

    def hammer(block: int) -> None:
        for i in range(200):
            batch = inputs[block] if i % 2 else inputs[block][i % 50]
            got = runner.predict(batch)
            want = expected[block] if i % 2 else expected[block][i % 50 : i % 50 + 1]
            if not np.allclose(got, want, atol=1e-6):
                failures.append(f"thread {block} call {i}")

    threads = [threading.Thread(target=hammer, args=(b,)) for b in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize(
    ("inputs", "reason", "message"),
    [
        ([0.1, 0.2, 0.3], "bad_shape", r"shape \(3,\); the model takes one sample of shape \(4,\)"),
        ([[0.1] * 4] * 2 + [[0.1] * 3], "bad_input", "not a rectangular array"),
        (np.zeros((0, 4)), "bad_shape", r"shape \(0, 4\)"),
        (np.zeros((2, 2, 4)), "bad_shape", "or a batch of shape"),
        (["a", "b", "c", "d"], "bad_dtype", "real numbers, got dtype str"),
        ([True, False, True, False], "bad_dtype", "dtype bool"),
        ([0.1, float("nan"), 0.3, 0.4], "non_finite_input", "must be finite"),
        ([0.1, float("inf"), 0.3, 0.4], "non_finite_input", "must be finite"),
        ([1e300, 0.0, 0.0, 0.0], "non_finite_input", "beyond float32"),
    ],
)
def test_bad_inputs_get_a_reason_and_leave_the_runner_serving(
    float_model: ServedModel, inputs: Any, reason: str, message: str
) -> None:
    runner = float_model.load()
    with pytest.raises(InferenceInputError, match=message) as caught:
        runner.predict(inputs)
    assert caught.value.reason == reason
    assert runner.predict([0.1, 0.2, 0.3, 0.4]).shape == (1, 3)


def test_int8_inputs_outside_the_grid_saturate(int8_model: ServedModel) -> None:
    runner = int8_model.load()
    np.testing.assert_array_equal(runner.predict([50.0] * 4), runner.predict([1e6] * 4))


def test_a_damaged_or_missing_file_is_refused_before_the_interpreter_sees_it(
    float_model: ServedModel, tmp_path: Path
) -> None:
    flipped = bytearray(float_model.data)
    flipped[len(flipped) // 2] ^= 0xFF
    cases = {
        "flipped.tflite": bytes(flipped),
        "truncated.tflite": float_model.data[:-100],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelLoadError) as caught:
            ModelRunner.load(tmp_path / name, float_model.manifest, threads=1, xnnpack=True)
        assert caught.value.reason == "model_corrupt"
    with pytest.raises(ModelLoadError, match="cannot read model file"):
        ModelRunner.load(tmp_path / "absent.tflite", float_model.manifest, threads=1, xnnpack=True)


def test_a_model_whose_tensors_differ_from_its_manifest_is_refused(
    float_model: ServedModel, int8_model: ServedModel, tmp_path: Path
) -> None:
    # The int8 model's manifest, pointed at the float32 bytes (hash and size match).
    wrong = dataclasses.replace(
        int8_model.manifest, artifact=artifact_spec(float_model.data, tmp_path)
    )
    with pytest.raises(ModelLoadError, match="dtype float32, manifest int8") as caught:
        ModelRunner.load(float_model.path, wrong, threads=1, xnnpack=True)
    assert caught.value.reason == "manifest_mismatch"


def test_bytes_that_are_no_model_are_refused_by_the_interpreter(
    float_model: ServedModel, tmp_path: Path
) -> None:
    junk = b"\x00" * 64
    path = tmp_path / "junk.tflite"
    path.write_bytes(junk)
    manifest = dataclasses.replace(float_model.manifest, artifact=artifact_spec(junk, tmp_path))
    with pytest.raises(ModelLoadError, match="the interpreter refuses junk.tflite"):
        ModelRunner.load(path, manifest, threads=1, xnnpack=True)


CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys
    from pathlib import Path

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in sys.argv[4].split(","):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    from edgefleet.agent.errors import RuntimeUnavailableError
    from edgefleet.agent.runtime import ModelRunner
    from edgefleet.shared.manifest import Manifest

    manifest = Manifest.from_signed(json.loads(Path(sys.argv[2]).read_text()))
    try:
        runner = ModelRunner.load(
            Path(sys.argv[1]), manifest, threads=2, xnnpack=sys.argv[3] == "on"
        )
    except RuntimeUnavailableError as err:
        print("unavailable:", err)
        raise SystemExit(0)
    runner.run_self_test()
    print("runtime:", runner.runtime)
    """
)


def load_in_child(served: ServedModel, tmp_path: Path, xnnpack: str, blocked: str = "") -> str:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(served.manifest.to_signed()))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(served.path), str(manifest), xnnpack, blocked or "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout + done.stderr


def test_xnnpack_follows_the_hardware_profile(float_model: ServedModel, tmp_path: Path) -> None:
    # The runtime logs when it applies the XNNPACK delegate.
    assert "XNNPACK" in load_in_child(float_model, tmp_path, "on")
    off = load_in_child(float_model, tmp_path, "off")
    assert "runtime: tflite_runtime" in off
    assert "XNNPACK" not in off


def test_no_runtime_installed_names_the_pip_command(
    float_model: ServedModel, tmp_path: Path
) -> None:
    out = load_in_child(float_model, tmp_path, "on", "tflite_runtime,ai_edge_litert,tensorflow")
    assert "unavailable: no TFLite runtime is installed: pip install 'tflite-runtime" in out
    assert RuntimeUnavailableError.reason == "runtime_unavailable"


@pytest.mark.slow
def test_tensorflow_is_the_last_resort_and_says_so(
    float_model: ServedModel, tmp_path: Path
) -> None:
    out = load_in_child(float_model, tmp_path, "on", "tflite_runtime,ai_edge_litert")
    assert "runtime: tensorflow" in out
    assert "using TensorFlow's bundled TFLite interpreter" in out
