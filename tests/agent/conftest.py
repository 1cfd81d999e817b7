"""Agent fixtures: the real test models on disk with the manifests the server makes for them.

The TFLite runtime is loaded here, at collection, before any fixture imports
TensorFlow: in the other order tflite-runtime cannot read a model in this
process (see :mod:`edgefleet.agent.runtime`), and the agent's tests must run
the interpreter a device runs.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.agent.runtime import ModelRunner, load_runtime
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.tflite_model import build_manifest, self_test_vectors
from edgefleet.shared.manifest import ArtifactSpec, Manifest, SelfTest
from tests.harness.models import TfliteModels

load_runtime()

NOW = 1_800_000_000
CHUNK_SIZE = 1024


@dataclass(frozen=True)
class ServedModel:
    """A model file as a slot holds it, and its (unsigned) manifest."""

    path: Path
    data: bytes
    manifest: Manifest

    def load(self, *, threads: int = 1, xnnpack: bool = True) -> ModelRunner:
        return ModelRunner.load(self.path, self.manifest, threads=threads, xnnpack=xnnpack)


def artifact_spec(data: bytes, directory: Path) -> ArtifactSpec:
    """What the server's artifact store puts in a manifest for ``data``."""
    store = ArtifactStore(directory / "artifacts")
    return store.artifact_spec(store.put(data).sha256, CHUNK_SIZE)


def serve(
    directory: Path, name: str, data: bytes, *, version: int = 1, self_test: SelfTest | None = None
) -> ServedModel:
    path = directory / f"{name}.tflite"
    path.write_bytes(data)
    manifest = build_manifest(
        model="vibration",
        version=version,
        hardware_profile="sim",
        data=data,
        artifact=artifact_spec(data, directory),
        now=NOW,
        validity_days=30,
        self_test=self_test,
    )
    return ServedModel(path=path, data=data, manifest=manifest)


@pytest.fixture(scope="session")
def float_model(
    tflite_models: TfliteModels, tmp_path_factory: pytest.TempPathFactory
) -> ServedModel:
    return serve(tmp_path_factory.mktemp("float"), "float32", tflite_models.float32)


@pytest.fixture(scope="session")
def int8_model(
    tflite_models: TfliteModels, tmp_path_factory: pytest.TempPathFactory
) -> ServedModel:
    return serve(tmp_path_factory.mktemp("int8"), "int8", tflite_models.int8, version=2)


def log_model_bytes() -> bytes:
    """``y = log(x)`` on 4 values: fine on positive inputs, NaN on negative ones."""
    tf: Any = importlib.import_module("tensorflow")

    log = tf.function(tf.math.log, input_signature=[tf.TensorSpec(shape=(1, 4), dtype=tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([log.get_concrete_function()], log)
    data: bytes = converter.convert()
    return data


@pytest.fixture(scope="session")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    """A model that gives NaN for about half of all normal inputs: what probation must catch."""
    data = log_model_bytes()
    # Positive self-test inputs: a manifest's expected outputs must be finite.
    self_test = self_test_vectors(data, inputs=[[0.5, 1.0, 2.0, 4.0]])
    return serve(tmp_path_factory.mktemp("nan"), "log", data, version=3, self_test=self_test)


def tensorflow_outputs(data: bytes, inputs: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Reference outputs from TensorFlow's interpreter, one sample at a time, quantizing by hand."""
    tf: Any = importlib.import_module("tensorflow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    (source,) = interpreter.get_input_details()
    (sink,) = interpreter.get_output_details()
    rows = []
    for row in inputs:
        value = row[np.newaxis]
        scale, zero_point = source["quantization"]
        if scale:
            value = np.clip(np.round(value / scale) + zero_point, -128, 127)
        interpreter.set_tensor(source["index"], value.astype(source["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(sink["index"]).astype(np.float64)
        scale, zero_point = sink["quantization"]
        rows.append((out - zero_point) * scale if scale else out)
    return np.concatenate(rows)
