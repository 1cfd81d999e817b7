"""A version many times slower than the one it replaces trips the p95 latency gate in wave 1."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from tests.e2e.rollouts.conftest import PROBATION, Fleet, FleetMaker
from tests.harness.models import TfliteModels

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

TOLERANT = dataclasses.replace(PROBATION, max_latency_ratio=1000.0)
"""The agents' own probation looks away (it would roll a 3x slower model back by itself),
so what stops the rollout is the server's gate."""


def test_three_times_slower_version_trips_the_latency_gate_and_pauses(
    make_fleet: FleetMaker, tflite_models: TfliteModels, slow_model: bytes
) -> None:
    fleet: Fleet = make_fleet(4, update=TOLERANT)
    fast = fleet.register(tflite_models.float32)
    fleet.install(fast)
    for agent in fleet.agents:
        agent.serve()
    time.sleep(2.5)  # full telemetry windows of the fast version before the wave starts
    slow = fleet.register(slow_model)

    policy = {
        "waves": [{"count": 2, "soak_seconds": 60}, {"percent": 100}],
        "gates": {
            "max_p95_latency_ratio": 2.0,
            "max_output_psi": None,
            "min_inferences": 100,
        },
        "breach_action": "pause",
    }
    rollout_id = fleet.start_rollout(slow, policy)
    status = fleet.wait_rollout(rollout_id, "paused", "aborted", "completed")

    assert status["state"] == "paused", status
    found = re.search(r"p95_latency_ratio (\S+) > limit 2\b", status["reason"])
    assert found, status["reason"]
    (gate,) = [g for g in status["waves"][0]["gates"] if g["name"] == "p95_latency_ratio"]
    assert gate["status"] == "fail"
    assert gate["value"] >= 3.0, gate
    assert float(found.group(1)) == pytest.approx(gate["value"], rel=1e-3)
    assert status["waves"][0]["state"] == "breached"
    assert status["waves"][1]["state"] == "pending"
    later = [d for d in fleet.devices(rollout_id) if d["wave"] == 1]
    assert {d["state"] for d in later} == {"pending"}
    assert all(fleet.agent(d["device_id"]).active_version() == fast for d in later)
