"""Dashboard sessions on the real server: sign-in, the cookie, CSRF, roles, revocation."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgefleet.server import tokens
from edgefleet.server.db.models import Role
from edgefleet.server.web.secret import FILE_NAME
from edgefleet.server.web.session_cookie import COOKIE_NAME
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import Server, unique_id
from tests.server.api.shared_server import BACKENDS, module_server

GROUP = {"kind": "static", "members": []}


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request: pytest.FixtureRequest, broker: MosquittoBroker) -> Iterator[Server]:
    with module_server(request, broker, "dash") as server:
        yield server


@pytest.fixture
def server(shared: Server) -> Server:
    """The module's server with an empty cookie jar: each test signs in afresh."""
    shared.client.cookies.clear()
    return shared


def sign_in(server: Server, role: Role, next_page: str = "/ui/") -> Any:
    return server.client.post(
        "/ui/sign-in",
        data={"token": server.tokens[role], "next": next_page},
        follow_redirects=False,
    )


def csrf_of(client: TestClient) -> str:
    page = client.get("/ui/").text
    marker = '<meta name="csrf-token" content="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_sign_in_sets_a_strict_http_only_cookie_and_goes_to_next(server: Server) -> None:
    response = sign_in(server, Role.OPERATOR, "/ui/rollouts?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/rollouts?x=1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here; https requests get Secure
    assert server.tokens[Role.OPERATOR] not in cookie
    key = server.services.settings.data_dir / FILE_NAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_https_sign_in_marks_the_cookie_secure(server: Server) -> None:
    response = server.client.post(
        "https://testserver/ui/sign-in",
        data={"token": server.tokens[Role.VIEWER]},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize("token", ["", "eft_not-a-token"])
def test_bad_token_shows_the_reason_beside_the_field(server: Server, token: str) -> None:
    response = server.client.post("/ui/sign-in", data={"token": token}, follow_redirects=False)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert 'id="token-error"' in response.text
    assert ("missing bearer token" if not token else "unknown token") in response.text


def test_next_outside_the_dashboard_is_ignored(server: Server) -> None:
    for target in ("https://evil.example/ui/", "//evil.example/ui/", "/api/v1/devices"):
        assert sign_in(server, Role.VIEWER, target).headers["location"] == "/ui/"


def test_sign_in_posted_from_another_site_is_refused(server: Server) -> None:
    response = server.client.post(
        "/ui/sign-in",
        data={"token": server.tokens[Role.VIEWER]},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_pages_send_a_stranger_to_sign_in_with_next(server: Server) -> None:
    response = server.client.get("/ui/drift?model=m", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in?next=/ui/drift%3Fmodel%3Dm"
    assert server.client.get("/", follow_redirects=False).headers["location"] == "/ui/"


def test_cookie_reads_the_api_and_changes_need_the_csrf_token(server: Server) -> None:
    sign_in(server, Role.OPERATOR)
    client = server.client
    assert client.get("/api/v1/fleet/summary").status_code == 200
    missing = client.post("/api/v1/groups", json={"name": unique_id("g"), **GROUP})
    assert missing.status_code == 403
    assert missing.json()["error"] == "csrf_missing"
    wrong = client.post(
        "/api/v1/groups", json={"name": unique_id("g"), **GROUP}, headers={"X-CSRF-Token": "x" * 43}
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "csrf_mismatch"
    good = client.post(
        "/api/v1/groups",
        json={"name": unique_id("g"), **GROUP},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert good.status_code == 201, good.text


def test_bearer_calls_need_no_csrf_token(server: Server) -> None:
    response = server.client.post(
        "/api/v1/groups",
        json={"name": unique_id("g"), **GROUP},
        headers=server.headers(Role.OPERATOR),
    )
    assert response.status_code == 201, response.text


def test_viewer_session_sees_no_operator_buttons_and_is_refused(server: Server) -> None:
    sign_in(server, Role.VIEWER)
    page = server.client.get("/ui/").text
    assert 'name="role" content="viewer"' in page
    assert "save-group" not in page
    response = server.client.post(
        "/api/v1/groups",
        json={"name": unique_id("g"), **GROUP},
        headers={"X-CSRF-Token": csrf_of(server.client)},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_operator_page_renders_operator_buttons(server: Server) -> None:
    sign_in(server, Role.OPERATOR)
    response = server.client.get("/ui/")
    assert 'id="save-group"' in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_revoking_the_token_ends_its_sessions(server: Server) -> None:
    name = unique_id("op")
    with server.services.sessions() as session:
        _, secret = tokens.create_token(
            session=session,
            name=name,
            role=Role.OPERATOR,
            actor="test",
            now=server.services.clock(),
        )
        session.commit()
    server.client.post("/ui/sign-in", data={"token": secret}, follow_redirects=False)
    assert server.client.get("/api/v1/fleet/summary").status_code == 200
    with server.services.sessions() as session:
        tokens.revoke_token(session=session, name=name, actor="test", now=0.0)
        session.commit()
    response = server.client.get("/api/v1/fleet/summary")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert server.client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_session_ends_when_its_token_expires(server: Server) -> None:
    now = server.services.clock()
    with server.services.sessions() as session:
        _, secret = tokens.create_token(
            session=session,
            name=unique_id("brief"),
            role=Role.VIEWER,
            actor="test",
            now=now,
            expires_at=now + 1.0,
        )
        session.commit()
    response = server.client.post("/ui/sign-in", data={"token": secret}, follow_redirects=False)
    assert "max-age=1" in response.headers["set-cookie"].lower()
    assert server.client.get("/api/v1/fleet/summary").status_code == 200
    time.sleep(1.1)
    server.client.cookies.clear()
    server.client.cookies.set(COOKIE_NAME, response.cookies[COOKIE_NAME])
    expired = server.client.get("/api/v1/fleet/summary")
    assert expired.status_code == 401
    assert expired.json()["error"] == "session_expired"


def test_tampered_cookie_is_refused(server: Server) -> None:
    sign_in(server, Role.VIEWER)
    value = server.client.cookies[COOKIE_NAME]
    server.client.cookies.clear()
    server.client.cookies.set(COOKIE_NAME, value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    response = server.client.get("/api/v1/fleet/summary")
    assert response.status_code == 401
    assert "not valid" in response.json()["detail"]


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(server: Server) -> None:
    sign_in(server, Role.VIEWER)
    refused = server.client.post("/ui/sign-out", data={"csrf": "nope"}, follow_redirects=False)
    assert refused.status_code == 403
    csrf = csrf_of(server.client)
    response = server.client.post("/ui/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert COOKIE_NAME not in server.client.cookies
    assert server.client.get("/api/v1/fleet/summary").status_code == 401


def test_planned_pages_render_and_unknown_ones_are_404(server: Server) -> None:
    sign_in(server, Role.VIEWER)
    for page in ("devices", "models", "rollouts", "drift", "audit"):
        response = server.client.get(f"/ui/{page}")
        assert response.status_code == 200
        assert 'aria-current="page"' in response.text
    assert server.client.get("/ui/nope").status_code == 404
    assert server.client.get("/ui/static/app.css").status_code == 200
