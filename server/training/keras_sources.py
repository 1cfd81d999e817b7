"""Uploaded Keras models: checked (without TensorFlow), stored by content hash, listed.

The same bytes uploaded twice are one source. A job later loads, evaluates,
quantizes and registers it (:mod:`~edgefleet.server.training.pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import KerasSource
from edgefleet.server.errors import NotFoundError
from edgefleet.server.training.keras_files import inspect_keras

MAX_FILENAME = 255


def snapshot(source: KerasSource) -> dict[str, Any]:
    return {
        "sha256": source.sha256,
        "size": source.size,
        "filename": source.filename,
        "keras_version": source.keras_version,
        "input_shape": source.input_shape,
    }


def add_source(
    *,
    session: Session,
    store: ArtifactStore,
    data: bytes,
    filename: str,
    max_bytes: int,
    actor: str,
    now: float,
) -> KerasSource:
    info = inspect_keras(data, max_bytes=max_bytes)
    ref = store.put(data)
    found = session.scalar(select(KerasSource).where(KerasSource.sha256 == ref.sha256))
    if found is not None:
        return found
    source = KerasSource(
        sha256=ref.sha256,
        size=ref.size,
        filename="".join(c for c in filename if c.isprintable())[:MAX_FILENAME] or "model.keras",
        keras_version=info.keras_version,
        input_shape=None if info.input_shape is None else list(info.input_shape),
        created_at=now,
        created_by=actor,
    )
    session.add(source)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="keras.upload",
        target_type="keras_source",
        target_id=ref.sha256,
        now=now,
        after=snapshot(source),
    )
    session.commit()
    return source


def get_source(*, session: Session, sha256: str) -> KerasSource:
    found = session.scalar(select(KerasSource).where(KerasSource.sha256 == sha256))
    if found is None:
        raise NotFoundError(f"no uploaded Keras model {sha256[:16]!r}...")
    return found


def list_sources(*, session: Session) -> Sequence[KerasSource]:
    return session.scalars(select(KerasSource).order_by(KerasSource.created_at.desc())).all()
