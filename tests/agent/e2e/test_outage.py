"""A broker outage loses nothing: 1,000 telemetry messages made while it is down arrive once.

This test stops a broker, so it starts its own instead of the session's.
The agent runs in process on a clock the test advances, so a thousand
one-second windows close in a few seconds of real time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.agent import Agent
from edgefleet.agent.backoff import Backoff
from edgefleet.agent.outbox import Outbox
from edgefleet.server import dynsec
from edgefleet.server.mqtt import MqttTransport
from edgefleet.shared.messages import Telemetry, decode_as
from edgefleet.shared.profiles import parse_profile
from edgefleet.shared.topics import Channel, device_topic
from tests.agent.e2e.harness import PROFILES, agent_config, short_dir, wait_until
from tests.harness.broker import MosquittoBroker
from tests.harness.mqtt import Recorder

pytestmark = [pytest.mark.slow, pytest.mark.broker]

MESSAGES = 1000


class StoppableBroker(MosquittoBroker):
    """A broker that can be down for a while: :meth:`halt`, then :meth:`resume` (same port)."""

    def halt(self) -> None:
        self._terminate()

    def resume(self) -> None:
        self._launch()


class Clock:
    def __init__(self) -> None:
        self.elapsed = 0.0
        self._start = time.time()

    def time(self) -> float:
        return self._start + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed


@pytest.fixture
def own_broker() -> Iterator[StoppableBroker]:
    with StoppableBroker() as broker:
        yield broker


def enable(broker: MosquittoBroker, device_id: str) -> None:
    """Let a disabled device log in again, keeping its password (a fresh admin session)."""
    admin = MqttTransport(
        host=broker.host,
        port=broker.port,
        username=broker.admin_credentials.username,
        password=broker.admin_credentials.password,
        client_id=f"outage-admin-{secrets.token_hex(4)}",
    )
    admin.start()
    try:
        assert admin.wait_connected(5.0)
        token = secrets.token_hex(16)
        answer = admin.request(
            dynsec.CONTROL_TOPIC,
            dynsec.request_payload([dynsec.enable_client(device_id)], token),
            dynsec.RESPONSE_TOPIC,
            matches=lambda payload: dynsec.answers(payload, token),
        )
        [response] = dynsec.parse_responses(answer, token, 1)
        assert response.error is None
    finally:
        admin.stop()


def step_until(agent: Agent, done: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        agent.step(0.02)


def test_a_thousand_messages_made_during_an_outage_arrive_exactly_once(
    own_broker: StoppableBroker, tmp_path: Path
) -> None:
    device = own_broker.add_device("outage-1")
    clock = Clock()
    with short_dir() as sockets:
        config = agent_config(own_broker, device, tmp_path / "data", sockets / "api.sock")
    profile = parse_profile((PROFILES / "sim.toml").read_text())
    agent = Agent.from_config(
        config, profile=profile, clock=clock, backoff=Backoff(initial=0.05, maximum=0.3)
    )
    agent.start()
    try:
        step_until(agent, lambda: agent.connected, "the agent connects")
        own_broker.accounts.disable_device(device.username)
        step_until(agent, lambda: not agent.connected, "the agent is cut off")
        own_broker.halt()

        for _ in range(MESSAGES):
            clock.elapsed += config.telemetry.window_seconds
            agent.step()
        assert not agent.connected

        own_broker.resume()
        server = Recorder(own_broker.client(own_broker.server_credentials), timeout=30.0)
        topic = device_topic(device.username, Channel.TELEMETRY)
        server.subscribe(topic)
        enable(own_broker, device.username)  # only now: the subscriber is in place first
        step_until(agent, lambda: len(server.payloads(topic)) >= MESSAGES, f"{MESSAGES} messages")
        step_until(agent, lambda: agent.connected, "still connected")
        for _ in range(20):  # anything more would be a duplicate
            agent.step(0.01)
        arrived = server.payloads(topic)
    finally:
        agent.shutdown()
    messages = [decode_as(Telemetry, p) for p in arrived]
    windows = [w for m in messages for w in m.windows]
    seqs = [w.seq for w in windows]
    assert len(messages) == MESSAGES
    assert len(set(seqs)) == len(seqs) == MESSAGES
    assert seqs == sorted(seqs)
    assert all(w.end - w.start == pytest.approx(1.0) for w in windows)
    # The clean shutdown sent the window it closed last; nothing else is left behind.
    wait_until(lambda: len(server.payloads(topic)) == MESSAGES + 1, "the shutdown's last window")
    outbox = Outbox.open(tmp_path / "data" / "outbox.sqlite", max_bytes=1 << 20)
    try:
        assert outbox.stats().pending == 0
        assert outbox.stats().dropped == 0
    finally:
        outbox.close()
