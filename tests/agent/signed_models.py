"""Real models as the fleet ships them: signed manifests in ``desired`` messages, and chunks.

Besides the shared test classifier there is a model that breaches probation:
it passes its self-test (its vectors keep the first input positive) but
returns NaN for about half of normal inputs (``sqrt`` of a negative first
input), which the inference service counts as the model's errors.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import os
import warnings

import numpy as np

from edgefleet.server.tflite_model import build_manifest, self_test_vectors
from edgefleet.shared.manifest import ArtifactSpec, Manifest
from edgefleet.shared.messages import Deployment, Desired
from edgefleet.shared.signed import SignedEnvelope
from tests.shared.factories import NOW, Fleet

PROFILE = "sim"
CHUNK = 1024


def spec(data: bytes) -> ArtifactSpec:
    return ArtifactSpec(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        chunk_size=CHUNK,
        chunk_count=-(-len(data) // CHUNK),
    )


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


@functools.cache
def manifest_for(data: bytes, version: int = 1, *, profile: str = PROFILE) -> Manifest:
    """The server's manifest for ``data`` (tensor specs and self-test from the real runtime)."""
    return build_manifest(
        model="vibration",
        version=version,
        hardware_profile=profile,
        data=data,
        artifact=spec(data),
        now=NOW,
        validity_days=30,
    )


def with_version(manifest: Manifest, version: int) -> Manifest:
    return dataclasses.replace(manifest, version=version)


def deployment(
    fleet: Fleet,
    manifest: Manifest,
    *,
    shadow: bool = False,
    rollout_id: str | None = "r-1",
    envelope: SignedEnvelope | None = None,
) -> Deployment:
    return Deployment(
        model=manifest.model,
        manifest=envelope or fleet.sign(manifest),
        shadow=shadow,
        rollout_id=rollout_id,
    )


def desired(fleet: Fleet, revision: int, *deployments: Deployment) -> Desired:
    return Desired(
        revision=revision,
        issued_at=NOW,
        deployments=deployments,
        signing_keys=fleet.keys_v1,
    )


@functools.cache
def nan_model() -> tuple[bytes, Manifest]:
    """A 4 -> 3 classifier scaled by ``sqrt(x[0])``: NaN whenever the first input is negative."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf = importlib.import_module("tensorflow")
        tf.keras.utils.set_random_seed(1)
        inputs = tf.keras.Input(shape=(4,))
        scores = tf.keras.layers.Dense(3, activation="softmax")(inputs)
        scale = tf.keras.layers.Lambda(lambda x: tf.sqrt(x[:, :1]))(inputs)
        outputs = tf.keras.layers.Multiply()([scores, scale])
        data = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs)).convert()
    positive = np.random.default_rng(0).uniform(0.1, 1.0, (4, 4))
    manifest = build_manifest(
        model="vibration",
        version=5,
        hardware_profile=PROFILE,
        data=data,
        artifact=spec(data),
        now=NOW,
        validity_days=30,
        self_test=self_test_vectors(data, inputs=positive),
    )
    return data, manifest
