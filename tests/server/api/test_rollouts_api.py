"""Rollouts through the REST API and the executor's tick, on a real broker and database.

Device answers are written as the ingest writes them (``device_events`` rows),
so each tick's decision can be checked step by step; the end-to-end tests in
``tests/e2e/rollouts`` run the same path with real agents.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgefleet.server.db.models import DesiredState, Device, DeviceEvent, Role
from edgefleet.server.rollouts.executor import RolloutExecutor
from edgefleet.shared.agent_config import parse_agent_config
from edgefleet.shared.messages import Desired, decode_as
from edgefleet.shared.topics import Channel, device_topic
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_models_api import upload

API = "/api/v1"


CREDENTIALS: dict[str, Credentials] = {}
"""Broker credentials of every device provisioned here, from its agent config bundle."""


def fleet(server: Server, count: int) -> tuple[str, list[str]]:
    ids = sorted(unique_id("rd") for _ in range(count))
    for device_id in ids:
        response = server.client.post(
            f"{API}/devices", headers=server.headers(), json={"id": device_id, "profile": "sim"}
        )
        assert response.status_code == 201, response.text
        broker = parse_agent_config(response.json()["agent_config"]).broker
        CREDENTIALS[device_id] = Credentials(broker.username, broker.password)
    group = unique_id("grp")
    response = server.client.post(
        f"{API}/groups",
        headers=server.headers(),
        json={"name": group, "kind": "static", "members": ids},
    )
    assert response.status_code == 201, response.text
    return group, ids


def approve(server: Server, model: str, version: int) -> None:
    response = server.client.patch(
        f"{API}/models/{model}/versions/{version}",
        headers=server.headers(),
        json={"stage": "approved"},
    )
    assert response.status_code == 200, response.text


def post(server: Server, path: str, body: Any = None, role: Role = Role.OPERATOR) -> Any:
    return server.client.post(f"{API}{path}", headers=server.headers(role), json=body)


def refused(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["detail"], response.json()


def test_refusals_and_operator_commands(server: Server, tflite_models: TfliteModels) -> None:
    group, _ = fleet(server, 3)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    body = {"group": group, "model": model, "version": 1}

    refused(post(server, "/rollouts", body), 422, "approve it before")
    approve(server, model, 1)
    refused(post(server, "/rollouts", {**body, "group": "nope"}), 404, "no group")
    refused(post(server, "/rollouts", {**body, "version": 9}), 404, "no version 9")
    refused(
        post(server, "/rollouts", {**body, "policy": {"waves": [{"percent": 50}]}}),
        422,
        "100",
    )
    refused(
        post(server, "/rollouts", {**body, "policy": {"gates": {"min_shadow_agreement": 0.9}}}),
        422,
        "shadow",
    )
    refused(post(server, "/rollouts", {**body, "policy": {"surprise": 1}}), 422, "surprise")
    assert post(server, "/rollouts", body, role=Role.VIEWER).status_code == 403

    created = post(server, "/rollouts", body)
    assert created.status_code == 201, created.text
    rollout = created.json()
    assert (rollout["state"], rollout["current_wave"]) == ("draft", 0)
    rid = rollout["id"]
    refused(post(server, f"/rollouts/{rid}/approve"), 409, "cannot approve")
    assert post(server, f"/rollouts/{rid}/start").json()["state"] == "running"
    refused(post(server, f"/rollouts/{rid}/start"), 409, "it is running")
    refused(post(server, "/rollouts", body), 409, "another active rollout")
    refused(post(server, f"/rollouts/{rid}/approve"), 409, "not waiting for approval")
    assert post(server, f"/rollouts/{rid}/pause", {"reason": "lunch"}).json()["reason"] == "lunch"
    refused(post(server, f"/rollouts/{rid}/pause"), 409, "it is paused")
    assert post(server, f"/rollouts/{rid}/resume").json()["state"] == "running"
    aborted = post(server, f"/rollouts/{rid}/abort", {"reason": "test"}).json()
    assert (aborted["state"], aborted["reason"]) == ("aborted", "test")
    refused(post(server, f"/rollouts/{rid}/abort"), 409, "it is aborted")

    audit = server.client.get(
        f"{API}/audit", headers=server.headers(), params={"target_id": rid}
    ).json()
    actions = [record["action"] for record in reversed(audit)]
    assert actions == [
        "rollout.create",
        "rollout.start",
        "rollout.pause",
        "rollout.resume",
        "rollout.abort",
    ]
    listed = server.client.get(
        f"{API}/rollouts", headers=server.headers(Role.VIEWER), params={"group": group}
    ).json()
    assert [r["id"] for r in listed] == [rid]
    assert server.client.get(f"{API}/rollouts/nope", headers=server.headers()).status_code == 404


class Watcher:
    """What devices receive: each its own desired, and the artifact chunks."""

    def __init__(self, broker: MosquittoBroker, device_ids: list[str]) -> None:
        self.messages: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.clients = []
        for device_id in device_ids:
            client = broker.client(CREDENTIALS[device_id])
            client.on_message = self._on_message
            client.subscribe(device_topic(device_id, Channel.DESIRED), qos=1)
            self.clients.append(client)
        self.clients[0].subscribe("ef/v1/a/#", qos=1)

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages[message.topic] = bytes(message.payload)

    def get(self, topic: str) -> bytes | None:
        with self._lock:
            return self.messages.get(topic)


@pytest.fixture
def executor(server: Server) -> RolloutExecutor:
    runtime = server.client.app.state.runtime  # type: ignore[attr-defined]
    runtime.scheduler.pause()  # the test ticks by hand, one decision at a time
    found: RolloutExecutor = runtime.rollouts
    return found


def answer(server: Server, device_id: str, rollout_id: str, kind: str, seq: int) -> None:
    """A device's update event, as the ingest stores it."""
    now = server.services.clock()
    with server.services.sessions() as session:
        session.add(
            DeviceEvent(
                device_id=device_id,
                seq=seq,
                at=now,
                kind=kind,
                model="",
                version=1,
                rollout_id=rollout_id,
                received_at=now,
            )
        )
        session.commit()


