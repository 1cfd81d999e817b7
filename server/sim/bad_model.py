"""Broken models for ``bad_model`` events: valid, signed and shaped like the real one.

Each flaw is one the rollout machinery must catch after the model passed
every check on the way in (upload, signature, the device's self-test):

* ``nan``: outputs NaN for any input value outside [-1, 1]. The server's
  self-test draws its vectors inside that range, so the upload and the
  device's self-test pass; sensor readings (a temperature of 40) do not,
  and the agent's probation counts every such inference as an error. Data
  that stays within [-1, 1] never shows this flaw.
* ``slow``: the same answer shape after 48 extra 256-wide layers, many
  times the latency, for the latency checks (the agent's probation, the
  rollout's p95 gate).

They are built with TensorFlow in a spawned process: the simulator's own
process runs no TensorFlow (its host processes load the TFLite runtime,
and both in one process crash).
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.quantize import VariantKey, convert
from edgefleet.server.training.recipes import tensorflow
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.profiles import Variant

SLOW_WIDTH = 256
SLOW_DEPTH = 48
NAN_WEIGHT = 1e-30
"""Scales the NaN term to nothing where it is finite, so good inputs give normal outputs."""

Shape = tuple[int, ...]


def shapes(manifest: Manifest) -> tuple[Shape, Shape]:
    """The input and output shapes a stand-in for ``manifest``'s model must have."""
    if len(manifest.inputs) != 1 or len(manifest.outputs) != 1:
        raise InvalidInputError(
            f"{manifest.model} v{manifest.version} has {len(manifest.inputs)} inputs and "
            f"{len(manifest.outputs)} outputs; a bad_model stands in for one of each"
        )
    return manifest.inputs[0].shape, manifest.outputs[0].shape


def build(flaw: str, input_shape: Shape, output_shape: Shape) -> bytes:
    """The float32 ``.tflite`` of a model with ``flaw`` (runs TensorFlow: call in a child)."""
    keras = tensorflow().keras
    inputs = keras.Input(shape=input_shape[1:], batch_size=input_shape[0])
    flat = keras.layers.Flatten()(inputs)
    hidden = flat
    if flaw == "slow":
        hidden = keras.layers.Dense(SLOW_WIDTH, activation="tanh")(flat)
        repeated = keras.layers.Dense(SLOW_WIDTH, activation="tanh")
        for _ in range(SLOW_DEPTH):
            hidden = repeated(hidden)
    elif flaw != "nan":
        raise InvalidInputError(f"unknown flaw {flaw!r}; known: nan, slow")
    outputs: Any = keras.layers.Dense(math.prod(output_shape[1:]), activation="softmax")(hidden)
    if flaw == "nan":
        ops = keras.ops
        edge = ops.sqrt(1.0 - ops.max(ops.abs(flat), axis=-1, keepdims=True))
        outputs = outputs + NAN_WEIGHT * edge
    outputs = keras.layers.Reshape(output_shape[1:])(outputs)
    model = keras.Model(inputs, outputs)
    return convert(
        model, VariantKey(Variant.FLOAT32), representative=np.zeros((0,), dtype=np.float32)
    )


def build_all(flaws: Sequence[str], input_shape: Shape, output_shape: Shape) -> dict[str, bytes]:
    """Each flaw's model, built in one spawned process (TensorFlow never loads here)."""
    if not flaws:
        return {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return {
            flaw: pool.submit(build, flaw, input_shape, output_shape).result() for flaw in flaws
        }
