"""A version whose self-test fails on the devices: wave 1 trips the error threshold and the
rollout aborts, rolling the touched devices back to the bytes they ran before."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from sqlalchemy import select

from edgefleet.server.db.models import DesiredState, DeviceEvent
from edgefleet.server.tflite_model import self_test_vectors
from edgefleet.shared.manifest import SelfTestVector
from tests.e2e.rollouts.conftest import Fleet, FleetMaker
from tests.harness.models import TfliteModels

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def desired_revisions(fleet: Fleet) -> dict[str, int]:
    with fleet.server.services.sessions() as session:
        return {s.device_id: s.revision for s in session.scalars(select(DesiredState))}


def event_devices(fleet: Fleet, version: int) -> set[str]:
    with fleet.server.services.sessions() as session:
        return set(
            session.scalars(select(DeviceEvent.device_id).where(DeviceEvent.version == version))
        )


def test_failing_self_test_aborts_in_wave_one_and_rolls_touched_devices_back(
    make_fleet: FleetMaker, tflite_models: TfliteModels
) -> None:
    fleet = make_fleet(6)
    good = fleet.register(tflite_models.float32)
    fleet.install(good)
    honest = self_test_vectors(tflite_models.int8)
    wrong = dataclasses.replace(
        honest,
        vectors=tuple(
            SelfTestVector(input=v.input, expected=tuple(x + 0.5 for x in v.expected))
            for v in honest.vectors
        ),
    )
    bad = fleet.register(tflite_models.int8, self_test=wrong)
    before = desired_revisions(fleet)

    policy = {
        "waves": [
            {"count": 2, "error_threshold": 0, "soak_seconds": 1},
            {"percent": 60, "soak_seconds": 1},
            {"percent": 100, "soak_seconds": 1},
        ],
        "breach_action": "abort",
        "abort_mode": "rollback",
    }
    rollout_id = fleet.start_rollout(bad, policy)
    status = fleet.wait_rollout(rollout_id, "aborted", "completed", "paused")

    assert status["state"] == "aborted", status
    assert "error_share" in status["reason"]
    assert [w["state"] for w in status["waves"]] == ["breached", "pending", "pending"]
    rollback = status["rollback_version"]
    assert rollback == bad + 1
    devices = fleet.devices(rollout_id)
    touched = [d for d in devices if d["wave"] == 0]
    untouched = [d for d in devices if d["wave"] > 0]
    assert len(touched) == 2
    assert {d["state"] for d in touched} == {"reverted"}
    assert {d["state"] for d in untouched} == {"skipped"}
    assert all(d["notified_at"] is None for d in untouched)

    touched_agents = [fleet.agent(d["device_id"]) for d in touched]
    fleet.wait_serving(rollback, touched_agents)
    good_sha = hashlib.sha256(tflite_models.float32).hexdigest()
    assert {agent.active() for agent in touched_agents} == {(rollback, good_sha)}

    after = desired_revisions(fleet)
    for device in untouched:
        device_id = device["device_id"]
        assert after[device_id] == before[device_id], f"{device_id} was sent a new desired"
        assert fleet.agent(device_id).active() == (good, good_sha)
    assert event_devices(fleet, bad) <= {d["device_id"] for d in touched}
    failed = event_devices(fleet, bad)
    assert failed, "no device reported the failing self-test"
