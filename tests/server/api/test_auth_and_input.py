"""Every route needs a token of the right role; bad input is a 4xx with a reason."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from edgefleet.server.db.models import AuditRecord, Device, Role
from tests.server.api.conftest import Server, unique_id


def api_routes(server: Server) -> list[tuple[str, str]]:
    """Every (method, path) the API documents, with path parameters filled in."""
    paths = server.client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, operations in sorted(paths.items())
        if path.startswith("/api/")
        for method in sorted(operations)
    ]


def needed_role(method: str, path: str) -> Role:
    if path.startswith("/api/v1/tokens"):
        return Role.ADMIN
    return Role.VIEWER if method == "GET" else Role.OPERATOR


def test_there_are_routes_to_check(server: Server) -> None:
    assert len(api_routes(server)) >= 20


def test_every_route_refuses_a_missing_or_unknown_token(server: Server) -> None:
    for method, path in api_routes(server):
        for headers in ({}, {"Authorization": "Bearer eft_not-a-real-token"}):
            response = server.client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"] == "unauthenticated"
            assert response.headers["www-authenticate"] == "Bearer"


def test_every_route_refuses_a_role_below_its_own(server: Server) -> None:
    order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    for method, path in api_routes(server):
        needed = needed_role(method, path)
        for role in order[: order.index(needed)]:
            response = server.client.request(method, path, headers=server.headers(role))
            assert response.status_code == 403, (method, path, role, response.text)
            assert response.json()["error"] == "forbidden"
        allowed = server.client.request(method, path, headers=server.headers(needed))
        assert allowed.status_code not in (401, 403), (method, path, allowed.text)


def test_revoked_token_stops_working(server: Server) -> None:
    created = server.client.post(
        "/api/v1/tokens", headers=server.headers(), json={"name": "short-lived", "role": "viewer"}
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    auth = {"Authorization": f"Bearer {secret}"}
    assert server.client.get("/api/v1/devices", headers=auth).status_code == 200
    server.client.post("/api/v1/tokens/short-lived/revoke", headers=server.headers())
    assert server.client.get("/api/v1/devices", headers=auth).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"id": "x" * 10_000, "profile": "sim"}, 422, "invalid_request"),
        ({"id": "a'; DROP TABLE devices; --", "profile": "sim"}, 422, "invalid_device_id"),
        ({"id": "nul\x00byte", "profile": "sim"}, 422, "invalid_device_id"),
        ({"id": "ok-device", "profile": "toaster"}, 422, "unknown_profile"),
        ({"id": "ok-device", "profile": "sim", "tags": ["Bad Tag"]}, 422, "invalid_tag"),
        ({"id": "ok-device", "profile": "sim", "labels": {"id": "x"}}, 422, "invalid_label"),
        ({"id": "ok-device", "profile": "sim", "extra": 1}, 422, "invalid_request"),
        ({"profile": "sim"}, 422, "invalid_request"),
    ],
    ids=[
        "10k-id",
        "sql-looking-id",
        "nul-byte",
        "unknown-profile",
        "bad-tag",
        "reserved-label",
        "unknown-field",
        "missing-id",
    ],
)
def test_bad_device_input_is_refused_and_nothing_is_written(
    server: Server, body: dict[str, object], status: int, reason: str
) -> None:
    response = server.client.post("/api/v1/devices", headers=server.headers(), json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason
    with server.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 0
        changes = (
            select(func.count()).select_from(AuditRecord).where(AuditRecord.actor != "test-setup")
        )
        assert session.scalar(changes) == 0


def test_malformed_json_is_a_422(server: Server) -> None:
    response = server.client.post(
        "/api/v1/devices",
        headers={**server.headers(), "Content-Type": "application/json"},
        content=b'{"id": "x"',
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


def test_duplicate_provisioning_is_a_conflict_and_keeps_the_first(server: Server) -> None:
    device_id = unique_id("cam")
    body = {"id": device_id, "profile": "sim"}
    assert (
        server.client.post("/api/v1/devices", headers=server.headers(), json=body).status_code
        == 201
    )
    again = server.client.post(
        "/api/v1/devices", headers=server.headers(), json={**body, "tags": ["x"]}
    )
    assert again.status_code == 409
    assert (
        server.client.get(f"/api/v1/devices/{device_id}", headers=server.headers()).json()["tags"]
        == []
    )


def test_every_change_is_in_the_audit_log(server: Server) -> None:
    device_id = unique_id("cam")
    ops = server.headers(Role.OPERATOR)
    client = server.client
    assert (
        client.post(
            "/api/v1/devices", headers=ops, json={"id": device_id, "profile": "sim"}
        ).status_code
        == 201
    )
    assert (
        client.patch(
            f"/api/v1/devices/{device_id}", headers=ops, json={"tags": ["lab"]}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/v1/groups",
            headers=ops,
            json={"name": "labs", "kind": "selector", "selector": "tag:lab"},
        ).status_code
        == 201
    )
    assert client.post(f"/api/v1/devices/{device_id}/credentials", headers=ops).status_code == 200
    assert client.post(f"/api/v1/devices/{device_id}/revoke", headers=ops).status_code == 200
    assert client.delete("/api/v1/groups/labs", headers=ops).status_code == 204
    records = client.get(
        "/api/v1/audit", params={"actor": "t-operator"}, headers=server.headers(Role.VIEWER)
    ).json()
    assert [r["action"] for r in reversed(records)] == [
        "device.provision",
        "device.update",
        "group.create",
        "device.rotate_credentials",
        "device.revoke",
        "group.delete",
    ]
    assert all(r["actor"] == "t-operator" for r in records)
    update = next(r for r in records if r["action"] == "device.update")
    assert (update["before"]["tags"], update["after"]["tags"]) == ([], ["lab"])
    assert "password" not in str(records)


def test_group_selector_sees_live_tags(server: Server) -> None:
    first, second = unique_id("cam"), unique_id("cam")
    for device_id, site in ((first, "berlin"), (second, "paris")):
        server.client.post(
            "/api/v1/devices",
            headers=server.headers(),
            json={"id": device_id, "profile": "sim", "labels": {"site": site}},
        )
    created = server.client.post(
        "/api/v1/groups",
        headers=server.headers(),
        json={"name": "berlin", "kind": "selector", "selector": "site = berlin and profile=sim"},
    )
    assert created.json()["selector"] == "site=berlin and profile=sim"
    assert created.json()["members"] == [first]
    server.client.patch(
        f"/api/v1/devices/{second}", headers=server.headers(), json={"labels": {"site": "berlin"}}
    )
    shown = server.client.get("/api/v1/groups/berlin", headers=server.headers()).json()
    assert shown["members"] == sorted([first, second])
    bad = server.client.post(
        "/api/v1/groups",
        headers=server.headers(),
        json={"name": "broken", "kind": "selector", "selector": "site = "},
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "bad_selector"


def test_metrics_endpoint_exposes_ingest_and_api_counters(server: Server) -> None:
    server.client.get("/api/v1/devices", headers=server.headers())
    text = server.client.get("/metrics").text
    assert "edgefleet_api_request_seconds_count" in text
    assert 'route="/api/v1/devices"' in text
    assert "edgefleet_ingest_batch_messages" in text
