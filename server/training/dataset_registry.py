"""Datasets and their immutable versions: the service the API, CLI and workers share.

A version is the canonical NPZ of :mod:`~edgefleet.server.training.datasets`
in the content-addressed artifact store plus one row holding its schema,
split and provenance. Importing content identical to the newest version is a
no-op that returns it; anything else becomes the next version number. The
split is checked before anything is written, so a dataset too small to
train on is refused instead of stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import Dataset, DatasetVersion
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.training import datasets
from edgefleet.server.training.datasets import DatasetSchema, Samples, SplitSpec
from edgefleet.shared import schema
from edgefleet.shared.errors import TopicError
from edgefleet.shared.topics import validate_device_id


def check_name(what: str, name: str) -> None:
    """Dataset and model names use the device-id alphabet (they appear in paths and topics)."""
    try:
        validate_device_id(name)
    except TopicError as err:
        raise InvalidInputError(f"invalid {what} name: {err}") from err


@dataclass(frozen=True, slots=True)
class Imported:
    version: DatasetVersion
    created: bool
    """False when the content was the newest version's already."""


def get_dataset(*, session: Session, name: str) -> Dataset:
    found = session.scalar(select(Dataset).where(Dataset.name == name))
    if found is None:
        raise NotFoundError(f"no dataset {name[:80]!r}")
    return found


def list_datasets(*, session: Session) -> Sequence[Dataset]:
    return session.scalars(select(Dataset).order_by(Dataset.name)).all()


def get_version(*, session: Session, name: str, version: int | None = None) -> DatasetVersion:
    """Version ``version`` of dataset ``name``, or its newest when None."""
    dataset = get_dataset(session=session, name=name)
    if not dataset.versions:
        raise NotFoundError(f"dataset {name!r} has no versions")
    if version is None:
        return dataset.versions[-1]
    for found in dataset.versions:
        if found.version == version:
            return found
    raise NotFoundError(f"dataset {name!r} has no version {version}")


def version_schema(version: DatasetVersion) -> DatasetSchema:
    return schema.from_json(DatasetSchema, version.sample_schema)


def version_split(version: DatasetVersion) -> SplitSpec:
    spec = {
        k: version.split[k]
        for k in ("seed", "validation", "test", "segments")
        if k in version.split
    }
    return schema.from_json(SplitSpec, spec)


def load_samples(*, store: ArtifactStore, version: DatasetVersion) -> Samples:
    return datasets.from_bytes(store.read(version.sha256))


def snapshot(version: DatasetVersion) -> dict[str, Any]:
    return {
        "dataset": version.dataset.name,
        "version": version.version,
        "sha256": version.sha256,
        "samples": version.samples,
        "schema": version.sample_schema,
        "split": version.split,
        "source": version.source,
    }


def import_version(
    *,
    session: Session,
    store: ArtifactStore,
    name: str,
    samples: Samples,
    split: SplitSpec,
    source: dict[str, Any],
    actor: str,
    now: float,
    extend: bool = False,
) -> Imported:
    """Store ``samples`` as the next version of ``name`` (created if new).

    With ``extend`` the new version is the newest one's samples followed by
    these (same features; labels united), e.g. samples collected from devices;
    it keeps the newest version's split for the old rows, and ``split`` is
    not used.
    """
    check_name("dataset", name)
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    latest = dataset.versions[-1] if dataset is not None and dataset.versions else None
    if extend:
        if latest is None:
            raise NotFoundError(f"dataset {name!r} has no version to extend")
        samples = datasets.merge(load_samples(store=store, version=latest), samples)
        source = {**source, "extends": latest.version}
        # The parent's rows keep their parts (see SplitSpec.segments); the
        # new rows are split with the parent's seed and fractions.
        split = version_split(latest).extended(latest.samples)
    parts = datasets.split(samples, split)
    data = datasets.to_bytes(samples)
    ref = store.put(data)
    if latest is not None and latest.sha256 == ref.sha256:
        return Imported(latest, created=False)
    if dataset is None:
        dataset = Dataset(name=name, description="", created_at=now)
        session.add(dataset)
        session.flush()
    number = (
        session.scalar(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
        )
        or 0
    ) + 1
    version = DatasetVersion(
        dataset=dataset,
        version=number,
        sha256=ref.sha256,
        size=ref.size,
        samples=len(samples),
        sample_schema=schema.to_json(samples.schema),
        split={**schema.to_json(split), "counts": parts.counts()},
        source=source,
        created_at=now,
        created_by=actor,
    )
    session.add(version)
    try:
        session.flush()
    except IntegrityError as err:
        session.rollback()
        raise ConflictError(
            f"dataset {name!r} version {number} was imported concurrently; retry"
        ) from err
    audit.record(
        session=session,
        actor=actor,
        action="dataset.import",
        target_type="dataset",
        target_id=f"{name}:{number}",
        now=now,
        after=snapshot(version),
    )
    session.commit()
    return Imported(version, created=True)
