"""Request-scoped dependencies: the session, the clock, and who is calling.

A caller is a bearer token (API, CLI) or a dashboard session cookie; the
cookie path also enforces CSRF on state changes (:mod:`edgefleet.server.web.sessions`).
A bearer header wins when both are sent: a cross-site page cannot set it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from edgefleet.server import tokens
from edgefleet.server.db.models import Role
from edgefleet.server.services import Services
from edgefleet.server.tokens import Principal
from edgefleet.server.web import sessions as web_sessions

_bearer = HTTPBearer(auto_error=False, description="an API token from `edgefleet tokens create`")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One session per request; services commit, anything left over is rolled back."""
    with services.sessions() as session:
        try:
            yield session
        finally:
            session.rollback()


SessionDep = Annotated[Session, Depends(get_session)]


def _identify(
    request: Request,
    services: Services,
    session: Session,
    credentials: HTTPAuthorizationCredentials | None,
) -> Principal:
    now = services.clock()
    if credentials is None and web_sessions.has_cookie(request):
        principal = web_sessions.cookie_principal(request, session, now)
    else:
        principal = tokens.authenticate(
            session=session,
            secret=None if credentials is None else credentials.credentials,
            now=now,
        )
    session.commit()
    return principal


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_principal(
    request: Request, services: ServicesDep, session: SessionDep, credentials: Credentials
) -> Principal:
    return _identify(request, services, session, credentials)


def check_viewer(request: Request, services: ServicesDep, credentials: Credentials) -> Principal:
    """For long responses, which call it again as they go: checks the caller in a
    session of its own, closed at once, so a stream holds no database connection."""
    with services.sessions() as session:
        principal = _identify(request, services, session, credentials)
    principal.require(Role.VIEWER)
    return principal


def _role(role: Role) -> object:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(role)
        return principal

    return Depends(check)


Viewer = Annotated[Principal, _role(Role.VIEWER)]
Operator = Annotated[Principal, _role(Role.OPERATOR)]
Admin = Annotated[Principal, _role(Role.ADMIN)]
StreamViewer = Annotated[Principal, Depends(check_viewer)]
