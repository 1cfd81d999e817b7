"""Fleet-wide aggregates: what the dashboard's Fleet page shows, for any client."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.server import devices
from edgefleet.server.api.deps import ServicesDep, SessionDep, Viewer
from edgefleet.server.api.schemas import Page
from edgefleet.server.fleet import overview
from edgefleet.server.fleet.buckets import MAX_POINTS
from edgefleet.server.fleet.overview import (
    Facets,
    FleetDevice,
    FleetSummary,
    PresenceSeries,
    VersionCount,
)
from edgefleet.server.states import DeviceState

router = APIRouter(prefix="/fleet", tags=["fleet"])

DAY = 86_400.0
Name = Annotated[str | None, Query(max_length=63)]


@router.get("/summary", response_model=FleetSummary)
def fleet_summary(session: SessionDep, _: Viewer) -> FleetSummary:
    """Devices per state and per problem (failed, rolled back, offline, drift-flagged)."""
    return overview.summary(session)


@router.get("/versions", response_model=list[VersionCount])
def fleet_versions(session: SessionDep, _: Viewer) -> list[VersionCount]:
    """Devices per model version they report running (active slot), revoked devices aside."""
    return overview.versions(session)


@router.get("/presence", response_model=PresenceSeries)
def fleet_presence(
    session: SessionDep,
    services: ServicesDep,
    _: Viewer,
    since: Annotated[float | None, Query(description="default: a day before until")] = None,
    until: Annotated[float | None, Query(description="default: now")] = None,
    points: Annotated[int, Query(ge=1, le=MAX_POINTS)] = MAX_POINTS,
) -> PresenceSeries:
    """Online (devices reporting telemetry) against registered devices over time,
    in at most ``points`` round buckets."""
    end = services.clock() if until is None else until
    start = end - DAY if since is None else since
    return overview.presence(session, since=start, until=end, max_points=points)


@router.get("/devices", response_model=Page[FleetDevice])
def fleet_devices(
    session: SessionDep,
    _: Viewer,
    state: DeviceState | None = None,
    profile: Name = None,
    tag: Name = None,
    group: Name = None,
    search: Name = None,
    problems_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[FleetDevice]:
    """Devices matching the filter, those with problems first (most urgent first)."""
    where = devices.DeviceFilter(
        state=None if state is None else state.value, profile=profile, tag=tag, search=search
    )
    items, total = overview.fleet_devices(
        session, where=where, group=group, problems_only=problems_only, limit=limit, offset=offset
    )
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/facets", response_model=Facets)
def fleet_facets(session: SessionDep, _: Viewer) -> Facets:
    """The groups, profiles and tags the fleet can be filtered by."""
    return overview.facets(session)
