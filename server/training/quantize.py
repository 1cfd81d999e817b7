"""Keras model to ``.tflite`` with the real ``tf.lite.TFLiteConverter``, one variant at a time.

* ``float32``: plain conversion.
* ``float16``: float16 weights (dequantized at load), float arithmetic.
* ``dynamic_range``: int8 weights, activations quantized on the fly.
* ``int8``: full-integer, calibrated on a representative sample of the
  training split; with ``int8_io`` the input and output tensors are int8
  too (the device quantizes), else they stay float32.

Models are converted with a fixed batch size of 1 (what a device runs), so
no shape-computing ops end up in the graph. Dense layers are quantized per
tensor rather than per channel: the per-channel kernels the 2.21 converter
emits for them (FULLY_CONNECTED version 12) do not load in tflite-runtime
2.14, the runtime devices have, and per-tensor scales also keep the int8
file near a quarter of the float32 one. Whether a converted file really
loads on the device runtime is still checked, by evaluating it there.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.recipes import tensorflow
from edgefleet.shared.profiles import Variant

REPRESENTATIVE_SAMPLES = 200
_OP_NAME = re.compile(r"'(tfl?\.[A-Za-z0-9_]+)'")


@dataclass(frozen=True, slots=True, order=True)
class VariantKey:
    """A variant as built: ``int8`` with float I/O and ``int8`` with int8 I/O are two files."""

    variant: Variant
    int8_io: bool = False

    @property
    def name(self) -> str:
        return f"{self.variant.value}-io" if self.int8_io else self.variant.value


class ConversionError(InvalidInputError):
    """The converter refused the model for a variant; the message names the op where it can."""

    reason = "conversion_failed"


def ops_named(message: str) -> list[str]:
    """Op names (``tf.Sin``, ``tfl.log``) a converter error mentions, first seen first."""
    return list(dict.fromkeys(_OP_NAME.findall(message)))


def _batch_of_one(keras: Any, model: Any) -> Any:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InvalidInputError(
            f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "a device model has one of each",
            reason="unsupported_model",
        )
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), batch_size=1, name="input")
    return keras.Model(inputs, model(inputs))


def convert(
    model: Any,
    key: VariantKey,
    *,
    representative: npt.NDArray[np.float32],
) -> bytes:
    """The ``.tflite`` bytes of ``model`` as variant ``key``."""
    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(_batch_of_one(tf.keras, model))
    if key.variant is not Variant.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if key.variant is Variant.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    elif key.variant is Variant.INT8:
        samples = representative[:REPRESENTATIVE_SAMPLES]

        def calibration() -> Iterator[list[npt.NDArray[np.float32]]]:
            for row in samples:
                yield [row[np.newaxis]]

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if key.int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    # Keras' export prints its signatures to stdout; the worker's stdout is the server's.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # The converter warns that int8 inputs lack statistics: calibration supplies them.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        try:
            data: bytes = converter.convert()
        except Exception as err:  # noqa: BLE001 - the converter raises many unrelated types
            message = " ".join(str(err).split())
            ops = ops_named(message)
            what = f"op(s) {', '.join(ops)}" if ops else "this model"
            raise ConversionError(
                f"{key.name}: the TFLite converter cannot convert {what}: {message[:600]}"
            ) from err
    return data


def representative_rows(
    x: npt.NDArray[np.float32], *, seed: int, count: int = REPRESENTATIVE_SAMPLES
) -> npt.NDArray[np.float32]:
    """A seeded sample of training inputs for int8 calibration."""
    picks = np.random.default_rng(seed).permutation(len(x))[:count]
    return x[np.sort(picks)]