def rollout_status(server: Server, rid: str) -> dict[str, Any]:
    found: dict[str, Any] = server.client.get(
        f"{API}/rollouts/{rid}", headers=server.headers()
    ).json()
    return found


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def watch(broker: MosquittoBroker) -> Iterator[Callable[[list[str]], Watcher]]:
    made: list[Watcher] = []

    def start(device_ids: list[str]) -> Watcher:
        made.append(Watcher(broker, device_ids))
        return made[-1]

    yield start
    for watcher in made:
        watcher.close()


def test_tick_notifies_wave_by_wave_and_retains_chunks_while_needed(
    server: Server,
    tflite_models: TfliteModels,
    executor: RolloutExecutor,
    watch: Callable[[list[str]], Watcher],
) -> None:
    group, ids = fleet(server, 4)
    watcher = watch(ids)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    approve(server, model, 1)
    sha256 = hashlib.sha256(tflite_models.float32).hexdigest()
    policy = {"waves": [{"count": 1, "soak_seconds": 0}, {"percent": 100, "soak_seconds": 0}]}
    rid = post(
        server, "/rollouts", {"group": group, "model": model, "version": 1, "policy": policy}
    ).json()["id"]
    post(server, f"/rollouts/{rid}/start")

    executor.tick()
    devices = server.client.get(f"{API}/rollouts/{rid}/devices", headers=server.headers()).json()
    first = [d["device_id"] for d in devices if d["wave"] == 0]
    assert len(first) == 1
    assert {d["state"] for d in devices if d["wave"] == 0} == {"notified"}
    assert {d["state"] for d in devices if d["wave"] == 1} == {"pending"}
    topic = device_topic(first[0], Channel.DESIRED)
    wait_for(lambda: watcher.get(topic) is not None, "the first wave's desired")
    desired = decode_as(Desired, watcher.get(topic) or b"")
    assert [(d.model, d.rollout_id) for d in desired.deployments] == [(model, rid)]
    assert desired.deployments[0].manifest.signed["artifact"]["sha256"] == sha256
    wait_for(lambda: watcher.get(f"ef/v1/a/{sha256}/0") is not None, "retained chunks")
    later = [device_topic(d, Channel.DESIRED) for d in ids if d not in first]
    assert all(watcher.get(t) is None for t in later), "a later wave heard of the rollout early"

    answer(server, first[0], rid, "healthy", 1)
    executor.tick()  # the wave meets its threshold: the soak starts
    assert rollout_status(server, rid)["waves"][0]["state"] == "soaking"
    executor.tick()  # soak of 0 s over: wave 2 starts in the same tick
    status = rollout_status(server, rid)
    assert [w["state"] for w in status["waves"]] == ["done", "running"]
    wait_for(lambda: all(watcher.get(t) is not None for t in later), "the second wave's desired")

    for seq, device_id in enumerate(ids, start=2):
        if device_id != first[0]:
            answer(server, device_id, rid, "healthy", seq)
    answer(server, first[0], rid, "healthy", 99)  # said again (an agent restart): no change
    executor.tick()
    executor.tick()
    status = rollout_status(server, rid)
    assert status["state"] == "completed", status
    assert status["by_state"] == {"healthy": 4}
    assert [g["name"] for g in status["waves"][1]["gates"]][:2] == ["success_share", "error_share"]
    with server.services.sessions() as session:
        revisions = {
            d.device_id: (d.revision, d.published_revision)
            for d in session.query(DesiredState).filter(DesiredState.device_id.in_(ids))
        }
    assert revisions == dict.fromkeys(ids, (1, 1)), "each device notified exactly once"

    # Nobody says it runs the artifact yet: the chunks stay. Once all do, they go.
    executor.tick()
    assert watcher.get(f"ef/v1/a/{sha256}/0")
    with server.services.sessions() as session:
        for device in session.query(Device).filter(Device.id.in_(ids)):
            device.running = [
                {"model": model, "version": 1, "sha256": sha256, "slot": "a", "active": True}
            ]
        session.commit()
    executor.tick()
    wait_for(lambda: watcher.get(f"ef/v1/a/{sha256}/0") == b"", "chunks cleared")


def test_status_json_is_what_the_cli_shows(server: Server, tflite_models: TfliteModels) -> None:
    group, _ = fleet(server, 2)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    approve(server, model, 1)
    rid = post(server, "/rollouts", {"group": group, "model": model, "version": 1}).json()["id"]
    status = rollout_status(server, rid)
    assert [w["target"] for w in status["waves"]] == ["1%", "10%", "50%", "100%"]
    assert json.loads(json.dumps(status)) == status
