"""Chunks damaged on the wire: a refetch heals a passing fault, not a lasting one.

The agent runs in process on the real broker with the real runtime and
storage; only its inbox is the fleet simulator's ``corrupt_chunk`` fault: the
transport's sink flips one byte of the next artifact chunks it hands over.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgefleet.agent.agent import Agent
from edgefleet.agent.backoff import Backoff
from edgefleet.agent.parts import Parts, build_parts
from edgefleet.agent.transport import Received, TransportEvent
from edgefleet.agent.update.refetch import MAX_REFETCHES
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Deployment, Event, EventKind, Slot, decode_as, encode
from edgefleet.shared.profiles import parse_profile
from edgefleet.shared.topics import Channel, all_artifacts_filter, artifact_topic, device_topic
from tests.agent.e2e.harness import FLEET, PROFILES, agent_config, short_dir
from tests.agent.signed_models import chunks, desired, manifest_for
from tests.agent.test_agent import Clock, step_until
from tests.conftest import ClientFactory, DeviceFactory
from tests.harness.broker import MosquittoBroker
from tests.harness.models import TfliteModels
from tests.harness.mqtt import Recorder

ARTIFACTS = all_artifacts_filter().rstrip("#")


class GarblingInbox(queue.Queue[TransportEvent]):
    """The agent's inbox; flips the middle byte of the next :attr:`garble` artifact chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.garble = 0
        self.garbled = 0

    def put(self, item: TransportEvent, block: bool = True, timeout: float | None = None) -> None:
        if (
            isinstance(item, Received)
            and item.topic.startswith(ARTIFACTS)
            and item.payload
            and self.garble > 0
        ):
            self.garble -= 1
            self.garbled += 1
            payload = bytearray(item.payload)
            payload[len(payload) // 2] ^= 0xFF
            item = Received(item.topic, bytes(payload), item.retained)
        super().put(item, block, timeout)


@dataclass
class Fleet:
    """The server's side of one device on the broker, and that device's in-process agent."""

    server: Recorder
    device_id: str
    agent: Agent
    parts: Parts
    inbox: GarblingInbox
    revision: int = 0

    def deploy(self, manifest: Manifest, data: bytes) -> None:
        for index, chunk in enumerate(chunks(data)):
            self.server.publish(artifact_topic(manifest.artifact.sha256, index), chunk, retain=True)
        self.revision += 1
        signed = desired(FLEET, self.revision, Deployment("vibration", FLEET.sign(manifest)))
        self.server.publish(self._desired_topic, encode(signed), retain=True)

    def events(self, version: int) -> list[Event]:
        topic = device_topic(self.device_id, Channel.EVENTS)
        found = [decode_as(Event, p) for p in self.server.payloads(topic)]
        return [e for e in found if e.version == version]

    def wait_event(self, kind: EventKind, version: int) -> Event:
        step_until(
            self.agent,
            lambda: any(e.kind is kind for e in self.events(version)),
            f"{kind.value} v{version}",
        )
        return next(e for e in self.events(version) if e.kind is kind)

    def serving(self) -> int | None:
        active = self.parts.service.active
        return None if active is None else active.runner.manifest.version

    def clear(self, *manifests: Manifest) -> None:
        for manifest in manifests:
            for index in range(manifest.artifact.chunk_count):
                self.server.publish(
                    artifact_topic(manifest.artifact.sha256, index), b"", retain=True
                )
        self.server.publish(self._desired_topic, b"", retain=True)

    @property
    def _desired_topic(self) -> str:
        return device_topic(self.device_id, Channel.DESIRED)


@pytest.fixture
def fleet(
    broker: MosquittoBroker,
    device_credentials: DeviceFactory,
    mqtt_client: ClientFactory,
    tmp_path: Path,
    tflite_models: TfliteModels,
) -> Iterator[Fleet]:
    """A device serving v1 (float32, delivered intact) with its inbox ready to garble."""
    device = device_credentials("refetch")
    server = Recorder(mqtt_client(broker.server_credentials), timeout=10.0)
    server.subscribe(device_topic(device.username, Channel.EVENTS))
    with short_dir() as sockets:
        config = agent_config(broker, device, tmp_path / "data", sockets / "api.sock")
    inbox = GarblingInbox()
    profile = parse_profile((PROFILES / "sim.toml").read_text())
    parts = build_parts(
        config, profile=profile, clock=Clock(), backoff=Backoff(initial=0.05), inbox=inbox
    )
    fleet = Fleet(server, device.username, Agent(parts), parts, inbox)
    v1 = manifest_for(tflite_models.float32, 1)
    try:
        fleet.agent.start()
        fleet.deploy(v1, tflite_models.float32)
        fleet.wait_event(EventKind.HEALTHY, 1)
        yield fleet
    finally:
        fleet.agent.shutdown()
        fleet.clear(v1, manifest_for(tflite_models.int8, 2))


def refetch_reasons(events: list[Event]) -> list[str]:
    return [
        e.reason or ""
        for e in events
        if e.kind is EventKind.DOWNLOADING and (e.reason or "").startswith("refetch ")
    ]


def test_a_chunk_damaged_on_the_wire_is_fetched_again_and_the_update_succeeds(
    fleet: Fleet, tflite_models: TfliteModels
) -> None:
    fleet.inbox.garble = 1
    fleet.deploy(manifest_for(tflite_models.int8, 2), tflite_models.int8)
    fleet.wait_event(EventKind.HEALTHY, 2)
    assert fleet.inbox.garbled == 1
    events = fleet.events(2)
    assert [e.kind for e in events if e.kind is EventKind.FAILED] == []
    [reason] = refetch_reasons(events)
    assert reason.startswith("refetch 1 of 3: sha256_mismatch: artifact sha256 ")
    assert fleet.serving() == 2
    assert fleet.parts.storage.pointer() is Slot.B


def test_a_chunk_damaged_every_time_fails_the_update_and_v1_keeps_serving(
    fleet: Fleet, tflite_models: TfliteModels
) -> None:
    int8 = manifest_for(tflite_models.int8, 2)
    fleet.inbox.garble = 10**6
    fleet.deploy(int8, tflite_models.int8)
    failed = fleet.wait_event(EventKind.FAILED, 2)
    reason = failed.reason or ""
    assert reason.startswith("download_corrupt: the artifact did not match its manifest in 4 ")
    assert "; last: sha256_mismatch: " in reason
    reasons = refetch_reasons(fleet.events(2))
    assert [r.split(":")[0] for r in reasons] == [
        f"refetch {n} of {MAX_REFETCHES}" for n in range(1, MAX_REFETCHES + 1)
    ]
    assert fleet.inbox.garbled >= (MAX_REFETCHES + 1) * int8.artifact.chunk_count
    assert fleet.serving() == 1
    assert fleet.parts.storage.pointer() is Slot.A
    assert fleet.parts.storage.record(Slot.B) is None
    assert fleet.parts.service.predict(tflite_models.representative[:1]).shape == (1, 3)
