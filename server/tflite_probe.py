"""The child process that opens uploaded models: ``python -m edgefleet.server.tflite_probe``.

Only :mod:`edgefleet.server.tflite_model` starts it. It reads
``<u32 little-endian header length><JSON header><model bytes>`` on stdin,
loads the model with the TFLite runtime, and answers one JSON object on
stdout: the tensor specs and, if asked, self-test vectors (see
:mod:`~edgefleet.server.tflite_model` for what they hold). Refusals come back
as ``{"ok": false, "kind", "reason", "message"}``; a crash of the native
runtime kills only this process.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.server.tflite_model import ModelDescription, load_interpreter_class
from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.manifest import (
    Quantization,
    SelfTest,
    SelfTestVector,
    TensorDType,
    TensorSpec,
)

MAX_VECTOR_VALUES = 65_536
SELF_TEST_MAX_BYTES = 128 * 1024
"""Room for self-test vectors in a manifest (a signed envelope holds 256 KiB in all)."""
QUANTIZED_STEPS = 2.0
"""Tolerance on quantized outputs, in quantization steps: kernels differ by one step across CPUs."""
FLOAT32_RELATIVE = 1e-4
FLOAT16_RELATIVE = 1e-2

_NUMPY_DTYPES: dict[TensorDType, type[np.generic]] = {
    TensorDType.FLOAT32: np.float32,
    TensorDType.FLOAT16: np.float16,
    TensorDType.INT8: np.int8,
    TensorDType.UINT8: np.uint8,
    TensorDType.INT16: np.int16,
    TensorDType.INT32: np.int32,
}
_DTYPES = {np.dtype(v): k for k, v in _NUMPY_DTYPES.items()}
_INT_RANGES = {
    TensorDType.INT8: (-(2**7), 2**7 - 1),
    TensorDType.UINT8: (0, 2**8 - 1),
    TensorDType.INT16: (-(2**15), 2**15 - 1),
    TensorDType.INT32: (-(2**31), 2**31 - 1),
}
_FLOATS = frozenset({TensorDType.FLOAT32, TensorDType.FLOAT16})

Floats = npt.NDArray[np.float64]
Raw = npt.NDArray[Any]
"""A tensor's contents in its own dtype."""


class _Model:
    """An interpreter on one model, batch size 1; lives in the child process only."""

    def __init__(self, data: bytes) -> None:
        interpreter_class = load_interpreter_class()
        try:
            self._interpreter = interpreter_class(model_content=data)
            for detail in self._interpreter.get_input_details():
                signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
                if any(d < 0 for d in signature):
                    fixed = [1 if d < 0 else d for d in signature]
                    self._interpreter.resize_tensor_input(detail["index"], fixed, strict=False)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise InvalidInputError(
                f"not a valid TFLite model: {err}", reason="not_tflite"
            ) from err
        self._inputs = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()
        inputs = tuple(_spec(d, i, "input") for i, d in enumerate(self._inputs))
        # Output shapes can depend on the inputs: take them from a real run.
        zeros = [_to_raw(np.zeros(t.size), t) for t in inputs]
        outputs = tuple(
            _spec(d, i, "output", shape=raw.shape)
            for i, (d, raw) in enumerate(zip(self._outputs, self.run(zeros), strict=True))
        )
        self.description = ModelDescription(inputs=inputs, outputs=outputs)

    def run(self, raw_inputs: Sequence[Raw]) -> list[Raw]:
        try:
            for detail, raw in zip(self._inputs, raw_inputs, strict=True):
                self._interpreter.set_tensor(detail["index"], raw.reshape(detail["shape"]))
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(d["index"]).copy() for d in self._outputs]
        except (ValueError, RuntimeError) as err:
            raise InvalidInputError(f"the model fails to run: {err}", reason="tflite_run") from err


def _spec(
    detail: dict[str, Any], position: int, kind: str, *, shape: Sequence[int] | None = None
) -> TensorSpec:
    where = f"{kind} {position} ({detail.get('name')!r})"
    dtype = _DTYPES.get(np.dtype(detail["dtype"]))
    if dtype is None:
        raise InvalidInputError(
            f"{where} has dtype {np.dtype(detail['dtype']).name}; "
            f"supported: {', '.join(sorted(_NUMPY_DTYPES))}",
            reason="unsupported_tensor",
        )
    dims = tuple(int(d) for d in (detail["shape"] if shape is None else shape))
    if not dims or not all(1 <= d <= 1 << 24 for d in dims):
        raise InvalidInputError(
            f"{where} has unsupported shape {dims}", reason="unsupported_tensor"
        )
    params = detail.get("quantization_parameters", {})
    scales = np.asarray(params.get("scales", ()), dtype=np.float64).ravel()
    zero_points = np.asarray(params.get("zero_points", ()), dtype=np.int64).ravel()
    if scales.size > 1:
        raise InvalidInputError(
            f"{where} is quantized per channel; inputs and outputs must be per tensor",
            reason="unsupported_tensor",
        )
    quantization = None
    if dtype not in _FLOATS and scales.size == 1 and scales[0] > 0:
        quantization = Quantization(scale=float(scales[0]), zero_point=int(zero_points[0]))
    name = str(detail.get("name") or f"{kind}_{position}")[:256]
    return TensorSpec(name=name, dtype=dtype, shape=dims, quantization=quantization)


def _to_raw(real: Floats, spec: TensorSpec) -> Raw:
    """Real values as the tensor holds them (quantized, rounded half to even, clipped)."""
    numpy_type = _NUMPY_DTYPES[spec.dtype]
    if spec.dtype in _FLOATS:
        return real.astype(numpy_type)
    if spec.quantization is not None:
        real = np.rint(real / spec.quantization.scale) + spec.quantization.zero_point
    low, high = _INT_RANGES[spec.dtype]
    return np.clip(np.rint(real), low, high).astype(numpy_type)


