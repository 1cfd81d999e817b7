"""The agent's loop in process, on the real broker, with a clock the test moves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgefleet.agent.agent import Agent
from edgefleet.agent.backoff import Backoff
from edgefleet.agent.parts import Parts, build_parts
from edgefleet.shared.messages import (
    Command,
    CommandKind,
    Deployment,
    Drift,
    Event,
    EventKind,
    SampleReason,
    decode_as,
    encode,
)
from edgefleet.shared.profiles import parse_profile
from edgefleet.shared.topics import Channel, artifact_topic, device_topic
from tests.agent.e2e.harness import FLEET, PROFILES, agent_config, short_dir
from tests.agent.signed_models import chunks, desired, manifest_for
from tests.conftest import ClientFactory, DeviceFactory
from tests.harness.broker import MosquittoBroker
from tests.harness.models import TfliteModels
from tests.harness.mqtt import Recorder


class Clock:
    """Real wall time (probation runs), a monotonic clock that stands still (no window ends)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture
def running(
    broker: MosquittoBroker,
    device_credentials: DeviceFactory,
    mqtt_client: ClientFactory,
    tmp_path: Path,
    tflite_models: TfliteModels,
) -> Iterator[tuple[Agent, Parts, Recorder]]:
    """An in-process agent serving v1, and the server's recorder on its reports."""
    device = device_credentials("loop")
    server = Recorder(mqtt_client(broker.server_credentials), timeout=10.0)
    server.subscribe(*(device_topic(device.username, c) for c in (Channel.EVENTS, Channel.DRIFT)))
    with short_dir() as sockets:
        config = agent_config(broker, device, tmp_path / "data", sockets / "api.sock")
    profile = parse_profile((PROFILES / "sim.toml").read_text())
    parts = build_parts(config, profile=profile, clock=Clock(), backoff=Backoff(initial=0.05))
    agent = Agent(parts)
    data = tflite_models.float32
    manifest = manifest_for(data, 1)
    for index, chunk in enumerate(chunks(data)):
        server.publish(artifact_topic(manifest.artifact.sha256, index), chunk, retain=True)
    server.publish(
        device_topic(device.username, Channel.DESIRED),
        encode(desired(FLEET, 1, Deployment("vibration", FLEET.sign(manifest)))),
        retain=True,
    )
    healthy = encode_kind(EventKind.HEALTHY)
    try:
        agent.start()
        step_until(agent, lambda: any(healthy(p) for p in server.payloads()), "v1 healthy")
        yield agent, parts, server
    finally:
        agent.shutdown()
        for index in range(manifest.artifact.chunk_count):
            server.publish(artifact_topic(manifest.artifact.sha256, index), b"", retain=True)
        server.publish(device_topic(device.username, Channel.DESIRED), b"", retain=True)


def encode_kind(kind: EventKind) -> Callable[[bytes], bool]:
    def matches(payload: bytes) -> bool:
        try:
            return decode_as(Event, payload).kind is kind
        except Exception:  # noqa: BLE001  (other channels' payloads)
            return False

    return matches


def step_until(agent: Agent, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        agent.step(0.02)


def test_a_sample_request_sends_the_drift_window_at_once(
    running: tuple[Agent, Parts, Recorder], tflite_models: TfliteModels
) -> None:
    agent, parts, server = running
    for row in tflite_models.representative[:30]:
        parts.service.predict(row)
    drift_topic = device_topic(parts.config.device.id, Channel.DRIFT)
    agent.step(0.1)
    assert server.payloads(drift_topic) == []  # the window is far from over
    command = Command(command_id="s-1", kind=CommandKind.SAMPLE_REQUEST, issued_at=time.time())
    server.publish(device_topic(parts.config.device.id, Channel.CMD), encode(command))
    step_until(agent, lambda: bool(server.payloads(drift_topic)), "a drift message")
    [drift] = [decode_as(Drift, p) for p in server.payloads(drift_topic)]
    assert drift.count == 30
    assert {s.reason for s in drift.samples} >= {SampleReason.RESERVOIR}


def test_an_unusable_desired_is_counted_and_survived(
    running: tuple[Agent, Parts, Recorder],
) -> None:
    agent, parts, server = running
    topic = device_topic(parts.config.device.id, Channel.DESIRED)
    server.publish(topic, b'{"schema": 1, "revision": "two"}', retain=True)
    step_until(agent, lambda: agent.rejected == 1, "the bad desired counted")
    assert parts.service.active is not None
    assert parts.service.active.runner.manifest.version == 1
