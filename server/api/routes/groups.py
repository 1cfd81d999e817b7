from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy.orm import Session

from edgefleet.server import groups
from edgefleet.server.api.deps import Operator, ServicesDep, SessionDep, Viewer
from edgefleet.server.api.schemas import GroupCreate, GroupMembersChange, GroupPublic
from edgefleet.server.db.models import Group, GroupKind

router = APIRouter(prefix="/groups", tags=["groups"])


def _public(session: Session, group: Group) -> GroupPublic:
    return GroupPublic(
        name=group.name,
        kind=GroupKind(group.kind),
        selector=group.selector,
        description=group.description,
        created_at=group.created_at,
        members=groups.members_of(session=session, group=group),
    )


@router.get("", response_model=list[GroupPublic])
def list_groups(session: SessionDep, _: Viewer) -> list[GroupPublic]:
    return [_public(session, g) for g in groups.list_groups(session=session)]


@router.post("", response_model=GroupPublic, status_code=status.HTTP_201_CREATED)
def create_group(
    body: GroupCreate, session: SessionDep, services: ServicesDep, principal: Operator
) -> GroupPublic:
    spec = groups.GroupSpec(
        name=body.name,
        kind=body.kind,
        selector=body.selector,
        members=tuple(body.members),
        description=body.description,
    )
    group = groups.create_group(
        session=session, spec=spec, actor=principal.name, now=services.clock()
    )
    return _public(session, group)


@router.get("/{name}", response_model=GroupPublic)
def show_group(name: str, session: SessionDep, _: Viewer) -> GroupPublic:
    return _public(session, groups.get_group(session=session, name=name))


@router.post("/{name}/members", response_model=GroupPublic)
def change_members(
    name: str,
    body: GroupMembersChange,
    session: SessionDep,
    services: ServicesDep,
    principal: Operator,
) -> GroupPublic:
    group = groups.change_members(
        session=session,
        name=name,
        add=body.add,
        remove=body.remove,
        actor=principal.name,
        now=services.clock(),
    )
    return _public(session, group)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(
    name: str, session: SessionDep, services: ServicesDep, principal: Operator
) -> Response:
    groups.delete_group(session=session, name=name, actor=principal.name, now=services.clock())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
