"""A device provisioned through the API, talking to the real broker and server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import func, select

from edgefleet.server.db.models import Device, TelemetryRecord
from edgefleet.shared import messages
from edgefleet.shared.agent_config import AgentConfig, parse_agent_config
from edgefleet.shared.messages import DeviceStatus, State, Telemetry, TelemetryWindow
from edgefleet.shared.topics import Channel, device_topic
from tests.server.api.conftest import Server, unique_id

T = 1_767_225_600.0


def provision(server: Server, device_id: str, **body: object) -> AgentConfig:
    response = server.client.post(
        "/api/v1/devices",
        headers=server.headers(),
        json={"id": device_id, "profile": "sim", **body},
    )
    assert response.status_code == 201, response.text
    return parse_agent_config(response.json()["agent_config"])


class Device_:
    """The smallest honest agent: the bundle's credentials, a last will, QoS 1."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=config.device.id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(config.broker.username, config.broker.password)
        will = messages.encode(State(status=DeviceStatus.OFFLINE, sent_at=T))
        self.client.will_set(
            device_topic(config.device.id, Channel.STATE), will, qos=1, retain=True
        )
        answered = threading.Event()
        connack: list[ReasonCode] = []

        def on_connect(_c: object, _u: object, _f: object, code: ReasonCode, _p: object) -> None:
            connack.append(code)
            answered.set()

        self.client.on_connect = on_connect
        self.client.connect(config.broker.host, config.broker.port)
        self.client.loop_start()
        if not answered.wait(5) or connack[0].is_failure:
            self.client.loop_stop()
            raise ConnectionRefusedError(f"CONNACK {connack[:1]}")

    def publish(self, channel: Channel, payload: bytes, device_id: str | None = None) -> int:
        info = self.client.publish(
            device_topic(device_id or self.config.device.id, channel),
            payload,
            qos=1,
            retain=channel is Channel.STATE,
        )
        info.wait_for_publish(5)
        return info.rc

    def close(self, *, cleanly: bool = True) -> None:
        if cleanly:
            self.client.disconnect()
        else:
            # Drop the TCP connection without DISCONNECT: the broker sends the will.
            self.client.socket().close()  # type: ignore[union-attr]
        self.client.loop_stop()


def telemetry(*seqs: int) -> bytes:
    return messages.encode(
        Telemetry(
            sent_at=T,
            windows=tuple(
                TelemetryWindow(seq=s, start=T + s, end=T + s + 1, inferences=5, errors=0)
                for s in seqs
            ),
        )
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def device_row(server: Server, device_id: str) -> Device:
    with server.services.sessions() as session:
        device = session.get(Device, device_id)
        assert device is not None
        return device


def test_provisioned_device_connects_and_its_telemetry_lands(server: Server) -> None:
    device_id = unique_id("cam")
    agent = Device_(provision(server, device_id, tags=["lab"], labels={"site": "berlin"}))
    try:
        agent.publish(
            Channel.STATE,
            messages.encode(State(status=DeviceStatus.ONLINE, sent_at=T, agent_version="0.1.0")),
        )
        agent.publish(Channel.TELEMETRY, telemetry(1, 2, 3))
        wait_until(lambda: device_row(server, device_id).state == "online")
        server.wait_ingested()
        with server.services.sessions() as session:
            seqs = session.scalars(
                select(TelemetryRecord.seq).where(TelemetryRecord.device_id == device_id)
            ).all()
        assert sorted(seqs) == [1, 2, 3]
        assert device_row(server, device_id).agent_version == "0.1.0"
        series = server.client.get(
            f"/api/v1/devices/{device_id}/telemetry",
            params={"since": T, "until": T + 10, "step": 2},
            headers=server.headers(),
        ).json()
        assert [(b["start"], b["windows"], b["inferences"]) for b in series] == [
            (T, 1, 5),
            (T + 2, 2, 10),
        ]
    finally:
        agent.close()


def test_bundle_credentials_cannot_touch_another_device(server: Server) -> None:
    mine, theirs = unique_id("cam"), unique_id("cam")
    provision(server, theirs)
    agent = Device_(provision(server, mine))
    try:
        assert agent.publish(Channel.TELEMETRY, telemetry(7), device_id=theirs) == 0
        agent.publish(Channel.TELEMETRY, telemetry(8))
        server.wait_ingested()
        wait_until(lambda: _count(server, mine) == 1)
        assert _count(server, theirs) == 0
        granted: list[list[ReasonCode]] = []
        suback = threading.Event()

        def on_subscribe(
            _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
        ) -> None:
            granted.append(codes)
            suback.set()

        agent.client.on_subscribe = on_subscribe
        agent.client.subscribe(device_topic(theirs, Channel.CMD), qos=1)
        assert suback.wait(5)
        assert [code.is_failure for code in granted[0]] == [True]
    finally:
        agent.close()


def _count(server: Server, device_id: str) -> int:
    with server.services.sessions() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(TelemetryRecord)
                .where(TelemetryRecord.device_id == device_id)
            )
            or 0
        )


def test_revoked_device_is_refused_at_once(server: Server) -> None:
    device_id = unique_id("cam")
    config = provision(server, device_id)
    agent = Device_(config)
    dropped = threading.Event()
    agent.client.on_disconnect = lambda *a: dropped.set()
    response = server.client.post(f"/api/v1/devices/{device_id}/revoke", headers=server.headers())
    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    assert dropped.wait(5), "a revoked device's live session must be dropped"
    agent.client.loop_stop()
    with pytest.raises(ConnectionRefusedError, match="Not authorized"):
        Device_(config)


def test_a_killed_connection_flips_the_device_offline(server: Server) -> None:
    device_id = unique_id("cam")
    agent = Device_(provision(server, device_id))
    agent.publish(Channel.STATE, messages.encode(State(status=DeviceStatus.ONLINE, sent_at=T)))
    wait_until(lambda: device_row(server, device_id).state == "online")
    agent.close(cleanly=False)
    wait_until(lambda: device_row(server, device_id).state == "offline")
