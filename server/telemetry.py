"""Reading telemetry and device events back, downsampled on the database side.

A week of one-minute windows is 10,080 rows per device; charts want a few
hundred points, so rows are grouped into ``step``-second buckets in SQL and
only the buckets cross the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from edgefleet.server.db.models import DeviceEvent, TelemetryRecord
from edgefleet.server.errors import InvalidInputError

MAX_BUCKETS = 5000


@dataclass(frozen=True, slots=True)
class TelemetryBucket:
    start: float
    windows: int
    inferences: int
    errors: int
    latency_p95_ms: float | None
    """Worst window p95 in the bucket: a chart must not hide a slow minute."""
    cpu_percent: float | None
    memory_bytes: int | None
    temperature_c: float | None


def telemetry_series(
    *, session: Session, device_id: str, since: float, until: float, step: float
) -> list[TelemetryBucket]:
    if until <= since:
        raise InvalidInputError("'until' must be after 'since'")
    if step <= 0 or (until - since) / step > MAX_BUCKETS:
        raise InvalidInputError(f"step must be positive and give at most {MAX_BUCKETS} buckets")
    t = TelemetryRecord
    offset = (t.window_start - since) / step
    # Non-negative by the WHERE below; SQLite's CAST truncates, PostgreSQL's rounds.
    floored = func.floor(offset) if session.get_bind().dialect.name == "postgresql" else offset
    bucket = cast(floored, Integer).label("bucket")
    rows = session.execute(
        select(
            bucket,
            func.count(),
            func.sum(t.inferences),
            func.sum(t.errors),
            func.max(t.latency_p95_ms),
            func.avg(t.cpu_percent),
            func.max(t.memory_bytes),
            func.avg(t.temperature_c),
        )
        .where(t.device_id == device_id, t.window_start >= since, t.window_start < until)
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    return [
        TelemetryBucket(
            start=since + int(b) * step,
            windows=int(n),
            inferences=int(inf or 0),
            errors=int(err or 0),
            latency_p95_ms=p95,
            cpu_percent=None if cpu is None else float(cpu),
            memory_bytes=None if mem is None else int(mem),
            temperature_c=None if temp is None else float(temp),
        )
        for b, n, inf, err, p95, cpu, mem, temp in rows
    ]


def list_events(
    *, session: Session, device_id: str, since: float | None, limit: int
) -> Sequence[DeviceEvent]:
    """Newest first."""
    query = select(DeviceEvent).where(DeviceEvent.device_id == device_id)
    if since is not None:
        query = query.where(DeviceEvent.at >= since)
    return session.scalars(
        query.order_by(DeviceEvent.at.desc(), DeviceEvent.seq.desc()).limit(limit)
    ).all()
