"""Drift read-out through the REST API on both databases: status, series (pooled), windows.

Windows are written as ingest writes them (``drift_windows`` rows with their
counts), for a model version registered with a real baseline; the pooled
group and fleet drift is computed from those counts by the real statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgefleet.server.db.models import Role
from edgefleet.server.drift.series import Scope, drift_series
from edgefleet.server.errors import InvalidInputError
from edgefleet.shared.manifest import Baseline
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_rollouts_api import fleet
from tests.server.api.test_samples_api import get, refused, registered
from tests.server.edge_data import add_window, draw

HOUR = 3600.0


def window(
    server: Server,
    model: str,
    device: str,
    end: float,
    baseline: Baseline,
    rng: np.random.Generator,
    *,
    tilt: float = 0.0,
    flagged: bool = False,
) -> int:
    assert baseline.output is not None
    shares = np.asarray(baseline.output.probabilities)
    with server.services.sessions() as session:
        return add_window(
            session,
            model=model,
            version=1,
            device=device,
            end=end,
            count=80,
            features=draw(baseline, 80, rng, tilt),
            output=rng.multinomial(80, shares / shares.sum()).tolist(),
            score=3.0 if flagged else 0.4,
            flagged=flagged,
            confidence_change=-0.2 if flagged else 0.0,
        ).id


def series(server: Server, **params: Any) -> Any:
    response = get(server, "/drift/series", **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_status_series_and_windows(server: Server, tflite_models: TfliteModels) -> None:
    found = registered(server, tflite_models)
    model, baseline = found.model, found.baseline
    group, members = fleet(server, 4)
    outsider = unique_id("out")
    provisioned = server.client.post(
        "/api/v1/devices", headers=server.headers(), json={"id": outsider, "profile": "sim"}
    )
    assert provisioned.status_code == 201, provisioned.text
    rng = np.random.default_rng(5)
    now = server.services.clock()
    since = now - 2 * HOUR
    early = [window(server, model, d, since + 600, baseline, rng) for d in [*members, outsider]]
    late = [
        window(server, model, d, since + HOUR + 600, baseline, rng, tilt=0.3, flagged=True)
        for d in members[:3]
    ]
    late.append(window(server, model, members[3], since + HOUR + 900, baseline, rng))
    late.append(window(server, model, outsider, since + HOUR + 900, baseline, rng))

    status = get(server, "/drift/status", model=model).json()
    assert status["flagged_devices"] == 3
    assert [d["device"] for d in status["devices"][:3]] == members[:3]
    assert {d["device"] for d in status["devices"][3:]} == {members[3], outsider}
    assert all(d["window_end"] >= since + HOUR for d in status["devices"])
    assert status["devices"][0]["score"] == 3.0

    whole = series(server, model=model, since=since, until=now, bucket=HOUR)
    assert (whole["scope"], whole["name"]) == ("fleet", None)
    first, second = whole["buckets"]
    assert (first["windows"], first["devices"], first["flagged_devices"]) == (5, 5, 0)
    assert (second["windows"], second["flagged_windows"], second["flagged_devices"]) == (5, 3, 3)
    assert second["max_score"] == 3.0
    assert second["mean_confidence_change"] == pytest.approx(-0.12)
    (quiet,) = first["pooled"]
    (moved,) = second["pooled"]
    assert (quiet["version"], quiet["windows"], quiet["count"]) == (1, 5, 400)
    assert not quiet["flagged"]
    assert moved["flagged"]
    assert moved["score"] > quiet["score"]
    assert [f["name"] for f in moved["features"]] == ["f0", "f1", "f2", "f3"]

    grouped = series(
        server, model=model, scope="group", name=group, since=since, until=now, bucket=HOUR
    )
    assert [b["windows"] for b in grouped["buckets"]] == [4, 4]
    assert [b["pooled"][0]["devices"] for b in grouped["buckets"]] == [4, 4]
    single = series(
        server, model=model, scope="device", name=outsider, since=since, until=now, bucket=HOUR
    )
    assert [(b["windows"], b["pooled"]) for b in single["buckets"]] == [(1, []), (1, [])]
    recent = series(server, model=model)
    assert len(recent["buckets"]) == 24
    assert sum(b["windows"] for b in recent["buckets"]) == 10

    page = get(server, "/drift/windows", model=model, limit=4).json()
    assert [w["id"] for w in page["items"]] == early[:4]
    assert page["next_after_id"] == early[3]
    rest = get(server, "/drift/windows", model=model, after_id=early[3]).json()
    assert [w["id"] for w in rest["items"]] == [early[4], *late]
    assert rest["next_after_id"] is None
    flagged = get(server, "/drift/windows", model=model, flagged="true").json()
    assert [w["id"] for w in flagged["items"]] == late[:3]
    mine = get(server, "/drift/windows", model=model, device=outsider).json()["items"]
    assert [w["id"] for w in mine] == [early[4], late[4]]
    assert set(mine[0]["counts"]["features"]) == {"f0", "f1", "f2", "f3"}
    assert mine[0]["device_id"] == outsider


def test_bad_requests_say_why(server: Server, tflite_models: TfliteModels) -> None:
    model = registered(server, tflite_models).model
    now = server.services.clock()
    refused(get(server, "/drift/status", model="nope"), 404, "no model")
    refused(get(server, "/drift/series", model="nope"), 404, "no model")
    refused(get(server, "/drift/windows", model="nope"), 404, "no model")
    refused(get(server, "/drift/series", model=model, scope="group"), 422, "needs a name")
    refused(get(server, "/drift/series", model=model, scope="group", name="nope"), 404, "group")
    refused(get(server, "/drift/series", model=model, scope="device", name="nope"), 404, "device")
    refused(get(server, "/drift/series", model=model, name="x"), 422, "takes no name")
    refused(get(server, "/drift/series", model=model, scope="planet"), 422, "scope")
    refused(get(server, "/drift/series", model=model, bucket=1), 422, "at most 2000")
    refused(get(server, "/drift/series", model=model, bucket=0), 422, "bucket")
    refused(get(server, "/drift/series", model=model, since=now, until=now), 422, "since < until")
    with server.services.sessions() as session:
        span: dict[str, Any] = {"name": None, "since": now - 60, "until": now, "bucket_seconds": 60}
        assert drift_series(session, model=model, scope="fleet", **span).scope is Scope.FLEET
        with pytest.raises(InvalidInputError, match="want device, group or fleet"):
            drift_series(session, model=model, scope="planet", **span)
    empty = get(server, "/drift/status", model=model).json()
    assert empty == {"model": model, "devices": [], "flagged_devices": 0}
    assert server.client.get("/api/v1/drift/status", params={"model": model}).status_code == 401
    assert get(server, "/drift/status", Role.VIEWER, model=model).status_code == 200
