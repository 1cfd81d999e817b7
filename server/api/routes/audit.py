from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.server import audit
from edgefleet.server.api.deps import SessionDep, Viewer
from edgefleet.server.api.schemas import AuditPublic

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditPublic])
def list_audit(
    session: SessionDep,
    _: Viewer,
    actor: Annotated[str | None, Query(max_length=63)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=128)] = None,
    since: float | None = None,
    until: float | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AuditPublic]:
    where = audit.AuditFilter(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
    )
    records = audit.list_records(session=session, where=where, limit=limit, offset=offset)
    return [AuditPublic.model_validate(r) for r in records]
