"""A small fleet with problems, made through the real API, broker and ingest.

Shared by the fleet API tests and the browser tests. Ten devices in two static
groups: devices connect with the credentials from their provisioning bundle
and send retained state, update events and telemetry over MQTT, as an agent
would. Only the drift flag is written to the database directly: ingest judges
drift against a signed model version's baseline, which this fleet has no use for.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.db.models import DriftWindow
from edgefleet.shared import messages
from edgefleet.shared.agent_config import AgentConfig, parse_agent_config
from edgefleet.shared.messages import (
    DeviceStatus,
    Event,
    EventKind,
    ModelSlot,
    Slot,
    State,
    Telemetry,
    TelemetryWindow,
)
from edgefleet.shared.topics import Channel, device_topic

MODEL = "vibration"
SHA = "ab" * 32


@dataclass(frozen=True)
class Plan:
    """One device: where it sits and what it does once provisioned."""

    name: str
    site: str
    profile: str
    version: int | None = None
    """Model version it reports running; None: it never connects."""
    event: EventKind | None = None
    goes_offline: bool = False
    telemetry: bool = False
    drift: bool = False
    revoked: bool = False


PLANS = (
    Plan("a1", "site-a", "sim", 3, telemetry=True),
    Plan("a2", "site-a", "sim", 3, telemetry=True, drift=True),
    Plan("a3", "site-a", "sim", 3, event=EventKind.HEALTHY, telemetry=True),
    Plan("a4", "site-a", "rpi4", 3, telemetry=True),
    Plan("a5", "site-a", "sim", 2, event=EventKind.FAILED),
    Plan("a6", "site-a", "sim"),
    Plan("b1", "site-b", "rpi4", 2, event=EventKind.ROLLED_BACK),
    Plan("b2", "site-b", "rpi4", 2, goes_offline=True),
    Plan("b3", "site-b", "sim", 2, goes_offline=True),
    Plan("b4", "site-b", "rpi4", revoked=True),
)
EXPECTED_STATES = {"online": 6, "offline": 2, "provisioned": 1, "revoked": 1}
EXPECTED_PROBLEMS = {"failed": 1, "rolled_back": 1, "offline": 2, "drift": 1}


@dataclass
class SeededFleet:
    prefix: str
    ids: dict[str, str] = field(default_factory=dict)
    """Plan name -> device id."""
    groups: dict[str, str] = field(default_factory=dict)
    """Site -> group name."""
    configs: dict[str, AgentConfig] = field(default_factory=dict)
    clients: dict[str, mqtt.Client] = field(default_factory=dict)
    """Plan name -> the device's connected MQTT client."""

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


def connect(config: AgentConfig) -> mqtt.Client:
    """A device's MQTT session as the agent opens it: its own account, an offline will."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=config.device.id, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(config.broker.username, config.broker.password)
    will = messages.encode(State(status=DeviceStatus.OFFLINE, sent_at=time.time()))
    client.will_set(device_topic(config.device.id, Channel.STATE), will, qos=1, retain=True)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(config.broker.host, config.broker.port)
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise ConnectionError(f"{config.device.id}: no CONNACK")
    return client


def send(client: mqtt.Client, device_id: str, channel: Channel, message: Any) -> None:
    info = client.publish(
        device_topic(device_id, channel),
        messages.encode(message),
        qos=1,
        retain=channel is Channel.STATE,
    )
    info.wait_for_publish(5)


def state(status: DeviceStatus, version: int | None) -> State:
    models = (
        ()
        if version is None
        else (ModelSlot(model=MODEL, version=version, sha256=SHA, slot=Slot.A, active=True),)
    )
    return State(status=status, sent_at=time.time(), agent_version="0.1.0", models=models)


def telemetry(now: float, count: int = 5) -> Telemetry:
    windows = tuple(
        TelemetryWindow(
            seq=i + 1,
            start=now - (count - i) * 60.0,
            end=now - (count - i - 1) * 60.0,
            inferences=100,
            errors=0,
            model=MODEL,
            version=3,
        )
        for i in range(count)
    )
    return Telemetry(sent_at=now, windows=windows)


def _drift_row(device_id: str, now: float) -> DriftWindow:
    return DriftWindow(
        device_id=device_id,
        seq=1,
        model=MODEL,
        version=3,
        window_start=now - 60,
        window_end=now,
        count=500,
        score=3.2,
        flagged=True,
        statistics={},
        counts={},
        samples=0,
        received_at=now,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.05)


def seed_fleet(
    client: Any,
    headers: dict[str, str],
    sessions: sessionmaker[Session],
    wait_ingested: Callable[[], None],
) -> SeededFleet:
    """Provision, connect and drive :data:`PLANS`; returns once ingest has written it all.

    ``client`` is any httpx-style client with the server's base URL (a TestClient or not).
    """
    fleet = SeededFleet(prefix=f"fl{uuid.uuid4().hex[:6]}")
    now = time.time()
    for plan in PLANS:
        device_id = f"{fleet.prefix}-{plan.name}"
        response = client.post(
            "/api/v1/devices",
            headers=headers,
            json={"id": device_id, "profile": plan.profile, "tags": [plan.site]},
        )
        response.raise_for_status()
        fleet.ids[plan.name] = device_id
        fleet.configs[plan.name] = parse_agent_config(response.json()["agent_config"])
    for site in ("site-a", "site-b"):
        name = f"{fleet.prefix}-{site}"
        members = [fleet.ids[p.name] for p in PLANS if p.site == site]
        response = client.post(
            "/api/v1/groups",
            headers=headers,
            json={"name": name, "kind": "static", "members": members},
        )
        response.raise_for_status()
        fleet.groups[site] = name
    for plan in PLANS:
        if plan.version is not None:
            _drive(fleet, plan, now)
        if plan.revoked:
            client.post(f"/api/v1/devices/{fleet.ids[plan.name]}/revoke", headers=headers)
    with sessions() as session:
        session.add_all(_drift_row(fleet.ids[p.name], now) for p in PLANS if p.drift)
        session.commit()
    wait_until(lambda: _states(client, headers, fleet) == EXPECTED_STATES)
    wait_ingested()
    return fleet


def _drive(fleet: SeededFleet, plan: Plan, now: float) -> None:
    device_id = fleet.ids[plan.name]
    mqtt_client = connect(fleet.configs[plan.name])
    fleet.clients[plan.name] = mqtt_client
    send(mqtt_client, device_id, Channel.STATE, state(DeviceStatus.ONLINE, plan.version))
    if plan.event is not None:
        reason = None if plan.event is EventKind.HEALTHY else "self-test failed"
        event = Event(seq=1, at=now, kind=plan.event, model=MODEL, version=3, reason=reason)
        send(mqtt_client, device_id, Channel.EVENTS, event)
    if plan.telemetry:
        send(mqtt_client, device_id, Channel.TELEMETRY, telemetry(now))
    if plan.goes_offline:
        send(mqtt_client, device_id, Channel.STATE, state(DeviceStatus.OFFLINE, plan.version))


def _states(client: Any, headers: dict[str, str], fleet: SeededFleet) -> dict[str, int]:
    found: dict[str, int] = {}
    response = client.get(
        "/api/v1/devices", headers=headers, params={"search": fleet.prefix, "limit": 1000}
    )
    for device in response.json()["items"]:
        found[device["state"]] = found.get(device["state"], 0) + 1
    return found
