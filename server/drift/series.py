"""The drift read side: a model's judged windows as a status, a time series, a window list.

Windows are judged once, at ingest (:mod:`edgefleet.server.ingest.drift_rows`);
this only reads them back, plus the pooled group and fleet drift
:mod:`.aggregate` computes from their stored counts, against the same
references ingest judges by (:func:`edgefleet.server.ingest.references.reference_of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.orm import Session

from edgefleet.server import devices, groups, registry
from edgefleet.server.db.models import Artifact, DriftWindow, Model, ModelVersion
from edgefleet.server.drift.aggregate import (
    Bucket,
    VersionReference,
    WindowPoint,
    bucket_count,
    series,
)
from edgefleet.server.drift.statistics import Calibration
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.ingest.references import reference_of
from edgefleet.shared import schema
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.signed import SignedEnvelope

MAX_LIST = 1000
MAX_SERIES_WINDOWS = 200_000
"""Windows one series may read; a fleet-wide month at one-minute windows wants longer spans cut."""
IN_CHUNK = 500

_CALIBRATION = Calibration()
"""Limits for pooled windows, shared by every request of this process.

It is keyed by the baseline itself (not a model name that a fresh database
may reuse), so one cache per process is always right.
"""


class Scope(StrEnum):
    DEVICE = "device"
    GROUP = "group"
    FLEET = "fleet"


@dataclass(frozen=True, slots=True)
class DeviceDrift:
    """A device's latest window of a model: what an operator looks at first."""

    device: str
    version: int
    seq: int
    window_end: float
    count: int
    score: float | None
    flagged: bool
    mean_confidence: float | None
    confidence_change: float | None


@dataclass(frozen=True, slots=True)
class DriftStatus:
    model: str
    devices: tuple[DeviceDrift, ...]
    """Flagged first, then by score, highest first."""
    flagged_devices: int


@dataclass(frozen=True, slots=True)
class DriftSeries:
    model: str
    scope: Scope
    name: str | None
    since: float
    until: float
    bucket_seconds: float
    buckets: tuple[Bucket, ...]


def drift_status(session: Session, *, model: str) -> DriftStatus:
    registry.get_model(session=session, name=model)
    latest = (
        select(DriftWindow.device_id, func.max(DriftWindow.seq).label("seq"))
        .where(DriftWindow.model == model)
        .group_by(DriftWindow.device_id)
        .subquery()
    )
    rows = session.scalars(
        select(DriftWindow).join(
            latest,
            and_(DriftWindow.device_id == latest.c.device_id, DriftWindow.seq == latest.c.seq),
        )
    ).all()
    found = sorted(
        (
            DeviceDrift(
                device=w.device_id,
                version=w.version,
                seq=w.seq,
                window_end=w.window_end,
                count=w.count,
                score=w.score,
                flagged=w.flagged,
                mean_confidence=w.mean_confidence,
                confidence_change=w.confidence_change,
            )
            for w in rows
        ),
        key=lambda d: (not d.flagged, -(d.score if d.score is not None else -1.0), d.device),
    )
    return DriftStatus(
        model=model, devices=tuple(found), flagged_devices=sum(d.flagged for d in found)
    )


def list_windows(
    session: Session,
    *,
    model: str,
    device: str | None = None,
    flagged: bool | None = None,
    since: float | None = None,
    until: float | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> Sequence[DriftWindow]:
    """Judged windows of ``model`` in the order they arrived; page on the last id."""
    registry.get_model(session=session, name=model)
    query = select(DriftWindow).where(DriftWindow.model == model, DriftWindow.id > after_id)
    if device is not None:
        query = query.where(DriftWindow.device_id == device)
    if flagged is not None:
        query = query.where(DriftWindow.flagged.is_(flagged))
    query = _span(query, since, until)
    return session.scalars(query.order_by(DriftWindow.id).limit(max(1, min(limit, MAX_LIST)))).all()


def _span(
    query: Select[DriftWindow], since: float | None, until: float | None
) -> Select[DriftWindow]:
    if since is not None:
        query = query.where(DriftWindow.window_end >= since)
    if until is not None:
        query = query.where(DriftWindow.window_end < until)
    return query


def _scope_devices(session: Session, scope: Scope, name: str | None) -> list[str] | None:
    """The devices a scope covers; None for the whole fleet."""
    if scope is Scope.FLEET:
        if name is not None:
            raise InvalidInputError("the fleet scope takes no name", reason="bad_scope")
        return None
    if name is None:
        raise InvalidInputError(f"the {scope.value} scope needs a name", reason="bad_scope")
    if scope is Scope.DEVICE:
        return [devices.get_device(session=session, device_id=name).id]
    return groups.members_of(session=session, group=groups.get_group(session=session, name=name))


def _conditions(model: str, since: float, until: float) -> list[ColumnElement[bool]]:
    return [
        DriftWindow.model == model,
        DriftWindow.window_end >= since,
        DriftWindow.window_end < until,
    ]


def _chunks(ids: Sequence[str] | None) -> Iterable[Sequence[str] | None]:
    if ids is None:
        yield None
        return
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start : start + IN_CHUNK]


