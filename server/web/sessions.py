"""Who a dashboard request is, from its session cookie: the I/O around :mod:`.session_cookie`."""

from __future__ import annotations

import threading

from fastapi import Request
from sqlalchemy.orm import Session

from edgefleet.server import tokens
from edgefleet.server.services import Services
from edgefleet.server.tokens import Principal
from edgefleet.server.web import secret
from edgefleet.server.web.session_cookie import (
    COOKIE_NAME,
    CSRF_HEADER,
    UNSAFE_METHODS,
    check_csrf,
    csrf_token,
    read_session,
)

_secret_lock = threading.Lock()


def session_secret(request: Request) -> bytes:
    """The signing key, read (or made) once per app on first use."""
    state = request.app.state
    with _secret_lock:
        key: bytes | None = getattr(state, "web_session_secret", None)
        if key is None:
            services: Services = state.services
            key = secret.load_or_create(services.settings.data_dir)
            state.web_session_secret = key
    return key


def has_cookie(request: Request) -> bool:
    return COOKIE_NAME in request.cookies


def cookie_principal(request: Request, session: Session, now: float) -> Principal:
    """The session's principal; a state change must also carry the session's CSRF token."""
    value = request.cookies.get(COOKIE_NAME, "")
    key = session_secret(request)
    claim = read_session(value, key, now=now)
    principal = tokens.authenticate_session(
        session=session, token_id=claim.token_id, name=claim.token_name, now=now
    )
    if request.method in UNSAFE_METHODS:
        check_csrf(value, request.headers.get(CSRF_HEADER), key)
    return principal


def page_csrf(request: Request) -> str:
    return csrf_token(request.cookies.get(COOKIE_NAME, ""), session_secret(request))
