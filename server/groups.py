"""Device groups: a static list of members, or a selector evaluated on the live registry.

A selector group has no stored members: who is in it is decided each time
it is read, so a device that gains a tag joins every group that selects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.db.models import Device, Group, GroupKind, GroupMember
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.selector import DeviceFacts, parse_selector
from edgefleet.server.selector import select as select_devices
from edgefleet.shared.errors import TopicError
from edgefleet.shared.topics import validate_device_id


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    kind: GroupKind
    selector: str | None = None
    members: tuple[str, ...] = ()
    description: str = ""


def facts(device: Device) -> DeviceFacts:
    labels = {k: v for k, v in device.labels.items() if isinstance(v, str)}
    return DeviceFacts(
        device_id=device.id,
        profile=device.profile,
        state=device.state,
        tags=frozenset(device.tags),
        labels=labels,
    )


def snapshot(group: Group) -> dict[str, Any]:
    return {
        "name": group.name,
        "kind": group.kind,
        "selector": group.selector,
        "members": [m.device_id for m in group.members],
        "description": group.description,
    }


def get_group(*, session: Session, name: str) -> Group:
    group = session.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise NotFoundError(f"no group {name[:80]!r}")
    return group


def members_of(*, session: Session, group: Group) -> list[str]:
    """Device ids in the group now, sorted."""
    if group.kind == GroupKind.STATIC:
        return [m.device_id for m in group.members]
    selector = parse_selector(group.selector or "")
    return select_devices(selector, (facts(d) for d in session.scalars(select(Device))))


def _check_members(session: Session, members: Sequence[str]) -> list[str]:
    unique = sorted(set(members))
    for device_id in unique:
        try:
            validate_device_id(device_id)
        except TopicError as err:
            raise InvalidInputError(str(err)) from err
    found = set(session.scalars(select(Device.id).where(Device.id.in_(unique))).all())
    missing = [d for d in unique if d not in found]
    if missing:
        raise NotFoundError(f"no such device(s): {', '.join(missing[:10])}")
    return unique


def create_group(*, session: Session, spec: GroupSpec, actor: str, now: float) -> Group:
    try:
        validate_device_id(spec.name)
    except TopicError as err:
        raise InvalidInputError(f"invalid group name: {err}") from err
    if session.scalar(select(Group.id).where(Group.name == spec.name)) is not None:
        raise ConflictError(f"group {spec.name!r} exists")
    group = Group(
        name=spec.name, kind=spec.kind.value, description=spec.description, created_at=now
    )
    if spec.kind is GroupKind.SELECTOR:
        if spec.selector is None or spec.members:
            raise InvalidInputError("a selector group takes a selector and no members")
        group.selector = str(parse_selector(spec.selector))
    else:
        if spec.selector is not None:
            raise InvalidInputError("a static group takes members, not a selector")
        group.members = [GroupMember(device_id=d) for d in _check_members(session, spec.members)]
    session.add(group)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="group.create",
        target_type="group",
        target_id=group.name,
        now=now,
        after=snapshot(group),
    )
    session.commit()
    return group


def change_members(
    *,
    session: Session,
    name: str,
    add: Sequence[str],
    remove: Sequence[str],
    actor: str,
    now: float,
) -> Group:
    group = get_group(session=session, name=name)
    if group.kind != GroupKind.STATIC:
        raise ConflictError(f"group {name!r} is defined by a selector; edit the selector instead")
    before = snapshot(group)
    current = {m.device_id for m in group.members}
    wanted = (current | set(_check_members(session, add))) - set(remove)
    group.members = [m for m in group.members if m.device_id in wanted] + [
        GroupMember(device_id=d) for d in sorted(wanted - current)
    ]
    audit.record(
        session=session,
        actor=actor,
        action="group.members",
        target_type="group",
        target_id=name,
        now=now,
        before=before,
        after=snapshot(group),
    )
    session.commit()
    return group


def delete_group(*, session: Session, name: str, actor: str, now: float) -> None:
    group = get_group(session=session, name=name)
    audit.record(
        session=session,
        actor=actor,
        action="group.delete",
        target_type="group",
        target_id=name,
        now=now,
        before=snapshot(group),
    )
    session.delete(group)
    session.commit()


def list_groups(*, session: Session) -> Sequence[Group]:
    return session.scalars(select(Group).order_by(Group.name)).all()
