"""A rollout outlives a server restart and a broker restart in the middle of a wave."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.agent.e2e.harness import wait_until
from tests.e2e.rollouts.conftest import (
    NO_GATES,
    WAIT,
    Fleet,
    FleetMaker,
    polled,
)
from tests.harness.models import TfliteModels

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

WAVES = [{"count": 2}, {"percent": 50}, {"percent": 100}]
SESSION_SECONDS = 60
"""The ingest keeps its broker session across the restart, as a deployed server does: what
the devices report while it is down waits for it."""


def policy(soak: float, **wave: Any) -> dict[str, Any]:
    return {"waves": [w | {"soak_seconds": soak} | wave for w in WAVES], "gates": NO_GATES}


def wave_state(fleet: Fleet, rollout_id: str, index: int, state: str) -> bool:
    return bool(fleet.status(rollout_id)["waves"][index]["state"] == state)


def assert_completed_in_order(fleet: Fleet, status: dict[str, Any], version: int) -> None:
    assert status["state"] == "completed", status
    waves = status["waves"]
    assert [w["state"] for w in waves] == ["done"] * len(WAVES)
    for earlier, later in zip(waves, waves[1:], strict=False):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)
    assert status["by_state"] == {"healthy": len(fleet.agents)}
    fleet.wait_serving(version)


def test_server_restart_mid_wave_neither_resends_nor_skips(
    make_fleet: FleetMaker, tflite_models: TfliteModels
) -> None:
    fleet = make_fleet(
        8,
        broker_client_id=f"edgefleet-ingest-restart-{time.monotonic_ns()}",
        broker_session_expiry=SESSION_SECONDS,
    )
    fleet.install(fleet.register(tflite_models.float32))
    second = fleet.register(tflite_models.int8)
    watcher = fleet.watch_desired()
    rollout_id = fleet.start_rollout(second, policy(soak=3))
    wait_until(polled(lambda: wave_state(fleet, rollout_id, 1, "soaking")), "wave 2 soaks", WAIT)

    fleet.stop_server()
    time.sleep(1)
    fleet.start_server()
    restarted = time.time()
    status = fleet.wait_rollout(rollout_id, "completed", "paused", "aborted")

    assert_completed_in_order(fleet, status, second)
    soaking, last = status["waves"][1:]
    assert soaking["soak_started_at"] < restarted <= soaking["finished_at"], soaking
    assert last["started_at"] >= restarted
    sent = watcher.deliveries()
    assert Counter(device for device, _ in sent) == {a.device_id: 1 for a in fleet.agents}, sent


def test_broker_restart_mid_wave_holds_progress_and_recovers(
    make_fleet: FleetMaker, tflite_models: TfliteModels
) -> None:
    """One device of wave 2 is offline across the restart: what the broker kept for it
    (its retained desired, the artifact's chunks) is gone when it comes back.

    Any device of a wave counted failed or timed out would abort the rollout
    (the default error threshold is 5%), so completing says none was.
    """
    fleet = make_fleet(8)
    fleet.install(fleet.register(tflite_models.float32))
    second = fleet.register(tflite_models.int8)
    rollout_id = fleet.start_rollout(second, policy(soak=2, device_timeout_seconds=15))
    away = next(d["device_id"] for d in fleet.devices(rollout_id) if d["wave"] == 1)
    fleet.agent(away).stop()
    wait_until(polled(lambda: away not in fleet.online()), "the device offline", WAIT)
    wait_until(polled(lambda: wave_state(fleet, rollout_id, 1, "running")), "wave 2 runs", WAIT)

    fleet.broker.restart()
    fleet.revive(away)
    status = fleet.wait_rollout(rollout_id, "completed", "paused", "aborted", timeout=60)

    assert_completed_in_order(fleet, status, second)
    assert {d["state"] for d in fleet.devices(rollout_id)} == {"healthy"}
