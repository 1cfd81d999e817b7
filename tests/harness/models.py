"""Real ``.tflite`` files from the real converter, for any test that needs a model.

Importing TensorFlow and converting take seconds, so the root conftest builds
them once per session.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TfliteModels:
    """A Dense 4 -> 8 -> 3 softmax classifier, converted twice."""

    float32: bytes
    int8: bytes
    """Full-integer: int8 weights, activations, input and output (representative dataset)."""
    representative: npt.NDArray[np.float32]
    """The calibration inputs, shape (100, 4), uniform in [-1, 1]."""


def build_tflite_models() -> TfliteModels:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        # The converter warns that int8 inputs come without statistics: by design,
        # the representative dataset calibrates them.
        warnings.filterwarnings(
            "ignore", message="Statistics for quantized inputs were expected", category=UserWarning
        )
        # Imported by name: TensorFlow ships no type stubs, and this is its only use here.
        tf = importlib.import_module("tensorflow")

        tf.get_logger().setLevel("ERROR")
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential(
            [
                tf.keras.Input(shape=(4,)),
                tf.keras.layers.Dense(8, activation="relu"),
                tf.keras.layers.Dense(3, activation="softmax"),
            ]
        )
        representative = np.random.default_rng(0).uniform(-1.0, 1.0, (100, 4)).astype(np.float32)

        float32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[np.newaxis]] for row in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        int8 = converter.convert()
    return TfliteModels(float32=float32, int8=int8, representative=representative)


def build_slow_classifier(width: int = 256, depth: int = 48) -> bytes:
    """A float32 4 -> 3 softmax classifier like :func:`build_tflite_models`' but slower.

    One ``width`` x ``width`` dense layer applied ``depth`` times: the converter
    stores its weights once, so the file stays small (about 0.3 MB) while each
    inference costs ``depth`` matrix products. With the defaults its p95 on the
    agent's path is about 13x the small classifier's (measured by the rollout
    latency gate), far enough above 3x that a busy machine's noise cannot
    bring it under. ``tanh`` keeps the repeated activations bounded.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = importlib.import_module("tensorflow")
    tf.get_logger().setLevel("ERROR")
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(shape=(4,))
    hidden = tf.keras.layers.Dense(width, activation="tanh")(inputs)
    repeated = tf.keras.layers.Dense(width, activation="tanh")
    for _ in range(depth):
        hidden = repeated(hidden)
    outputs = tf.keras.layers.Dense(3, activation="softmax")(hidden)
    model = tf.keras.Model(inputs, outputs)
    data: bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return data
