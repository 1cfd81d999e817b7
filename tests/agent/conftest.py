"""Agent fixtures: the real test models on disk with the manifests the server makes for them.

The TFLite runtime is loaded here, at collection, before any fixture imports
TensorFlow: in the other order tflite-runtime cannot read a model in this
process (see :mod:`edgefleet.agent.runtime`), and the agent's tests must run
the interpreter a device runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edgefleet.agent.runtime import ModelRunner, load_runtime
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.tflite_model import build_manifest
from edgefleet.shared.manifest import ArtifactSpec, Manifest
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


def serve(directory: Path, name: str, data: bytes, *, version: int = 1) -> ServedModel:
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
