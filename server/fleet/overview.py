"""The fleet page's numbers, read from the registry, events, drift windows and telemetry.

Each function is one or two grouped queries over indexed columns, so a page
of a 10,000-device fleet costs a handful of queries, not one per device.
Filtering reuses :func:`edgefleet.server.devices.list_devices`, so the fleet
list and ``GET /devices`` agree on what a filter selects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from edgefleet.server import devices, groups
from edgefleet.server.db.models import Device, DeviceEvent, DriftWindow
from edgefleet.server.fleet import presence_rollup
from edgefleet.server.fleet.buckets import bucket_starts, choose_step, registered_counts
from edgefleet.server.fleet.problems import Problem, order_key, problems_of
from edgefleet.server.fleet.rollup_plan import peaks
from edgefleet.server.states import DeviceState

ALL = 1 << 62
"""``list_devices``'s limit when every match is wanted (problems sort before paging)."""


@dataclass(frozen=True, slots=True)
class FleetSummary:
    total: int
    by_state: dict[str, int]
    problems: dict[str, int]
    """Devices per problem; a device with two problems counts under both."""
    devices_with_problems: int


@dataclass(frozen=True, slots=True)
class VersionCount:
    model: str
    version: int
    devices: int


@dataclass(frozen=True, slots=True)
class PresencePoint:
    start: float
    reporting: int
    """Online: the bucket's peak minute count of devices whose telemetry window overlapped
    that minute (a peak, not a sum: distinct devices do not add across minutes)."""
    registered: int
    """Devices provisioned and not revoked at the bucket's end; the rest of them were silent."""


@dataclass(frozen=True, slots=True)
class PresenceSeries:
    since: float
    until: float
    step: float
    points: list[PresencePoint]


@dataclass(frozen=True, slots=True)
class FleetDevice:
    id: str
    profile: str
    state: str
    tags: list[str]
    last_seen_at: float | None
    agent_version: str | None
    models: list[str]
    """Active slots as ``model:version``."""
    problems: list[Problem]


@dataclass(frozen=True, slots=True)
class Facets:
    """What the fleet can be filtered by."""

    groups: list[str]
    profiles: list[str]
    tags: list[str]


def _last_events(session: Session) -> dict[str, str]:
    latest = select(func.max(DeviceEvent.id).label("id")).group_by(DeviceEvent.device_id).subquery()
    rows = session.execute(
        select(DeviceEvent.device_id, DeviceEvent.kind).join(latest, DeviceEvent.id == latest.c.id)
    ).all()
    return {str(device_id): str(kind) for device_id, kind in rows}


def _drift_flagged(session: Session) -> set[str]:
    """Devices whose latest window of some model is flagged."""
    latest = (
        select(DriftWindow.device_id, DriftWindow.model, func.max(DriftWindow.seq).label("seq"))
        .group_by(DriftWindow.device_id, DriftWindow.model)
        .subquery()
    )
    on = and_(
        DriftWindow.device_id == latest.c.device_id,
        DriftWindow.model == latest.c.model,
        DriftWindow.seq == latest.c.seq,
    )
    query = select(DriftWindow.device_id).join(latest, on).where(DriftWindow.flagged).distinct()
    return set(session.scalars(query).all())


def _problem_map(session: Session, states: dict[str, str]) -> dict[str, tuple[Problem, ...]]:
    events = _last_events(session)
    drifting = _drift_flagged(session)
    found = {
        device_id: problems_of(
            state=state, last_event=events.get(device_id), drift_flagged=device_id in drifting
        )
        for device_id, state in states.items()
    }
    return {device_id: found for device_id, found in found.items() if found}


def summary(session: Session) -> FleetSummary:
    by_state = devices.count_by_state(session=session)
    states = {str(i): str(s) for i, s in session.execute(select(Device.id, Device.state))}
    problems = _problem_map(session, states)
    per_problem = Counter(p for found in problems.values() for p in found)
    return FleetSummary(
        total=sum(by_state.values()),
        by_state=by_state,
        problems={p.value: per_problem.get(p, 0) for p in Problem},
        devices_with_problems=len(problems),
    )


def _active_models(running: Sequence[object]) -> list[tuple[str, int]]:
    return [
        (str(slot["model"]), int(slot["version"]))
        for slot in running
        if isinstance(slot, dict) and slot.get("active")
    ]


def versions(session: Session) -> list[VersionCount]:
    """Which model versions the fleet runs now, from each device's last reported state."""
    counts: Counter[tuple[str, int]] = Counter()
    query = select(Device.running).where(Device.state != DeviceState.REVOKED)
    for running in session.scalars(query):
        counts.update(_active_models(running or []))
    return [
        VersionCount(model=model, version=version, devices=n)
        for (model, version), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
    ]


def presence(session: Session, *, since: float, until: float, max_points: int) -> PresenceSeries:
    """Online (reporting) and registered devices per bucket, at most ``max_points`` buckets.

    ``reporting`` is the bucket's peak minute: the most devices whose telemetry
    windows overlapped one minute in it (from the roll-up, see
    :mod:`edgefleet.server.fleet.presence_rollup`), so a week costs the same few
    thousand rows whatever the fleet's size.
    """
    step = choose_step(since, until, max_points)
    per_minute = presence_rollup.minutes(session, since=since, until=until)
    created = sorted(session.scalars(select(Device.created_at)).all())
    revoked = sorted(t for t in session.scalars(select(Device.revoked_at)).all() if t is not None)
    starts = bucket_starts(since, until, step)
    ends = [min(start + step, until) for start in starts]
    points = [
        PresencePoint(start=start, reporting=reporting, registered=registered)
        for start, reporting, registered in zip(
            starts,
            peaks(per_minute, starts, ends),
            registered_counts(created, revoked, ends),
            strict=True,
        )
    ]
    return PresenceSeries(since=since, until=until, step=step, points=points)


def fleet_devices(
    session: Session,
    *,
    where: devices.DeviceFilter,
    group: str | None,
    problems_only: bool,
    limit: int,
    offset: int,
) -> tuple[list[FleetDevice], int]:
    """A page of the devices matching the filter, those with problems first."""
    rows, _ = devices.list_devices(session=session, where=where, limit=ALL)
    if group is not None:
        members = set(
            groups.members_of(session=session, group=groups.get_group(session=session, name=group))
        )
        rows = [d for d in rows if d.id in members]
    problems = _problem_map(session, {d.id: d.state for d in rows})
    if problems_only:
        rows = [d for d in rows if d.id in problems]
    ordered = sorted(rows, key=lambda d: order_key(d.id, problems.get(d.id, ())))
    page = [
        FleetDevice(
            id=d.id,
            profile=d.profile,
            state=d.state,
            tags=list(d.tags),
            last_seen_at=d.last_seen_at,
            agent_version=d.agent_version,
            models=[f"{m}:{v}" for m, v in _active_models(d.running or [])],
            problems=list(problems.get(d.id, ())),
        )
        for d in ordered[offset : offset + limit]
    ]
    return page, len(ordered)


def facets(session: Session) -> Facets:
    profiles = session.scalars(select(Device.profile).distinct().order_by(Device.profile)).all()
    tags = sorted(
        {str(tag) for found in session.scalars(select(Device.tags)) for tag in found or []}
    )
    return Facets(
        groups=[g.name for g in groups.list_groups(session=session)],
        profiles=list(profiles),
        tags=tags,
    )
