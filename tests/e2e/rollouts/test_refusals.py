"""Bad rollout requests get a 4xx with a reason and change nothing (both database backends)."""

from __future__ import annotations

from typing import Any

from tests.e2e.rollouts.conftest import MODEL, FleetMaker
from tests.harness.models import TfliteModels

WAVES = [{"percent": 50}, {"percent": 100}]


def test_bad_rollout_requests_are_refused_with_a_reason(
    make_fleet: FleetMaker, tflite_models: TfliteModels
) -> None:
    fleet = make_fleet(2, agents=False)
    approved = fleet.register(tflite_models.float32)
    candidate = int(
        fleet.call(
            "POST",
            f"/models/{MODEL}/versions",
            expect=201,
            files={"file": ("m.tflite", tflite_models.int8, "application/octet-stream")},
            data={"profiles": "sim", "variant": "int8"},
        )["version"]
    )

    def create(**overrides: Any) -> tuple[int, str, str]:
        body = {"group": fleet.group, "model": MODEL, "version": approved, "policy": {}}
        response = fleet.api("POST", "/rollouts", json=body | overrides)
        answer = response.json()
        return response.status_code, answer.get("error", ""), str(answer.get("detail", ""))

    assert create(group="no-such-group")[0] == 404
    assert create(version=approved + 40)[0] == 404
    status, error, detail = create(version=candidate)
    assert (status, error) == (422, "version_not_approved")
    assert f"v{candidate} is candidate" in detail
    status, _, detail = create(policy={"waves": [{"percent": 10}, {"percent": 60}]})
    assert status == 422
    assert "waves[1] must be percent=100" in detail
    status, _, detail = create(policy={"waves": WAVES, "gates": {"max_p95_latency_ratio": -1}})
    assert status == 422
    assert "gates.max_p95_latency_ratio must be > 0, got -1" in detail
    assert fleet.call("GET", "/rollouts") == [], "a refused request left a rollout behind"

    rollout_id = fleet.start_rollout(approved, {"waves": WAVES})
    status, error, detail = create()
    assert (status, error) == (409, "overlapping_rollout")
    assert rollout_id in detail
    response = fleet.api("POST", f"/rollouts/{rollout_id}/approve")
    assert (response.status_code, response.json()["error"]) == (409, "not_awaiting_approval")
    response = fleet.api("POST", f"/rollouts/{rollout_id}/start")
    assert (response.status_code, response.json()["error"]) == (409, "wrong_rollout_state")
    assert [r["id"] for r in fleet.call("GET", "/rollouts")] == [rollout_id]
    assert fleet.status(rollout_id)["state"] == "running"

    fleet.call("POST", f"/rollouts/{rollout_id}/abort", json={"reason": "test over"})
    again = fleet.start_rollout(approved, {"waves": WAVES})
    assert fleet.status(again)["state"] == "running", "an aborted rollout still blocked the group"
