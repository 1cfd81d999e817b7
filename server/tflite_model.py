"""From an uploaded ``.tflite`` to the parts of a manifest: tensor specs and self-test vectors.

The TFLite interpreter is native code that trusts its input: a truncated
flatbuffer makes it crash (SIGSEGV) rather than raise. Uploaded bytes are
therefore opened only in a child process (:mod:`edgefleet.server.tflite_probe`)
that answers in JSON; a crash or a hang there becomes
:class:`InvalidInputError`, not a dead server. The runtime is imported in
that child alone, by :func:`load_interpreter_class`.

Self-test vectors are in *real* values, what the device's callers see: the
inputs of a quantized tensor are quantized with its scale and zero point
before ``invoke()`` and quantized outputs are dequantized after. Recorded
inputs are snapped to the values the tensor can represent, so a device
quantizing them by any rounding rule feeds the model the same integers.
Numbers are written as the shortest decimal that reads back as the same
float32, which keeps manifests small.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import ConfigError, InvalidInputError, ServerError
from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import MessageError
from edgefleet.shared.manifest import (
    MAX_ARTIFACT_BYTES,
    ArtifactSpec,
    Baseline,
    Manifest,
    SelfTest,
    TensorSpec,
)
from edgefleet.shared.schema import Length
from edgefleet.shared.signed import SignedEnvelope

DAY = 86_400
DEFAULT_TIMEOUT = 120.0
MAX_VECTORS = 32
SIGNATURE_ROOM = 4 * 1024
TFLITE_IDENTIFIER = b"TFL3"
PROBE = "edgefleet.server.tflite_probe"

RUNTIMES = (
    ("tflite_runtime.interpreter", "Interpreter"),
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tensorflow", "lite.Interpreter"),
)
INSTALL_HINT = (
    "pip install 'tflite-runtime>=2.14' (Python < 3.12) or 'ai-edge-litert' (Python >= 3.12)"
)


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """A model's input and output tensors, in the interpreter's order, batch size 1."""

    inputs: Annotated[tuple[TensorSpec, ...], Length(min=1, max=16)]
    outputs: Annotated[tuple[TensorSpec, ...], Length(min=1, max=16)]

    @property
    def input_size(self) -> int:
        return sum(t.size for t in self.inputs)

    @property
    def output_size(self) -> int:
        return sum(t.size for t in self.outputs)


# -- public API (parent side) --------------------------------------------------


def describe(data: bytes, *, timeout: float = DEFAULT_TIMEOUT) -> ModelDescription:
    """The tensors of a TFLite model; refuses bytes the runtime cannot load and run."""
    description, _ = _analyze(data, None, timeout)
    return description


def self_test_vectors(
    data: bytes,
    *,
    inputs: npt.ArrayLike | None = None,
    count: int = 4,
    seed: int = 0,
    tolerance: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SelfTest:
    """Run the model and record inputs with the outputs a device must reproduce.

    ``inputs`` are real values, one row per vector (each row all the model's
    inputs flattened and concatenated, or a single input's own shape after
    the row axis). Without them, ``count`` vectors are drawn from ``seed``:
    uniform over the whole grid of a quantized input, uniform in [-1, 1] for
    a float input, the whole range of a plain 8-bit input and 0..9 for a
    wider plain integer one (pass ``inputs`` where that makes no sense).
    Drawn vectors that would not fit in a manifest are dropped from the end
    (at least one is kept); given ones that do not fit are refused.
    ``tolerance`` defaults to what the output dtypes call for (see
    :data:`~edgefleet.server.tflite_probe.QUANTIZED_STEPS` and its neighbours).
    """
    _, self_test = _analyze(data, _self_test_request(inputs, count, seed, tolerance), timeout)
    return _made(self_test)


def build_manifest(
    *,
    model: str,
    version: int,
    hardware_profile: str,
    data: bytes,
    artifact: ArtifactSpec,
    now: int,
    validity_days: int,
    baseline: Baseline | None = None,
    self_test: SelfTest | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Manifest:
    """The manifest for ``data`` (unsigned), validated as a device will read it."""
    sha256 = hashlib.sha256(data).hexdigest()
    if (artifact.sha256, artifact.size) != (sha256, len(data)):
        raise InvalidInputError(
            f"artifact spec names {artifact.sha256[:16]}... ({artifact.size} bytes), "
            f"the model is {sha256[:16]}... ({len(data)} bytes)",
            reason="artifact_mismatch",
        )
    if isinstance(validity_days, bool) or not isinstance(validity_days, int) or validity_days < 1:
        raise InvalidInputError(f"validity_days must be a positive integer, got {validity_days!r}")
    request = None if self_test is not None else _self_test_request(None, 4, 0, None)
    description, computed = _analyze(data, request, timeout)
    chosen = self_test if self_test is not None else _made(computed)
    try:
        manifest = Manifest(
            model=model,
            version=version,
            hardware_profile=hardware_profile,
            artifact=artifact,
            inputs=description.inputs,
            outputs=description.outputs,
            self_test=chosen,
            created_at=now,
            expires_at=now + validity_days * DAY,
            baseline=baseline,
        )
        body = manifest.to_signed()
        checked = Manifest.from_signed(body)  # the exact checks a device makes
    except MessageError as err:
        raise InvalidInputError(f"invalid manifest: {err}", reason=err.reason) from err
    size = len(jsoncodec.canonical(body))
    if size + SIGNATURE_ROOM > SignedEnvelope.MAX_BYTES:
        raise InvalidInputError(
            f"manifest is {size} bytes; a signed envelope holds {SignedEnvelope.MAX_BYTES} "
            "(use fewer self-test vectors or baseline bins)",
            reason="manifest_too_large",
        )
    return checked


def load_interpreter_class() -> Any:
    """The TFLite ``Interpreter`` class: tflite-runtime, else LiteRT, else TensorFlow's."""
    for module_name, attribute in RUNTIMES:
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        for part in attribute.split("."):
            found = getattr(found, part)
        return found
    raise ConfigError(f"no TFLite runtime is installed: {INSTALL_HINT}", reason="no_tflite_runtime")


