"""API bearer tokens and roles.

Tokens are 32 random bytes shown once at creation; the database keeps their
SHA-256 only (a high-entropy secret needs no slow hash), so a leaked database
does not leak working tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.db.models import ApiToken, Role
from edgefleet.server.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from edgefleet.shared.topics import DEVICE_ID_PATTERN

TOKEN_PREFIX = "eft_"  # noqa: S105 - a marker that makes leaked tokens greppable, not a secret
_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
_NAME = DEVICE_ID_PATTERN


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the audit log's actor) and its role."""

    name: str
    role: Role

    def require(self, role: Role) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise PermissionDeniedError(
                f"token {self.name!r} has role {self.role.value!r}; this needs {role.value!r}"
            )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    *,
    session: Session,
    name: str,
    role: Role,
    actor: str,
    now: float,
    expires_at: float | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token (and its audit record) and return it with its secret, not kept."""
    if re.fullmatch(_NAME, name) is None:
        raise InvalidInputError(f"token name {name[:80]!r} must match {_NAME}")
    if expires_at is not None and expires_at <= now:
        raise InvalidInputError("token would expire before it is created")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ConflictError(f"a token named {name!r} exists; revoke it or pick another name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        role=Role(role).value,
        token_hash=_digest(secret),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="token.create",
        target_type="token",
        target_id=name,
        now=now,
        after={"name": name, "role": token.role},
    )
    return token, secret


def _usable(token: ApiToken, now: float) -> Principal:
    if token.revoked_at is not None:
        raise AuthenticationError(f"token {token.name!r} was revoked")
    if token.expires_at is not None and now >= token.expires_at:
        raise AuthenticationError(f"token {token.name!r} expired")
    return Principal(name=token.name, role=Role(token.role))


USED_RESOLUTION_SECONDS = 60.0


def authenticate_token(*, session: Session, secret: str | None, now: float) -> ApiToken:
    """The live token behind ``secret`` (marked used): what a dashboard session is made from."""
    if not secret:
        raise AuthenticationError("missing bearer token")
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None:
        raise AuthenticationError("unknown token")
    _usable(token, now)
    _mark_used(token, now)
    return token


def authenticate(*, session: Session, secret: str | None, now: float) -> Principal:
    return _usable(authenticate_token(session=session, secret=secret, now=now), now)


def authenticate_session(*, session: Session, token_id: int, name: str, now: float) -> Principal:
    """The principal of a dashboard session, checked on every request so that revoking
    its token ends it at once."""
    token = session.get(ApiToken, token_id)
    if token is None or token.name != name:
        raise AuthenticationError(f"the session's token {name!r} no longer exists")
    principal = _usable(token, now)
    _mark_used(token, now)
    return principal


def _mark_used(token: ApiToken, now: float) -> None:
    """At most one write a minute per token: a read-only call (or a dashboard's live
    stream, re-checked every poll) that wrote the token row each time took SQLite's
    write lock, and failed while ingest or a rollout tick held it."""
    if token.last_used_at is None or now - token.last_used_at >= USED_RESOLUTION_SECONDS:
        token.last_used_at = now


def revoke_token(*, session: Session, name: str, actor: str, now: float) -> tuple[ApiToken, bool]:
    """Revoke ``name``; idempotent. Also says whether this call did it."""
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise NotFoundError(f"no token named {name[:80]!r}")
    if token.revoked_at is not None:
        return token, False
    token.revoked_at = now
    audit.record(
        session=session,
        actor=actor,
        action="token.revoke",
        target_type="token",
        target_id=name,
        now=now,
        after={"revoked_at": now},
    )
    return token, True