def _windows(
    session: Session, model: str, ids: Sequence[str] | None, since: float, until: float
) -> list[WindowPoint]:
    conditions = _conditions(model, since, until)
    total = 0
    for chunk in _chunks(ids):
        where = conditions if chunk is None else [*conditions, DriftWindow.device_id.in_(chunk)]
        total += session.scalar(select(func.count()).select_from(DriftWindow).where(*where)) or 0
    if total > MAX_SERIES_WINDOWS:
        raise InvalidInputError(
            f"{total} windows in that span; a series reads at most {MAX_SERIES_WINDOWS}: "
            "take a shorter span or a smaller scope",
            reason="too_many_windows",
        )
    columns = (
        DriftWindow.device_id,
        DriftWindow.version,
        DriftWindow.window_end,
        DriftWindow.count,
        DriftWindow.score,
        DriftWindow.flagged,
        DriftWindow.confidence_change,
        DriftWindow.counts,
    )
    points = []
    for chunk in _chunks(ids):
        where = conditions if chunk is None else [*conditions, DriftWindow.device_id.in_(chunk)]
        points += [WindowPoint(*row) for row in session.execute(select(*columns).where(*where))]
    return points


def references(
    session: Session, model: str, versions: Iterable[int]
) -> dict[int, VersionReference]:
    """Each version's baseline, from one of its manifests (all of a version's carry the same)."""
    found: dict[int, VersionReference] = {}
    rows = session.execute(
        select(ModelVersion.version, ModelVersion.metrics, Artifact.manifest)
        .join(Model, Model.id == ModelVersion.model_id)
        .join(Artifact, Artifact.version_id == ModelVersion.id)
        .where(Model.name == model, ModelVersion.version.in_(sorted(set(versions))))
        .order_by(ModelVersion.version, Artifact.hardware_profile)
    )
    for version, metrics, manifest in rows:
        if version in found:
            continue
        envelope = schema.from_json(SignedEnvelope, manifest)
        reference = reference_of(metrics or {}, Manifest.from_signed(envelope.signed))
        if reference.baseline is not None:
            found[version] = VersionReference(reference.baseline, reference.reference_size)
    return found


def drift_series(
    session: Session,
    *,
    model: str,
    scope: Scope | str,
    name: str | None,
    since: float,
    until: float,
    bucket_seconds: float,
    calibration: Calibration | None = None,
) -> DriftSeries:
    """Per bucket: windows, devices, flagged ones, scores; pooled drift for a group or the fleet."""
    try:
        scope = Scope(scope)
    except ValueError as err:
        raise InvalidInputError(
            f"scope {scope!r}: want device, group or fleet", reason="bad_scope"
        ) from err
    registry.get_model(session=session, name=model)
    bucket_count(since, until, bucket_seconds)
    ids = _scope_devices(session, scope, name)
    points = _windows(session, model, ids, since, until)
    pooled = None
    if scope is not Scope.DEVICE:
        pooled = references(session, model, {p.version for p in points})
    buckets = series(
        points,
        since=since,
        until=until,
        bucket_seconds=bucket_seconds,
        references=pooled,
        calibration=_CALIBRATION if calibration is None else calibration,
    )
    return DriftSeries(
        model=model,
        scope=scope,
        name=name,
        since=since,
        until=until,
        bucket_seconds=bucket_seconds,
        buckets=buckets,
    )
