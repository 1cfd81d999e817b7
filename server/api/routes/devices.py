from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from edgefleet.server import devices, telemetry
from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.schemas import (
    DeviceBundle,
    DeviceCreate,
    DevicePublic,
    DeviceUpdate,
    EventPublic,
    Page,
    TelemetryBucketPublic,
)
from edgefleet.server.states import DeviceState

router = APIRouter(prefix="/devices", tags=["devices"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _bundle(result: devices.Provisioned) -> DeviceBundle:
    return DeviceBundle(
        device=DevicePublic.model_validate(result.device), agent_config=result.bundle
    )


@router.get("", response_model=Page[DevicePublic])
def list_devices(
    session: SessionDep,
    _: Viewer,
    state: DeviceState | None = None,
    profile: Annotated[str | None, Query(max_length=63)] = None,
    tag: Annotated[str | None, Query(max_length=63)] = None,
    search: Annotated[str | None, Query(max_length=63)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[DevicePublic]:
    where = devices.DeviceFilter(
        state=None if state is None else state.value, profile=profile, tag=tag, search=search
    )
    rows, total = devices.list_devices(session=session, where=where, limit=limit, offset=offset)
    return Page(
        items=[DevicePublic.model_validate(d) for d in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post("", response_model=DeviceBundle, status_code=status.HTTP_201_CREATED)
def provision_device(
    body: DeviceCreate, session: SessionDep, services: ServicesDep, principal: Operator
) -> DeviceBundle:
    spec = devices.DeviceSpec(
        device_id=body.id, profile=body.profile, tags=tuple(body.tags), labels=dict(body.labels)
    )
    return _bundle(
        devices.provision_device(
            session=session,
            spec=spec,
            provisioning=services.provisioning,
            actor=principal.name,
            now=services.clock(),
        )
    )


@router.get("/{device_id}", response_model=DevicePublic)
def show_device(device_id: str, session: SessionDep, _: Viewer) -> DevicePublic:
    return DevicePublic.model_validate(devices.get_device(session=session, device_id=device_id))


@router.patch("/{device_id}", response_model=DevicePublic)
def update_device(
    device_id: str,
    body: DeviceUpdate,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
) -> DevicePublic:
    device = devices.update_device(
        session=session,
        device_id=device_id,
        tags=body.tags,
        labels=body.labels,
        catalog=services.catalog,
        actor=principal.name,
        now=services.clock(),
    )
    return DevicePublic.model_validate(device)


@router.post("/{device_id}/credentials", response_model=DeviceBundle)
def rotate_credentials(
    device_id: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> DeviceBundle:
    return _bundle(
        devices.rotate_credentials(
            session=session,
            device_id=device_id,
            provisioning=services.provisioning,
            actor=principal.name,
            now=services.clock(),
        )
    )


@router.post("/{device_id}/revoke", response_model=DevicePublic)
def revoke_device(
    device_id: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> DevicePublic:
    device = devices.revoke_device(
        session=session,
        device_id=device_id,
        accounts=services.accounts,
        actor=principal.name,
        now=services.clock(),
    )
    return DevicePublic.model_validate(device)


@router.get("/{device_id}/telemetry", response_model=list[TelemetryBucketPublic])
def device_telemetry(
    device_id: str,
    session: SessionDep,
    _: Viewer,
    since: float,
    until: float,
    step: Annotated[float, Query(gt=0, description="bucket width in seconds")] = 60.0,
) -> list[TelemetryBucketPublic]:
    devices.get_device(session=session, device_id=device_id)
    buckets = telemetry.telemetry_series(
        session=session, device_id=device_id, since=since, until=until, step=step
    )
    return [TelemetryBucketPublic.model_validate(b, from_attributes=True) for b in buckets]


@router.get("/{device_id}/events", response_model=list[EventPublic])
def device_events(
    device_id: str, session: SessionDep, _: Viewer, since: float | None = None, limit: Limit = 100
) -> list[EventPublic]:
    devices.get_device(session=session, device_id=device_id)
    events = telemetry.list_events(session=session, device_id=device_id, since=since, limit=limit)
    return [EventPublic.model_validate(e) for e in events]