# -- talking to the child process ----------------------------------------------


def _self_test_request(
    inputs: npt.ArrayLike | None, count: int, seed: int, tolerance: float | None
) -> dict[str, Any]:
    rows: list[list[float]] | None = None
    if inputs is not None:
        array = np.asarray(inputs, dtype=np.float64)
        if array.ndim == 0 or array.size == 0:
            raise InvalidInputError("self-test inputs are empty", reason="bad_self_test")
        if array.ndim == 1:
            array = array[np.newaxis]
        array = array.reshape(array.shape[0], -1)
        if not np.isfinite(array).all():
            raise InvalidInputError("self-test inputs must be finite", reason="bad_self_test")
        count = array.shape[0]
        rows = array.tolist()
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_VECTORS:
        raise InvalidInputError(
            f"want 1..{MAX_VECTORS} self-test vectors, got {count!r}", reason="bad_self_test"
        )
    if tolerance is not None and not 0.0 <= tolerance <= 1e6:
        raise InvalidInputError(f"tolerance {tolerance!r} is not in [0, 1e6]")
    return {"inputs": rows, "count": count, "seed": int(seed), "tolerance": tolerance}


def _analyze(
    data: bytes, request: dict[str, Any] | None, timeout: float
) -> tuple[ModelDescription, SelfTest | None]:
    """Describe the model (and make self-test vectors) in a child process."""
    _check_header(data)
    header = jsoncodec.canonical({"self_test": request})
    try:
        done = subprocess.run(  # noqa: S603  (our own interpreter and module, no shell)
            [sys.executable, "-P", "-m", PROBE],
            input=struct.pack("<I", len(header)) + header + data,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    except subprocess.TimeoutExpired as err:
        raise InvalidInputError(
            f"the TFLite runtime took over {timeout:g} s on this model", reason="tflite_timeout"
        ) from err
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise InvalidInputError(
            f"the TFLite runtime crashed ({name}) loading or running this model: "
            "the file is truncated or corrupt",
            reason="tflite_crashed",
        )
    stderr = done.stderr.decode("utf-8", "replace")[-2000:]
    try:
        reply = jsoncodec.parse(done.stdout, max_bytes=64 * 1024 * 1024)
        if not reply["ok"]:
            error = InvalidInputError if reply["kind"] == "invalid" else ConfigError
            raise error(reply["message"], reason=reply["reason"])
        description = schema.from_json(ModelDescription, reply["description"])
        raw = reply["self_test"]
        self_test = None if raw is None else schema.from_json(SelfTest, raw)
    except (MessageError, KeyError, TypeError) as err:
        raise ServerError(
            f"the TFLite child process failed (exit {done.returncode}): {stderr}",
            reason="tflite_child_failed",
        ) from err
    return description, self_test


def _made(self_test: SelfTest | None) -> SelfTest:
    if self_test is None:
        raise ServerError(
            "the TFLite child process made no self-test", reason="tflite_child_failed"
        )
    return self_test


def _check_header(data: bytes) -> None:
    """Cheap checks with clear messages before the bytes reach native code."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"model must be bytes, got {type(data).__name__}")
    if len(data) > MAX_ARTIFACT_BYTES:
        raise InvalidInputError(
            f"model is over the limit of {MAX_ARTIFACT_BYTES} bytes", reason="artifact_too_large"
        )
    if len(data) < 8:
        raise InvalidInputError(
            f"not a TFLite model: {len(data)} bytes is too short", reason="not_tflite"
        )
    if bytes(data[4:8]) != TFLITE_IDENTIFIER:
        raise InvalidInputError(
            f"not a TFLite model: want the flatbuffer identifier {TFLITE_IDENTIFIER!r} "
            f"at offset 4, found {bytes(data[4:8])!r}",
            reason="not_tflite",
        )
    (root,) = struct.unpack_from("<I", data, 0)
    if not 8 <= root < len(data):
        raise InvalidInputError(
            f"not a TFLite model: its root table offset {root} lies outside the "
            f"{len(data)} bytes (truncated?)",
            reason="not_tflite",
        )
