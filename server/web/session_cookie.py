"""The dashboard's session cookie and CSRF token: signing and checking, no I/O.

The cookie names an API token (its id and name) and an expiry, signed with
HMAC-SHA256 under a server secret. It never carries the token's secret, so a
stolen cookie dies with its expiry or the token's revocation; the token itself
is looked up again on every request (see :mod:`edgefleet.server.api.deps`).
The CSRF token is an HMAC of the cookie value, so it is bound to one session
and needs no server-side storage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgefleet.server.errors import AuthenticationError, PermissionDeniedError

COOKIE_NAME = "edgefleet_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOME = "/ui/"
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class SessionClaim:
    token_id: int
    token_name: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, data: str) -> bytes:
    return hmac.new(secret, f"{purpose}:{data}".encode(), hashlib.sha256).digest()


def session_expiry(now: float, token_expires_at: float | None) -> int:
    """A session never outlives its token."""
    end = now + SESSION_SECONDS
    return int(end if token_expires_at is None else min(end, token_expires_at))


def sign_session(claim: SessionClaim, secret: bytes) -> str:
    payload = _b64(f"{_VERSION}:{claim.token_id}:{claim.expires_at}:{claim.token_name}".encode())
    return f"{payload}.{_b64(_mac(secret, 'session', payload))}"


def read_session(value: str, secret: bytes, *, now: float) -> SessionClaim:
    """The claim in a cookie that this server signed and that has not expired."""
    payload, _, mac = value.partition(".")
    try:
        good = hmac.compare_digest(_unb64(mac), _mac(secret, "session", payload))
        fields = _unb64(payload).decode("utf-8").split(":", 3) if good else []
    except (binascii.Error, UnicodeDecodeError, ValueError):
        fields = []
    if len(fields) != 4 or fields[0] != _VERSION or not fields[1].isdigit():
        raise AuthenticationError("session cookie is not valid; sign in again")
    try:
        claim = SessionClaim(
            token_id=int(fields[1]), token_name=fields[3], expires_at=int(fields[2])
        )
    except ValueError as err:
        raise AuthenticationError("session cookie is not valid; sign in again") from err
    if now >= claim.expires_at:
        raise AuthenticationError("session expired; sign in again", reason="session_expired")
    return claim


def csrf_token(cookie_value: str, secret: bytes) -> str:
    return _b64(_mac(secret, "csrf", cookie_value))


def check_csrf(cookie_value: str, sent: str | None, secret: bytes) -> None:
    """Refuse a state change made with the cookie but without this session's CSRF token."""
    if not sent:
        raise PermissionDeniedError(
            f"missing {CSRF_HEADER} header: a signed-in page sends it with every change",
            reason="csrf_missing",
        )
    if not hmac.compare_digest(sent.encode(), csrf_token(cookie_value, secret).encode()):
        raise PermissionDeniedError(
            f"{CSRF_HEADER} does not belong to this session; reload the page",
            reason="csrf_mismatch",
        )


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: only a dashboard path on this server (no open redirect)."""
    if not value:
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(HOME) or "\\" in value:
        return HOME
    return value


def same_origin(origin: str | None, host: str | None) -> bool:
    """A form posted from another site (login CSRF) carries a foreign ``Origin``.

    Compared with the ``Host`` header, not the scheme: behind a TLS-terminating
    proxy the server sees http while the browser says https. No ``Origin``
    (an old browser, a script) is let through; SameSite=Strict still holds.
    """
    if origin is None:
        return True
    return host is not None and urlsplit(origin).netloc == host
