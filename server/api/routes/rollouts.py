from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.rollout_schemas import (
    RolloutAction,
    RolloutCreate,
    RolloutDevicePublic,
    RolloutPublic,
    RolloutStatus,
)
from edgefleet.server.db.models import RolloutDevice, RolloutState
from edgefleet.server.rollouts import service
from edgefleet.server.rollouts.policy import policy_from_dict
from edgefleet.server.rollouts.status import progress

router = APIRouter(prefix="/rollouts", tags=["rollouts"])


@router.post("", response_model=RolloutPublic, status_code=status.HTTP_201_CREATED)
def create_rollout(
    body: RolloutCreate, session: SessionDep, services: ServicesDep, principal: Operator
) -> RolloutPublic:
    """A draft rollout of an approved version to a group; nothing moves until it is started."""
    spec = service.RolloutSpec(
        group=body.group,
        model=body.model,
        version=body.version,
        policy=policy_from_dict(body.policy),
    )
    rollout = service.create_rollout(
        session=session, spec=spec, actor=principal.name, now=services.clock()
    )
    return RolloutPublic.of(rollout)


@router.get("", response_model=list[RolloutPublic])
def list_rollouts(
    session: SessionDep,
    _: Viewer,
    state: RolloutState | None = None,
    group: str | None = None,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[RolloutPublic]:
    """Newest first."""
    found = service.list_rollouts(
        session=session, state=state, group=group, model=model, limit=limit, offset=offset
    )
    return [RolloutPublic.of(r) for r in found]


@router.get("/{rollout_id}", response_model=RolloutStatus)
def show_rollout(
    rollout_id: str, session: SessionDep, services: ServicesDep, _: Viewer
) -> RolloutStatus:
    """The rollout with per-wave counts by device state, gate values and an ETA."""
    rollout = service.get_rollout(session=session, rollout_id=rollout_id)
    return RolloutStatus.of_progress(
        progress(session=session, rollout=rollout, now=services.clock())
    )


@router.get("/{rollout_id}/devices", response_model=list[RolloutDevicePublic])
def rollout_devices(
    rollout_id: str,
    session: SessionDep,
    _: Viewer,
    wave: Annotated[int | None, Query(ge=0)] = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[RolloutDevicePublic]:
    rollout = service.get_rollout(session=session, rollout_id=rollout_id)
    query = select(RolloutDevice).where(RolloutDevice.rollout_id == rollout.id)
    if wave is not None:
        query = query.where(RolloutDevice.wave == wave)
    if state is not None:
        query = query.where(RolloutDevice.state == state)
    query = query.order_by(RolloutDevice.wave, RolloutDevice.device_id).limit(limit).offset(offset)
    return [RolloutDevicePublic.of(d) for d in session.scalars(query)]


@router.post("/{rollout_id}/start", response_model=RolloutPublic)
def start_rollout(
    rollout_id: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> RolloutPublic:
    rollout = service.start_rollout(
        session=session, rollout_id=rollout_id, actor=principal.name, now=services.clock()
    )
    return RolloutPublic.of(rollout)


@router.post("/{rollout_id}/pause", response_model=RolloutPublic)
def pause_rollout(
    rollout_id: str,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    body: RolloutAction | None = None,
) -> RolloutPublic:
    rollout = service.pause_rollout(
        session=session,
        rollout_id=rollout_id,
        actor=principal.name,
        now=services.clock(),
        reason=None if body is None else body.reason,
    )
    return RolloutPublic.of(rollout)


@router.post("/{rollout_id}/resume", response_model=RolloutPublic)
def resume_rollout(
    rollout_id: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> RolloutPublic:
    rollout = service.resume_rollout(
        session=session, rollout_id=rollout_id, actor=principal.name, now=services.clock()
    )
    return RolloutPublic.of(rollout)


@router.post("/{rollout_id}/approve", response_model=RolloutPublic)
def approve_rollout(
    rollout_id: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> RolloutPublic:
    """Let the next wave start (only when the current one waits for approval)."""
    rollout = service.approve_wave(
        session=session, rollout_id=rollout_id, actor=principal.name, now=services.clock()
    )
    return RolloutPublic.of(rollout)


@router.post("/{rollout_id}/abort", response_model=RolloutPublic)
def abort_rollout(
    rollout_id: str,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
    body: RolloutAction | None = None,
) -> RolloutPublic:
    """Stop; with the policy's rollback, touched devices get their previous bytes back."""
    rollout = service.abort_rollout(
        session=session,
        rollout_id=rollout_id,
        signing=services.signing,
        actor=principal.name,
        now=services.clock(),
        reason=None if body is None else body.reason,
    )
    return RolloutPublic.of(rollout)
