"""The live-update stream over real HTTP: notices, no database connection held, revocation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
from sqlalchemy.pool import Pool, QueuePool

from edgefleet.server import tokens
from edgefleet.server.db.models import Role
from edgefleet.shared.messages import DeviceStatus
from edgefleet.shared.topics import Channel
from tests.browser.conftest import LiveServer
from tests.server.api.fleet_seed import send, state


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, object]]]:
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: ") :])


def pool_empties(pool: Pool, seconds: float = 2.0) -> bool:
    """Between polls an open stream holds no pooled connection: the pool drains to zero."""
    assert isinstance(pool, QueuePool)
    deadline = time.monotonic() + seconds
    while pool.checkedout():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_hello_then_a_change_notice_when_a_device_goes_offline(live_server: LiveServer) -> None:
    fleet = live_server.fleet
    with live_server.http.stream(
        "GET", "/api/v1/events/stream", headers=live_server.headers(Role.VIEWER)
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        name, data = next(stream)
        assert name == "hello"
        assert "devices" in data["topics"]  # type: ignore[operator]
        assert pool_empties(live_server.services.engine.pool)
        send(fleet.clients["a3"], fleet.ids["a3"], Channel.STATE, state(DeviceStatus.OFFLINE, 3))
        try:
            name, data = next(stream)
            assert name == "change"
            assert "devices" in data["topics"]  # type: ignore[operator]
        finally:
            send(fleet.clients["a3"], fleet.ids["a3"], Channel.STATE, state(DeviceStatus.ONLINE, 3))


def test_revoking_the_token_ends_its_stream(live_server: LiveServer) -> None:
    name, secret = live_server.new_token(Role.VIEWER)
    with live_server.http.stream(
        "GET", "/api/v1/events/stream", headers={"Authorization": f"Bearer {secret}"}
    ) as response:
        stream = events(response)
        assert next(stream)[0] == "hello"
        with live_server.services.sessions() as session:
            tokens.revoke_token(session=session, name=name, actor="test", now=0.0)
            session.commit()
        assert next(stream) == ("signed-out", {"reason": "unauthenticated"})
        assert list(stream) == []


def test_the_stream_needs_a_viewer(live_server: LiveServer) -> None:
    assert live_server.http.get("/api/v1/events/stream").status_code == 401
