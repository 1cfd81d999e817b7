"""The one module that loads the TFLite interpreter, and the runner that serves a model with it.

Runtimes, in order: ``tflite_runtime``, ``ai_edge_litert`` (the same
interpreter under its new name, the only one with wheels from Python 3.12 on),
then TensorFlow's bundled copy as a last resort (it pulls in hundreds of MB,
so it is logged). In one process the native libraries collide: once
TensorFlow is imported, tflite-runtime 2.14 fails on every model
(``ValueError: vector::reserve``), while importing tflite-runtime first lets
both work. So in a process that already holds TensorFlow (a simulator or a
test beside the server) its interpreter is used instead.

Callers of :meth:`ModelRunner.predict` deal in real values only; the
conversion to and from quantized tensors is :mod:`edgefleet.agent.tensors`.

Batches resize the input tensor instead of invoking once per sample: on the
4 -> 8 -> 3 test classifier a batch of 256 takes about 12 us in one invoke
against about 540 us in 256, and a resize with re-allocation costs 3-75 us,
so the interpreter keeps the last batch size and only resizes on a change.
Batches are cut into invokes of at most :data:`MAX_INVOKE_BATCH` samples so
a huge request cannot grow the tensor arena without bound. A model whose batch
dimension is fixed in the graph is run once per sample.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import math
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.errors import (
    InferenceFailedError,
    InferenceInputError,
    ModelLoadError,
    RuntimeUnavailableError,
    SelfTestError,
)
from edgefleet.agent.tensors import RealArray, TensorCodec, all_finite
from edgefleet.shared.manifest import Manifest, TensorSpec

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install 'tflite-runtime>=2.14' (Python < 3.12) or 'ai-edge-litert' (Python >= 3.12)"
)
MAX_INVOKE_BATCH = 256
ROUNDING_SLACK = 4 * float(np.finfo(np.float32).eps)
"""Relative slack on self-test outputs: expected values are float32 numbers
written as their shortest decimal, so a few float32 ulps are notation, not
model behaviour."""

_REAL_KINDS = frozenset("iuf")


@dataclass(frozen=True, slots=True)
class InterpreterRuntime:
    """The interpreter package found, with what is needed to configure it."""

    name: str
    interpreter_class: Any
    op_resolver_type: Any

    def create(self, data: bytes, *, threads: int, xnnpack: bool) -> Any:
        options: dict[str, Any] = {"model_content": data, "num_threads": threads}
        if not xnnpack:
            # XNNPACK is the default delegate since TFLite 2.x; only this resolver leaves it out.
            options["experimental_op_resolver_type"] = (
                self.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*Interpreter is deprecated")
            return self.interpreter_class(**options)


_PACKAGES = (
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
)


@functools.cache
def load_runtime() -> InterpreterRuntime:
    """The interpreter package to use in this process (see the module docstring)."""
    tensorflow_first = "tensorflow" in sys.modules and not any(
        module in sys.modules for _, module in _PACKAGES
    )
    if not tensorflow_first:
        for name, module_name in _PACKAGES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            return InterpreterRuntime(name, module.Interpreter, module.OpResolverType)
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as err:
        raise RuntimeUnavailableError(f"no TFLite runtime is installed: {INSTALL_HINT}") from err
    log.warning(
        "using TensorFlow's bundled TFLite interpreter%s; a device wants %s",
        " (TensorFlow was imported first in this process)" if tensorflow_first else "",
        INSTALL_HINT,
    )
    return InterpreterRuntime(
        "tensorflow", tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    )


class ModelRunner:
    """One model in one interpreter; thread-safe, real values in and out."""

    def __init__(
        self, interpreter: Any, manifest: Manifest, runtime: str, *, dynamic_batch: bool
    ) -> None:
        self._interpreter = interpreter
        self._manifest = manifest
        self._lock = threading.Lock()
        self.runtime = runtime
        self.dynamic_batch = dynamic_batch
        (input_spec,) = manifest.inputs
        (output_spec,) = manifest.outputs
        self.input_shape: tuple[int, ...] = input_spec.shape[1:]
        self.output_shape: tuple[int, ...] = output_spec.shape[1:]
        self._batch_ndim = len(self.input_shape) + 1
        self._input_index = int(interpreter.get_input_details()[0]["index"])
        self._output_index = int(interpreter.get_output_details()[0]["index"])
        self._input = TensorCodec(input_spec)
        self._output = TensorCodec(output_spec)
        self._batch = 1

    @classmethod
    def load(cls, path: Path, manifest: Manifest, *, threads: int, xnnpack: bool) -> ModelRunner:
        """Open the model in ``path`` if its bytes and tensors are the ones ``manifest`` names.

        The bytes are checked against the signed hash before the native
        interpreter sees them: it trusts its input and a damaged flatbuffer
        can crash the process instead of raising.
        """
        data = _read_verified(path, manifest)
        _check_supported(manifest)
        runtime = load_runtime()
        try:
            interpreter = runtime.create(data, threads=threads, xnnpack=xnnpack)
            interpreter.allocate_tensors()
            inputs = interpreter.get_input_details()
            outputs = interpreter.get_output_details()
        except (ValueError, RuntimeError) as err:
            raise ModelLoadError(f"the interpreter refuses {path.name}: {err}") from err
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "the agent serves single-input, single-output models",
                reason="unsupported_model",
            )
        _check_tensor(inputs[0], manifest.inputs[0], "input")
        _check_tensor(outputs[0], manifest.outputs[0], "output")
        signature = inputs[0].get("shape_signature", inputs[0]["shape"])
        return cls(interpreter, manifest, runtime.name, dynamic_batch=int(signature[0]) == -1)

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def predict(self, inputs: npt.ArrayLike) -> RealArray:
        """Real outputs with a leading batch axis, for one sample or a batch of real inputs."""
        return self.run(self.prepare(inputs))

    def prepare(self, inputs: npt.ArrayLike) -> RealArray:
        """Checked float32 inputs with a leading batch axis, or :class:`InferenceInputError`."""
        try:
            array = np.asarray(inputs)
        except ValueError as err:  # ragged nesting
            raise InferenceInputError(f"inputs are not a rectangular array: {err}") from err
        if array.dtype.kind not in _REAL_KINDS:
            raise InferenceInputError(
                f"inputs must be real numbers, got dtype {array.dtype.name}", reason="bad_dtype"
            )
        shape = array.shape
        if shape == self.input_shape:
            array = array[np.newaxis]
        elif len(shape) != self._batch_ndim or shape[1:] != self.input_shape or not shape[0]:
            dims = ", ".join(map(str, self.input_shape))
            raise InferenceInputError(
                f"inputs have shape {shape}; the model takes one sample of shape "
                f"{self.input_shape} or a batch of shape (n, {dims})",
                reason="bad_shape",
            )
        if array.dtype != np.float32:
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
        if not all_finite(array):
            raise InferenceInputError(
                "inputs must be finite: NaN or infinity (or a value beyond float32) found",
                reason="non_finite_input",
            )
        return array

    def run(self, batch: RealArray) -> RealArray:
        """:meth:`predict` on inputs that already went through :meth:`prepare`."""
        raw = self._input.encode(batch)
        count = raw.shape[0]
        try:
            with self._lock:
                if count == 1 and self._batch == 1:
                    out = self._invoke(raw)
                else:
                    out = self._invoke_many(raw)
        except (ValueError, RuntimeError) as err:
            raise InferenceFailedError(f"the interpreter failed: {err}") from err
        real = self._output.decode(out)
        if self._output.is_float and not all_finite(real):
            raise InferenceFailedError("the model gave non-finite outputs (NaN or infinity)")
        return real

    def run_self_test(self) -> None:
        """Reproduce the manifest's self-test vectors, or raise :class:`SelfTestError`."""
        self_test = self._manifest.self_test
        for number, vector in enumerate(self_test.vectors):
            sample = np.asarray(vector.input, dtype=np.float64).reshape(self.input_shape)
            try:
                got = self.predict(sample).astype(np.float64).ravel()
            except (InferenceInputError, InferenceFailedError) as err:
                raise SelfTestError(f"self-test vector {number} does not run: {err}") from err
            expected = np.asarray(vector.expected, dtype=np.float64)
            excess = np.abs(got - expected) - (
                self_test.tolerance + ROUNDING_SLACK * np.abs(expected)
            )
            worst = int(np.argmax(excess))
            if excess[worst] > 0:
                raise SelfTestError(
                    f"self-test vector {number}: output {worst} is {got[worst]:.7g}, "
                    f"expected {expected[worst]:.7g} within {self_test.tolerance:g}"
                )

    # -- interpreter calls, under the lock ---------------------------------------

    def _invoke(self, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
        self._interpreter.set_tensor(self._input_index, raw)
        self._interpreter.invoke()
        out: npt.NDArray[Any] = self._interpreter.get_tensor(self._output_index)
        return out

    def _invoke_many(self, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
        count = raw.shape[0]
        step = min(count, MAX_INVOKE_BATCH) if self.dynamic_batch else 1
        parts = []
        for start in range(0, count, step):
            chunk = raw[start : start + step]
            self._resize(chunk.shape[0])
            parts.append(self._invoke(chunk))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input_index, [batch, *self.input_shape])
            self._interpreter.allocate_tensors()
            self._batch = batch


def _read_verified(path: Path, manifest: Manifest) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelLoadError(f"cannot read model file {path}: {err}") from err
    if len(data) != manifest.artifact.size:
        raise ModelLoadError(
            f"{path.name} is {len(data)} bytes, the manifest says {manifest.artifact.size}",
            reason="model_corrupt",
        )
    if hashlib.sha256(data).hexdigest() != manifest.artifact.sha256:
        raise ModelLoadError(
            f"{path.name} does not hash to the manifest's sha256 (damaged on disk?)",
            reason="model_corrupt",
        )
    return data


def _check_supported(manifest: Manifest) -> None:
    if len(manifest.inputs) != 1 or len(manifest.outputs) != 1:
        raise ModelLoadError(
            f"the manifest lists {len(manifest.inputs)} inputs and {len(manifest.outputs)} "
            "outputs; the agent serves single-input, single-output models",
            reason="unsupported_model",
        )
    for spec in (*manifest.inputs, *manifest.outputs):
        if len(spec.shape) < 2 or spec.shape[0] != 1:
            raise ModelLoadError(
                f"tensor {spec.name!r} has shape {spec.shape}; the agent needs a leading "
                "batch dimension of 1",
                reason="unsupported_model",
            )


def _check_tensor(detail: dict[str, Any], spec: TensorSpec, kind: str) -> None:
    """Refuse a model whose tensor is not the one its signed manifest describes."""
    dtype_name = np.dtype(detail["dtype"]).name
    shape = tuple(int(d) for d in detail["shape"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantized = np.dtype(dtype_name).kind != "f" and scale > 0
    problems: list[str] = []
    if dtype_name != spec.dtype.value:
        problems.append(f"dtype {dtype_name}, manifest {spec.dtype.value}")
    if shape != spec.shape:
        problems.append(f"shape {shape}, manifest {spec.shape}")
    if quantized != (spec.quantization is not None):
        problems.append("quantization differs from the manifest's")
    elif spec.quantization is not None and not (
        math.isclose(scale, spec.quantization.scale, rel_tol=1e-6)
        and int(zero_point) == spec.quantization.zero_point
    ):
        problems.append(
            f"quantization ({scale:g}, {zero_point}), manifest "
            f"({spec.quantization.scale:g}, {spec.quantization.zero_point})"
        )
    if problems:
        name = detail.get("name")
        raise ModelLoadError(
            f"model {kind} {name!r} does not match the manifest: {'; '.join(problems)}",
            reason="manifest_mismatch",
        )
