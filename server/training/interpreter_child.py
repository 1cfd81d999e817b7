"""``python -m edgefleet.server.training.interpreter_child``: run a ``.tflite`` over a test split.

Started by :mod:`edgefleet.server.training.evaluate` with an NPZ on stdin
(``model``: the file's bytes as uint8, ``x``: real-valued inputs, samples
first). It loads the model with the device runtime (tflite-runtime, else
LiteRT; see :func:`~edgefleet.server.tflite_model.load_interpreter_class`)
on one thread, quantizes inputs as a device would, invokes once per sample,
and answers ``<u32 little-endian length><JSON header><NPZ>``: outputs
(dequantized real values, one row per sample) and the time of each
``invoke()``. A separate process because TensorFlow and tflite-runtime
cannot share one (their native libraries clash), and because a model that
crashes the native runtime must not take the training worker with it.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import ConfigError
from edgefleet.server.tflite_model import load_interpreter_class
from edgefleet.shared import jsoncodec

WARMUP = 3


def _quantize(x: npt.NDArray[np.float32], detail: dict[str, Any]) -> npt.NDArray[Any]:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    steps = np.rint(x / scale) + zero_point if scale else np.rint(x)
    return np.clip(steps, info.min, info.max).astype(dtype)


def _dequantize(raw: npt.NDArray[Any], detail: dict[str, Any]) -> npt.NDArray[np.float32]:
    scale, zero_point = detail["quantization"]
    values = raw.astype(np.float64)
    if np.dtype(detail["dtype"]).kind != "f" and scale:
        values = scale * (values - zero_point)
    return values.astype(np.float32)


def run(model: bytes, x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], list[float]]:
    interpreter = load_interpreter_class()(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"want one input and one output, the model has {len(inputs)}/{len(outputs)}"
        )
    source, target = inputs[0], outputs[0]
    shape = tuple(int(d) for d in source["shape"])
    if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
        raise ValueError(
            f"the model's input {shape} does not take samples of shape {tuple(x.shape[1:])}"
        )
    fed = _quantize(x, source).reshape((len(x), *shape))
    results: list[npt.NDArray[np.float32]] = []
    seconds: list[float] = []
    for index in range(-WARMUP, len(x)):
        interpreter.set_tensor(source["index"], fed[max(index, 0)])
        started = time.perf_counter()
        interpreter.invoke()
        elapsed = time.perf_counter() - started
        if index >= 0:
            seconds.append(elapsed)
            results.append(_dequantize(interpreter.get_tensor(target["index"]), target).ravel())
    return np.stack(results), seconds


def main() -> int:
    reply_to = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # native code that prints must not corrupt the answer
    header: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]] = {}
    try:
        with np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False) as given:
            outputs, seconds = run(given["model"].tobytes(), given["x"])
        header = {"ok": True}
        arrays = {"outputs": outputs, "seconds": np.asarray(seconds)}
    except (ValueError, RuntimeError, ConfigError) as err:
        header = {"ok": False, "message": " ".join(str(err).split())[:2000]}
    encoded = jsoncodec.canonical(header)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with reply_to:
        reply_to.write(struct.pack("<I", len(encoded)) + encoded + buffer.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
