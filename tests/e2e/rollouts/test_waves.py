"""A staged rollout over twenty real agents: waves in order, all healthy on the new version."""

from __future__ import annotations

import pytest

from tests.e2e.rollouts.conftest import NO_GATES, FleetMaker
from tests.harness.models import TfliteModels

SOAK = 1.5


def test_two_waves_over_three_devices_complete(
    make_fleet: FleetMaker, tflite_models: TfliteModels
) -> None:
    """The quick one, on both database backends: the tick, the events and the desired
    revisions through a real agent's update, wave after wave."""
    fleet = make_fleet(3)
    first = fleet.register(tflite_models.float32)
    policy = {"waves": [{"count": 1, "soak_seconds": 0}, {"percent": 100, "soak_seconds": 0}]}
    rollout_id = fleet.start_rollout(first, policy | {"gates": NO_GATES})
    status = fleet.wait_rollout(rollout_id, "completed", "paused", "aborted")

    assert status["state"] == "completed", status
    assert [(w["devices"], w["by_state"]) for w in status["waves"]] == [
        (1, {"healthy": 1}),
        (2, {"healthy": 2}),
    ]
    assert status["waves"][0]["finished_at"] <= status["waves"][1]["started_at"]
    fleet.wait_serving(first)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_four_waves_over_twenty_devices_complete_in_order(
    make_fleet: FleetMaker, tflite_models: TfliteModels
) -> None:
    fleet = make_fleet(20)
    first = fleet.register(tflite_models.float32)
    fleet.install(first)
    second = fleet.register(tflite_models.int8)

    waves = [{"count": 1}, {"percent": 25}, {"percent": 50}, {"percent": 100}]
    policy = {"waves": [w | {"soak_seconds": SOAK} for w in waves], "gates": NO_GATES}
    rollout_id = fleet.start_rollout(second, policy)
    status = fleet.wait_rollout(rollout_id, "completed", "paused", "aborted", timeout=60)

    assert status["state"] == "completed", status
    assert [w["devices"] for w in status["waves"]] == [1, 4, 5, 10]
    for earlier, later in zip(status["waves"], status["waves"][1:], strict=False):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)
    for wave in status["waves"]:
        assert wave["state"] == "done"
        assert wave["by_state"] == {"healthy": wave["devices"]}
        assert wave["finished_at"] - wave["soak_started_at"] >= SOAK
    devices = fleet.devices(rollout_id)
    assert {d["state"] for d in devices} == {"healthy"}
    assert {d["previous_version"] for d in devices} == {first}
    fleet.wait_serving(second)

    audit = fleet.call("GET", "/audit", params={"target_type": "rollout", "target_id": rollout_id})
    assert sorted(a["action"] for a in audit) == [
        "rollout.complete",
        "rollout.create",
        "rollout.start",
    ]
