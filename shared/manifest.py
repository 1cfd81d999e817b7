"""The model manifest: everything a device must know about a model version.

A manifest travels as the ``signed`` part of a :class:`SignedEnvelope` with
``"type": "manifest"``; the type tag keeps a signature made for one role (a
key list, a root) from being replayed as another. Its checks here are about
internal consistency only; whether to *trust* it is :mod:`trust`'s job and
whether to *install* it is :mod:`admission`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from edgefleet.shared import schema
from edgefleet.shared.errors import (
    ArtifactError,
    ArtifactTooLargeError,
    ManifestError,
    MessageError,
)
from edgefleet.shared.messages import SCHEMA_VERSION, Name, Sha256, Version
from edgefleet.shared.schema import JsonObject, Length, Range, require

MANIFEST_TYPE = "manifest"
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 4 * 1024 * 1024

Epoch = Annotated[int, Range(0, 10**11)]
Real = Annotated[float, Range(-3.5e38, 3.5e38)]


class TensorDType(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    INT32 = "int32"


@dataclass(frozen=True, slots=True)
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``."""

    scale: Annotated[float, Range(1e-30, 1e30)]
    zero_point: Annotated[int, Range(-(2**31), 2**31 - 1)]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: Annotated[str, Length(min=1, max=256)]
    dtype: TensorDType
    shape: Annotated[tuple[Annotated[int, Range(1, 1 << 24)], ...], Length(min=1, max=8)]
    quantization: Quantization | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class ArtifactSpec:
    """The model bytes, cut into chunks of ``chunk_size`` for MQTT delivery."""

    sha256: Sha256
    size: Annotated[int, Range(1, MAX_ARTIFACT_BYTES)]
    chunk_size: Annotated[int, Range(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)]
    chunk_count: Annotated[int, Range(1, 1_000_000)]

    def __post_init__(self) -> None:
        expected = -(-self.size // self.chunk_size)
        require(
            self.chunk_count == expected,
            f"{self.size} bytes in chunks of {self.chunk_size} make {expected} chunks, "
            f"not {self.chunk_count}",
        )


@dataclass(frozen=True, slots=True)
class BaselineBins:
    """Quantile bins from the training data; the reference for drift sketches."""

    name: Annotated[str, Length(min=1, max=128)]
    edges: Annotated[tuple[Real, ...], Length(min=1, max=256)]
    probabilities: Annotated[tuple[Annotated[float, Range(0.0, 1.0)], ...], Length(min=2, max=257)]

    def __post_init__(self) -> None:
        require(
            len(self.probabilities) == len(self.edges) + 1,
            f"bins {self.name!r}: {len(self.edges)} edges need "
            f"{len(self.edges) + 1} probabilities, got {len(self.probabilities)}",
        )
        require(
            all(a < b for a, b in zip(self.edges, self.edges[1:], strict=False)),
            f"bins {self.name!r}: edges must be strictly increasing",
        )
        require(
            abs(sum(self.probabilities) - 1.0) <= 1e-6,
            f"bins {self.name!r}: probabilities sum to {sum(self.probabilities)}, not 1",
        )


@dataclass(frozen=True, slots=True)
class Baseline:
    features: Annotated[tuple[BaselineBins, ...], Length(max=1024)]
    output: BaselineBins | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        require(len(set(names)) == len(names), "baseline feature names repeat")


@dataclass(frozen=True, slots=True)
class SelfTestVector:
    """An input and the output the model must reproduce before it may serve."""

    input: Annotated[tuple[Real, ...], Length(min=1, max=65536)]
    expected: Annotated[tuple[Real, ...], Length(min=1, max=65536)]


@dataclass(frozen=True, slots=True)
class SelfTest:
    vectors: Annotated[tuple[SelfTestVector, ...], Length(min=1, max=32)]
    tolerance: Annotated[float, Range(0.0, 1e6)]


@dataclass(frozen=True, slots=True)
class Manifest:
    model: Name
    version: Version
    hardware_profile: Name
    artifact: ArtifactSpec
    inputs: Annotated[tuple[TensorSpec, ...], Length(min=1, max=16)]
    outputs: Annotated[tuple[TensorSpec, ...], Length(min=1, max=16)]
    self_test: SelfTest
    created_at: Epoch
    expires_at: Epoch
    baseline: Baseline | None = None

    def __post_init__(self) -> None:
        require(self.expires_at > self.created_at, "manifest expires before it is created")
        in_size = sum(t.size for t in self.inputs)
        out_size = sum(t.size for t in self.outputs)
        for i, vector in enumerate(self.self_test.vectors):
            require(
                len(vector.input) == in_size,
                f"self-test vector {i} has {len(vector.input)} inputs, model takes {in_size}",
            )
            require(
                len(vector.expected) == out_size,
                f"self-test vector {i} expects {len(vector.expected)} outputs, "
                f"model gives {out_size}",
            )

    def to_signed(self) -> JsonObject:
        """The body to sign: the fields plus the role tag and schema version."""
        body: dict[str, Any] = schema.to_json(self)
        body["type"] = MANIFEST_TYPE
        body["schema"] = SCHEMA_VERSION
        return body

    @classmethod
    def from_signed(cls, signed: JsonObject) -> Manifest:
        body = dict(signed)
        role = body.pop("type", None)
        if role != MANIFEST_TYPE:
            raise ManifestError(
                f"signed body has type {role!r}, expected {MANIFEST_TYPE!r}", reason="wrong_type"
            )
        version = body.pop("schema", None)
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema {version!r} is not supported", reason="unsupported_schema"
            )
        try:
            return schema.from_json(cls, body)
        except MessageError as err:
            raise ManifestError(f"invalid manifest: {err}", reason=err.reason) from err


def check_artifact(manifest: Manifest, *, sha256: str, size: int) -> None:
    """Refuse bytes that are not the ones the signed manifest names."""
    if size > manifest.artifact.size:
        raise ArtifactTooLargeError(
            f"artifact is {size} bytes, manifest declares {manifest.artifact.size}"
        )
    if size != manifest.artifact.size:
        raise ArtifactError(
            f"artifact is {size} bytes, manifest declares {manifest.artifact.size}",
            reason="size_mismatch",
        )
    if sha256 != manifest.artifact.sha256:
        raise ArtifactError(
            f"artifact sha256 {sha256[:16]}... does not match the manifest's "
            f"{manifest.artifact.sha256[:16]}...",
            reason="sha256_mismatch",
        )