def _to_real(raw: Raw, spec: TensorSpec) -> list[float]:
    """The real values a tensor holds, as compact as their precision allows."""
    values = raw.astype(np.float64).ravel()
    if spec.quantization is not None:
        values = spec.quantization.scale * (values - spec.quantization.zero_point)
    if spec.dtype in _FLOATS or spec.dtype in {TensorDType.INT8, TensorDType.UINT8}:
        # The shortest decimal that reads back as the same float32: exact for
        # float tensors, and off by far less than a step on an 8-bit grid.
        return [float(str(v)) for v in values.astype(np.float32)]
    return [float(v) for v in values]


def _random_real(spec: TensorSpec, rng: np.random.Generator) -> Floats:
    if spec.dtype in _FLOATS:
        return rng.uniform(-1.0, 1.0, spec.size)
    low, high = _INT_RANGES[spec.dtype]
    if spec.quantization is not None:
        steps = rng.integers(low, high, size=spec.size, endpoint=True)
        return spec.quantization.scale * (steps - spec.quantization.zero_point)
    if spec.dtype in {TensorDType.INT8, TensorDType.UINT8}:
        return rng.integers(low, high, size=spec.size, endpoint=True).astype(np.float64)
    return rng.integers(0, 10, size=spec.size).astype(np.float64)


def _tolerance(spec: TensorSpec, values: Floats) -> float:
    if spec.quantization is not None:
        return QUANTIZED_STEPS * spec.quantization.scale
    peak = max(1.0, float(np.max(np.abs(values), initial=0.0)))
    if spec.dtype is TensorDType.FLOAT32:
        return FLOAT32_RELATIVE * peak
    if spec.dtype is TensorDType.FLOAT16:
        return FLOAT16_RELATIVE * peak
    return 0.0


def _split(row: Floats, specs: Sequence[TensorSpec]) -> list[Floats]:
    bounds = np.cumsum([t.size for t in specs])[:-1]
    return list(np.split(row, bounds))


def _make_self_test(model: _Model, request: dict[str, Any]) -> SelfTest:
    described = model.description
    if max(described.input_size, described.output_size) > MAX_VECTOR_VALUES:
        raise InvalidInputError(
            f"model takes {described.input_size} and gives {described.output_size} values; "
            f"a self-test vector holds at most {MAX_VECTOR_VALUES}",
            reason="model_too_large_for_self_test",
        )
    given = request["inputs"]
    if given is not None and any(len(row) != described.input_size for row in given):
        raise InvalidInputError(
            f"self-test inputs must have {described.input_size} values per vector",
            reason="bad_self_test",
        )
    rng = np.random.default_rng(request["seed"])
    vectors: list[SelfTestVector] = []
    tolerance = 0.0
    for index in range(request["count"]):
        if given is not None:
            parts = _split(np.asarray(given[index], dtype=np.float64), described.inputs)
        else:
            parts = [_random_real(t, rng) for t in described.inputs]
        raw_in = [_to_raw(p, t) for p, t in zip(parts, described.inputs, strict=True)]
        raw_out = model.run(raw_in)
        expected: list[float] = []
        for raw, spec in zip(raw_out, described.outputs, strict=True):
            real = _to_real(raw, spec)
            if not np.isfinite(real).all():
                raise InvalidInputError(
                    f"output {spec.name!r} is not finite on self-test vector {index}",
                    reason="non_finite_output",
                )
            tolerance = max(tolerance, _tolerance(spec, np.asarray(real)))
            expected += real
        inputs = [
            v for raw, t in zip(raw_in, described.inputs, strict=True) for v in _to_real(raw, t)
        ]
        vectors.append(SelfTestVector(input=tuple(inputs), expected=tuple(expected)))
    chosen = request["tolerance"]
    return _fit(vectors, tolerance if chosen is None else chosen, drop=given is None)


def _fit(vectors: list[SelfTestVector], tolerance: float, *, drop: bool) -> SelfTest:
    """The vectors that fit in :data:`SELF_TEST_MAX_BYTES`; drawn ones may be dropped."""
    while True:
        self_test = SelfTest(vectors=tuple(vectors), tolerance=tolerance)
        size = len(jsoncodec.canonical(schema.to_json(self_test)))
        if size <= SELF_TEST_MAX_BYTES:
            return self_test
        if not drop or len(vectors) == 1:
            raise InvalidInputError(
                f"{len(vectors)} self-test vectors take {size} bytes; a manifest has room "
                f"for {SELF_TEST_MAX_BYTES}",
                reason="self_test_too_large",
            )
        vectors = vectors[:-1]


def main() -> int:
    """Read ``<u32 header length><JSON header><model>`` on stdin, answer JSON on stdout."""
    reply_to = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # native code that prints must not corrupt the answer
    payload = sys.stdin.buffer.read()
    (length,) = struct.unpack_from("<I", payload, 0)
    request = jsoncodec.parse(payload[4 : 4 + length], max_bytes=length)
    data = payload[4 + length :]
    reply: dict[str, Any]
    try:
        model = _Model(data)
        wanted = request["self_test"]
        self_test = None if wanted is None else _make_self_test(model, wanted)
        reply = {
            "ok": True,
            "description": schema.to_json(model.description),
            "self_test": None if self_test is None else schema.to_json(self_test),
        }
    except (InvalidInputError, ConfigError) as err:
        kind = "invalid" if isinstance(err, InvalidInputError) else "config"
        reply = {"ok": False, "kind": kind, "reason": err.reason, "message": str(err)}
    with reply_to:
        reply_to.write(jsoncodec.canonical(reply))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
