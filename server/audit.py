"""The audit log: who changed what, when, and what it looked like before and after.

Written in the same transaction as the change it describes, so a change
without its record (or a record of a change that was rolled back) cannot exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.db.models import AuditRecord


def record(
    *,
    session: Session,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    now: float,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    entry = AuditRecord(
        at=now,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: float | None = None
    until: float | None = None


def list_records(
    *, session: Session, where: AuditFilter, limit: int, offset: int = 0
) -> Sequence[AuditRecord]:
    """Newest first."""
    query = select(AuditRecord)
    for column, value in (
        (AuditRecord.actor, where.actor),
        (AuditRecord.action, where.action),
        (AuditRecord.target_type, where.target_type),
        (AuditRecord.target_id, where.target_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(AuditRecord.at >= where.since)
    if where.until is not None:
        query = query.where(AuditRecord.at < where.until)
    query = query.order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).limit(limit).offset(offset)
    return session.scalars(query).all()
