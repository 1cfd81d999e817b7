"""A dataset version in memory (:class:`Samples`), its stored form, its content hash and split.

Samples are always ``float32`` features of one fixed shape per sample plus,
when labelled, an index into the schema's label names. The stored form is an
NPZ archive written byte-for-byte deterministically (fixed zip timestamps, no
compression), so the SHA-256 of the file *is* the content hash: the same data
imported twice is the same version, whatever CSV formatting it came in.

A split is not stored as index lists: it is re-derived from the recorded seed
and fractions, stratified by label, so lineage needs only three numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError
from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import MessageError
from edgefleet.shared.schema import Length, Range, require

MAX_SAMPLES = 2_000_000
MAX_FEATURES = 4096
MAX_LABELS = 1000
SCHEMA_MEMBER = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)

Features = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int32]
Indices = npt.NDArray[np.intp]


class DatasetKind(StrEnum):
    """What one sample is; it decides which recipes fit."""

    TABULAR = "tabular"
    """A vector of features."""
    TIMESERIES = "timeseries"
    """A window of time steps by channels."""
    IMAGE = "image"
    """Height by width by channels."""


_KIND_RANK = {DatasetKind.TABULAR: 1, DatasetKind.TIMESERIES: 2, DatasetKind.IMAGE: 3}

FeatureName = Annotated[str, Length(min=1, max=128)]


@dataclass(frozen=True, slots=True)
class DatasetSchema:
    """Shape and meaning of one sample; ``feature_names`` name the last axis."""

    kind: DatasetKind
    shape: Annotated[tuple[Annotated[int, Range(1, 1 << 20)], ...], Length(min=1, max=3)]
    feature_names: Annotated[tuple[FeatureName, ...], Length(min=1, max=MAX_FEATURES)]
    labels: Annotated[tuple[Annotated[str, Length(min=1, max=128)], ...], Length(max=MAX_LABELS)]
    """Label names in index order; empty for unlabelled data."""
    dtype: Annotated[str, Length(min=1, max=16)] = "float32"

    def __post_init__(self) -> None:
        require(
            len(self.shape) == _KIND_RANK[self.kind],
            f"a {self.kind.value} sample has {_KIND_RANK[self.kind]} axes, got shape {self.shape}",
        )
        require(
            len(self.feature_names) == self.shape[-1],
            f"{len(self.feature_names)} feature names for {self.shape[-1]} features",
        )
        require(len(set(self.feature_names)) == len(self.feature_names), "feature names repeat")
        require(len(set(self.labels)) == len(self.labels), "label names repeat")
        require(self.dtype == "float32", "samples are float32")

    @property
    def labelled(self) -> bool:
        return bool(self.labels)


@dataclass(frozen=True, slots=True, eq=False)
class Samples:
    """The arrays of one dataset version: ``x`` is ``(n, *shape)``, ``y`` is ``(n,)`` or None."""

    schema: DatasetSchema
    x: Features
    y: Labels | None

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32 or self.x.shape[1:] != self.schema.shape:
            raise InvalidInputError(
                f"samples of shape {self.x.shape[1:]} ({self.x.dtype}) do not match the "
                f"schema's {self.schema.shape} (float32)",
                reason="bad_dataset",
            )
        if not 1 <= len(self.x) <= MAX_SAMPLES:
            raise InvalidInputError(
                f"a dataset holds 1..{MAX_SAMPLES} samples, got {len(self.x)}",
                reason="bad_dataset",
            )
        if (self.y is None) == self.schema.labelled:
            raise InvalidInputError(
                "labels and label names must come together", reason="bad_dataset"
            )
        if self.y is not None and (
            self.y.shape != (len(self.x),)
            or self.y.dtype != np.int32
            or int(self.y.min()) < 0
            or int(self.y.max()) >= len(self.schema.labels)
        ):
            raise InvalidInputError(
                f"labels must be {len(self.x)} int32 indices below {len(self.schema.labels)}",
                reason="bad_dataset",
            )

    def __len__(self) -> int:
        return len(self.x)

    def take(self, indices: Indices) -> Samples:
        return Samples(self.schema, self.x[indices], None if self.y is None else self.y[indices])


# -- stored form ---------------------------------------------------------------


def _member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _npy(array: npt.NDArray[np.generic]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(  # type: ignore[no-untyped-call]
        buffer, np.ascontiguousarray(array), allow_pickle=False
    )
    return buffer.getvalue()


def to_bytes(samples: Samples) -> bytes:
    """The canonical NPZ file (``x.npy``, ``y.npy`` if labelled, ``schema.json``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _member(archive, "x.npy", _npy(samples.x))
        if samples.y is not None:
            _member(archive, "y.npy", _npy(samples.y))
        _member(archive, SCHEMA_MEMBER, jsoncodec.canonical(schema.to_json(samples.schema)))
    return buffer.getvalue()


def content_hash(samples: Samples) -> str:
    return hashlib.sha256(to_bytes(samples)).hexdigest()


def from_bytes(data: bytes) -> Samples:
    """Read a file written by :func:`to_bytes` (a stored version: trusted, but checked)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parsed = schema.from_json(
                DatasetSchema, jsoncodec.parse(archive.read(SCHEMA_MEMBER), max_bytes=1 << 22)
            )
            names = set(archive.namelist())
            x = np.load(io.BytesIO(archive.read("x.npy")), allow_pickle=False)
            y = (
                np.load(io.BytesIO(archive.read("y.npy")), allow_pickle=False)
                if "y.npy" in names
                else None
            )
    except (zipfile.BadZipFile, KeyError, ValueError, MessageError) as err:
        raise InvalidInputError(f"stored dataset is unreadable: {err}") from err
    return Samples(parsed, x, y)


# -- growing a dataset ---------------------------------------------------------


def merge(base: Samples, extra: Samples) -> Samples:
    """``base`` followed by ``extra`` (e.g. samples collected from devices), as one version.

    The schemas must agree on shape and features; labels are united, keeping
    the base's indices so its models' outputs still mean the same classes.
    """
    if (base.schema.kind, base.schema.shape, base.schema.feature_names) != (
        extra.schema.kind,
        extra.schema.shape,
        extra.schema.feature_names,
    ):
        raise InvalidInputError(
            f"new samples ({extra.schema.kind.value} {extra.schema.shape}, features "
            f"{', '.join(extra.schema.feature_names[:5])}...) do not match the dataset "
            f"({base.schema.kind.value} {base.schema.shape}, features "
            f"{', '.join(base.schema.feature_names[:5])}...)",
            reason="schema_mismatch",
        )
    if base.schema.labelled != extra.schema.labelled:
        raise InvalidInputError(
            "cannot mix labelled and unlabelled samples in one dataset", reason="schema_mismatch"
        )
    labels = base.schema.labels + tuple(
        name for name in extra.schema.labels if name not in base.schema.labels
    )
    y = None
    if base.y is not None and extra.y is not None:
        remap = np.asarray([labels.index(name) for name in extra.schema.labels], dtype=np.int32)
        y = np.concatenate([base.y, remap[extra.y]])
    merged = DatasetSchema(
        kind=base.schema.kind,
        shape=base.schema.shape,
        feature_names=base.schema.feature_names,
        labels=labels,
    )
    return Samples(merged, np.concatenate([base.x, extra.x]), y)


# -- train / validation / test -------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitSpec:
    """How a version is split; the indices follow from these numbers.

    ``segments`` are the row counts at which the versions this one extends
    ended. Each segment is split on its own, with the same seed and
    fractions, so an extended version's old rows keep exactly the parts they
    had before: a model trained on the extension never trains on its
    parent's test rows, and the parent's test split stays a fair "old data"
    yardstick for champion and challenger alike.
    """

    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    validation: Annotated[float, Range(0.05, 0.5)] = 0.15
    test: Annotated[float, Range(0.05, 0.5)] = 0.15
    segments: Annotated[tuple[Annotated[int, Range(1, 2**53)], ...], Length(max=10_000)] = ()

    def __post_init__(self) -> None:
        require(self.validation + self.test <= 0.6, "validation + test must leave 40% to train")
        require(
            all(a < b for a, b in zip(self.segments, self.segments[1:], strict=False)),
            "split segments must be strictly increasing row counts",
        )

    def extended(self, rows: int) -> SplitSpec:
        """The spec of a version that appends to one of ``rows`` rows split by this spec."""
        return dataclasses.replace(self, segments=(*self.segments, rows))


@dataclass(frozen=True, slots=True, eq=False)
class Split:
    train: Indices
    validation: Indices
    test: Indices

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def split(samples: Samples, spec: SplitSpec) -> Split:
    """Stratified by label (each class split in the same proportions), seeded.

    Every part gets at least one sample of every class that has three or
    more; a dataset too small for three non-empty parts is refused.
    """
    if spec.segments and spec.segments[-1] >= len(samples):
        raise InvalidInputError(
            f"the split's segments end at row {spec.segments[-1]} but the dataset has "
            f"{len(samples)} rows",
            reason="split_mismatch",
        )
    parts: list[list[Indices]] = [[], [], []]
    bounds = (0, *spec.segments, len(samples))
    for start, end in zip(bounds, bounds[1:], strict=False):
        _split_segment(samples, start, end, spec, parts)
    train, validation, test = (np.sort(np.concatenate(p)).astype(np.intp) for p in parts)
    if not (len(train) and len(validation) and len(test)):
        raise InvalidInputError(
            f"{len(samples)} samples are too few to split into train, validation and test",
            reason="dataset_too_small",
        )
    return Split(train=train, validation=validation, test=test)


def _split_segment(
    samples: Samples, start: int, end: int, spec: SplitSpec, parts: list[list[Indices]]
) -> None:
    """Rows ``start:end`` stratified into ``parts``, exactly as if they were the whole dataset."""
    rng = np.random.default_rng(spec.seed)
    rows = np.arange(start, end)
    groups = (
        [rows]
        if samples.y is None
        else [rows[samples.y[start:end] == label] for label in range(len(samples.schema.labels))]
    )
    for members in groups:
        shuffled = rng.permutation(members)
        count = len(shuffled)
        n_test = max(1, round(count * spec.test)) if count >= 3 else 0
        n_val = max(1, round(count * spec.validation)) if count >= 3 else 0
        parts[2].append(shuffled[:n_test])
        parts[1].append(shuffled[n_test : n_test + n_val])
        parts[0].append(shuffled[n_test + n_val :])
