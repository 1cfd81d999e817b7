"""The fleet aggregates against a seeded fleet, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgefleet.server.db.models import Role
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import Server
from tests.server.api.fleet_seed import (
    EXPECTED_PROBLEMS,
    EXPECTED_STATES,
    SeededFleet,
    seed_fleet,
)
from tests.server.api.shared_server import BACKENDS, module_server


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, broker: MosquittoBroker
) -> Iterator[tuple[Server, SeededFleet]]:
    with module_server(request, broker, "fleet") as server:
        fleet = seed_fleet(
            server.client, server.headers(), server.services.sessions, server.wait_ingested
        )
        try:
            yield server, fleet
        finally:
            fleet.close()


def get(server: Server, path: str, role: Role = Role.VIEWER, **params: Any) -> Any:
    response = server.client.get(f"/api/v1{path}", headers=server.headers(role), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_summary_counts_states_and_problems(seeded: tuple[Server, SeededFleet]) -> None:
    server, _ = seeded
    summary = get(server, "/fleet/summary")
    assert summary == {
        "total": 10,
        "by_state": EXPECTED_STATES,
        "problems": EXPECTED_PROBLEMS,
        "devices_with_problems": 5,
    }
    for state, count in EXPECTED_STATES.items():
        assert get(server, "/devices", state=state)["total"] == count


def test_versions_count_active_models_of_devices_not_revoked(
    seeded: tuple[Server, SeededFleet],
) -> None:
    server, _ = seeded
    assert get(server, "/fleet/versions") == [
        {"model": "vibration", "version": 3, "devices": 4},
        {"model": "vibration", "version": 2, "devices": 4},
    ]


def test_device_list_puts_problems_first_most_urgent_first(
    seeded: tuple[Server, SeededFleet],
) -> None:
    server, fleet = seeded
    page = get(server, "/fleet/devices", limit=4)
    assert page["total"] == 10
    names = {v: k for k, v in fleet.ids.items()}
    assert [(names[d["id"]], d["problems"]) for d in page["items"]] == [
        ("a5", ["failed"]),
        ("b1", ["rolled_back"]),
        ("b2", ["offline"]),
        ("b3", ["offline"]),
    ]
    rest = get(server, "/fleet/devices", limit=10, offset=4)["items"]
    assert [names[d["id"]] for d in rest] == ["a2", "a1", "a3", "a4", "a6", "b4"]
    assert rest[1]["models"] == ["vibration:3"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"group": "site-b"}, ["b1", "b2", "b3", "b4"]),
        ({"tag": "site-a", "profile": "rpi4"}, ["a4"]),
        ({"state": "offline"}, ["b2", "b3"]),
        ({"group": "site-a", "problems_only": True}, ["a5", "a2"]),
        ({"search": "a"}, []),
    ],
)
def test_filters_select_like_the_device_list(
    seeded: tuple[Server, SeededFleet], params: dict[str, Any], expected: list[str]
) -> None:
    server, fleet = seeded
    query = dict(params)
    if "group" in query:
        query["group"] = fleet.groups[str(query["group"])]
    if "search" in query:
        query["search"] = f"{fleet.prefix}-{query['search']}6"
        expected = ["a6"]
    items = get(server, "/fleet/devices", **query)["items"]
    names = {v: k for k, v in fleet.ids.items()}
    assert [names[d["id"]] for d in items] == expected


def test_unknown_group_is_a_404(seeded: tuple[Server, SeededFleet]) -> None:
    server, _ = seeded
    response = server.client.get(
        "/api/v1/fleet/devices", params={"group": "nope"}, headers=server.headers(Role.VIEWER)
    )
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_presence_counts_reporting_and_registered_devices_per_bucket(
    seeded: tuple[Server, SeededFleet],
) -> None:
    server, _ = seeded
    until = time.time()
    series = get(server, "/fleet/presence", since=until - 3600, until=until, points=12)
    assert series["step"] == 300.0
    points = series["points"]
    assert len(points) == 12
    # Four devices sent five one-minute windows ending now; all ten are registered and
    # the revoked one no longer counts.
    assert points[-1]["reporting"] == 4
    assert points[-1]["registered"] == 9
    assert all(p["reporting"] == 0 for p in points[:-2])


def test_presence_refuses_a_reversed_or_huge_range(seeded: tuple[Server, SeededFleet]) -> None:
    server, _ = seeded
    for since, until in ((100.0, 50.0), (0.0, 400 * 86_400.0)):
        response = server.client.get(
            "/api/v1/fleet/presence",
            params={"since": since, "until": until},
            headers=server.headers(Role.VIEWER),
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid"


def test_facets_list_groups_profiles_and_tags(seeded: tuple[Server, SeededFleet]) -> None:
    server, fleet = seeded
    facets = get(server, "/fleet/facets")
    assert set(fleet.groups.values()) <= set(facets["groups"])
    assert facets["profiles"] == ["rpi4", "sim"]
    assert facets["tags"] == ["site-a", "site-b"]


def test_fleet_endpoints_need_a_token(seeded: tuple[Server, SeededFleet]) -> None:
    server, _ = seeded
    for path in ("summary", "versions", "presence", "devices", "facets"):
        assert server.client.get(f"/api/v1/fleet/{path}").status_code == 401
