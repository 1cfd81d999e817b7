"""Session cookie signing, CSRF tokens and redirect targets: pure, no server."""

from __future__ import annotations

import dataclasses

import pytest

from edgefleet.server.errors import AuthenticationError, PermissionDeniedError
from edgefleet.server.web.session_cookie import (
    HOME,
    SESSION_SECONDS,
    SessionClaim,
    check_csrf,
    csrf_token,
    read_session,
    safe_next,
    same_origin,
    session_expiry,
    sign_session,
)

KEY = b"k" * 32
CLAIM = SessionClaim(token_id=7, token_name="ops-alice", expires_at=2_000)


def test_a_signed_cookie_reads_back_until_it_expires() -> None:
    value = sign_session(CLAIM, KEY)
    assert read_session(value, KEY, now=1_999.0) == CLAIM
    with pytest.raises(AuthenticationError) as expired:
        read_session(value, KEY, now=2_000.0)
    assert expired.value.reason == "session_expired"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v.replace(".", ".A", 1),
        lambda v: "A" + v,
        lambda v: v.split(".")[0],
        lambda v: "",
        lambda v: "!!!.???",
        lambda v: sign_session(CLAIM, b"x" * 32),
    ],
)
def test_anything_but_our_signature_is_refused(mangle: object) -> None:
    value = mangle(sign_session(CLAIM, KEY))  # type: ignore[operator]
    with pytest.raises(AuthenticationError, match="not valid"):
        read_session(value, KEY, now=0.0)


def test_a_payload_signed_with_the_right_key_but_the_wrong_shape_is_refused() -> None:
    odd = SessionClaim(token_id=-1, token_name="x", expires_at=5)
    with pytest.raises(AuthenticationError):
        read_session(sign_session(odd, KEY), KEY, now=0.0)


def test_cookie_carries_no_secret_and_extends_the_expiry_only_with_the_session() -> None:
    assert session_expiry(100.0, None) == 100 + SESSION_SECONDS
    assert session_expiry(100.0, 500.0) == 500


def test_csrf_token_belongs_to_one_session() -> None:
    mine, other = (
        sign_session(CLAIM, KEY),
        sign_session(dataclasses.replace(CLAIM, token_id=8), KEY),
    )
    check_csrf(mine, csrf_token(mine, KEY), KEY)
    with pytest.raises(PermissionDeniedError) as missing:
        check_csrf(mine, None, KEY)
    assert missing.value.reason == "csrf_missing"
    with pytest.raises(PermissionDeniedError) as wrong:
        check_csrf(mine, csrf_token(other, KEY), KEY)
    assert wrong.value.reason == "csrf_mismatch"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, HOME),
        ("/ui/devices?state=offline", "/ui/devices?state=offline"),
        ("/api/v1/devices", HOME),
        ("https://evil.example/ui/", HOME),
        ("//evil.example/ui/", HOME),
        ("/ui/\\evil.example", HOME),
        ("javascript:alert(1)", HOME),
    ],
)
def test_next_stays_on_the_dashboard(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_same_origin_accepts_no_origin_and_our_own_host_over_either_scheme() -> None:
    assert same_origin(None, "h:8080")
    assert same_origin("http://h:8080", "h:8080")
    assert same_origin("https://h:8080", "h:8080")
    assert not same_origin("http://evil:8080", "h:8080")
    assert not same_origin("http://h:8080", None)
