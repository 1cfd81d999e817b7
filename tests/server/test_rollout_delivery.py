"""Rollout delivery against a real Mosquitto, checked with the agent's own code.

Devices subscribe with their own credentials, so the broker's ACL is part of
every test; chunks are reassembled by the agent's ``ChunkAssembler`` and a
``desired`` goes through the agent's ``Intake`` (root rotation, key list,
signature, profile, version order) exactly as a device takes it.

To show that *nothing* (retained) is on a topic, a subscriber waits for a
non-retained marker that the server publishes after the SUBACK: the broker
queues a subscription's retained messages before it reads the marker's
PUBLISH, so whatever was retained arrives first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from edgefleet.agent.storage import Storage
from edgefleet.agent.update.chunks import ChunkAssembler
from edgefleet.agent.update.intake import DeviceFacts, Intake
from edgefleet.agent.update.machine import Start
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.errors import BrokerError, InvalidInputError, ServerError
from edgefleet.server.keys import init_keys, rotate_root
from edgefleet.server.mqtt import MqttTransport
from edgefleet.server.registry import CHUNK_BYTES
from edgefleet.server.rollouts import delivery
from edgefleet.server.signing import SigningService
from edgefleet.shared.agent_config import UpdateSection
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Deployment, Desired, decode_as
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.topics import (
    MAX_CHUNK_INDEX,
    ArtifactTopic,
    Channel,
    artifact_filter,
    artifact_topic,
    device_topic,
    parse_topic,
)
from tests.harness.broker import TIMEOUT, MosquittoBroker
from tests.harness.mqtt import Recorder
from tests.shared.factories import DAY, NOW, manifest

PROFILE = "sim"
ARTIFACT_BYTES = 3 * CHUNK_BYTES + 1234
"""Four chunks at the registry's chunk size, the last one short."""


@pytest.fixture
def server(broker: MosquittoBroker) -> Iterator[MqttTransport]:
    transport = MqttTransport(
        host=broker.host,
        port=broker.port,
        username=broker.server_credentials.username,
        password=broker.server_credentials.password,
        client_id=f"test-delivery-{secrets.token_hex(4)}",
    )
    transport.start()
    assert transport.wait_connected(TIMEOUT)
    yield transport
    transport.stop()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def artifact(store: ArtifactStore) -> bytes:
    """Fresh random bytes per test: no retained chunk of another test shares its topics."""
    data = os.urandom(ARTIFACT_BYTES)
    store.put(data)
    return data


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> SigningService:
    """The server's signing service after one root rotation: roots v1 and v2 are published."""
    base = tmp_path_factory.mktemp("keys")
    root_dir, signing_dir = base / "root", base / "signing"
    init_keys(root_dir=root_dir, signing_dir=signing_dir, now=NOW - 10 * DAY)
    rotate_root(
        root_dir=root_dir, signing_dir=signing_dir, now=NOW - 9 * DAY, new_keys=1, new_threshold=1
    )
    return SigningService.load(signing_dir)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(store: ArtifactStore, data: bytes, version: int = 4) -> Manifest:
    """A manifest whose artifact spec is the store's own, at the registry's chunk size."""
    spec = store.artifact_spec(sha(data), CHUNK_BYTES)
    return dataclasses.replace(manifest(version=version, profile=PROFILE), artifact=spec)


def retained(server: MqttTransport, device: Recorder, topic_filter: str, marker: str) -> list[str]:
    """Topics of the retained messages a new subscription to ``topic_filter`` gets."""
    assert not any(r.is_failure for r in device.subscribe(topic_filter))
    server.publish(marker, b"marker")
    device.wait_for(marker, b"marker")
    return [m.topic for m in device.messages if m.retain]


def assemble(device: Recorder, manifest: Manifest) -> bytes:
    """Feed every chunk the device received to the agent's assembler; the verified bytes."""
    assembler = ChunkAssembler(manifest)
    for message in device.messages:
        address = parse_topic(message.topic)
        assert isinstance(address, ArtifactTopic)
        assert (message.retain, message.qos) == (True, 1)
        assembler.accept(address.chunk, bytes(message.payload))
    return bytes(assembler.finish())


def wait_for_chunks(device: Recorder, sha256: str, count: int) -> None:
    for index in range(count):
        device.wait_for(artifact_topic(sha256, index))


# -- artifact chunks ---------------------------------------------------------------------------


def test_chunks_reach_a_late_subscriber_and_reassemble(
    server, store, artifact, device_credentials, mqtt_client
):
    sha256 = sha(artifact)

    count = delivery.publish_artifact(server, store, sha256, CHUNK_BYTES)

    assert count == store.artifact_spec(sha256, CHUNK_BYTES).chunk_count == 4
    device = Recorder(mqtt_client(device_credentials()))
    device.subscribe(artifact_filter(sha256))
    wait_for_chunks(device, sha256, count)
    assert assemble(device, manifest_for(store, artifact)) == artifact


def test_cleared_chunks_are_gone_for_a_new_subscriber(
    server, store, artifact, device_credentials, mqtt_client
):
    sha256 = sha(artifact)
    count = delivery.publish_artifact(server, store, sha256, CHUNK_BYTES)

    delivery.clear_artifact(server, sha256, count)

    device = Recorder(mqtt_client(device_credentials()))
    marker = artifact_topic(sha256, MAX_CHUNK_INDEX)
    assert retained(server, device, artifact_filter(sha256), marker) == []


def test_a_damaged_artifact_is_refused_before_any_chunk_is_published(
    server, store, artifact, device_credentials, mqtt_client
):
    sha256 = sha(artifact)
    path = store.path(sha256)
    path.write_bytes(b"\x00" + path.read_bytes()[1:])
    device = Recorder(mqtt_client(device_credentials()))
    device.subscribe(artifact_filter(sha256))

    with pytest.raises(ServerError) as refused:
        delivery.publish_artifact(server, store, sha256, CHUNK_BYTES)

    assert refused.value.reason == "artifact_corrupted"
    marker = artifact_topic(sha256, MAX_CHUNK_INDEX)
    server.publish(marker, b"marker")
    device.wait_for(marker, b"marker")
    assert [m.topic for m in device.messages] == [marker]  # no chunk, live or retained
    late = Recorder(mqtt_client(device_credentials()))
    assert retained(server, late, artifact_filter(sha256), marker) == []


def test_bad_chunk_counts_and_hashes_publish_nothing(server):
    with pytest.raises(InvalidInputError):
        delivery.clear_artifact(server, "f" * 64, -1)
    with pytest.raises(InvalidInputError):
        delivery.clear_artifact(server, "not-a-sha", 2)


# -- desired ------------------------------------------------------------------------------------


def deployment(signing: SigningService, body: Manifest) -> Deployment:
    return Deployment(model=body.model, manifest=signing.sign_manifest(body), rollout_id="r-7")


def test_build_desired_carries_the_roots_after_v1_and_the_key_list(signing, store, artifact):
    roots, keys = signing.trust_bundle()
    one = deployment(signing, manifest_for(store, artifact))

    desired = delivery.build_desired(
        revision=3, deployments=[one], trust=signing.trust_bundle(), now=NOW
    )

    assert desired == Desired(
        revision=3, issued_at=NOW, deployments=(one,), signing_keys=keys, roots=roots[1:]
    )
    assert [r.signed["version"] for r in desired.roots] == [2]
    with pytest.raises(InvalidInputError, match="deployed twice"):
        delivery.build_desired(
            revision=4, deployments=[one, one], trust=signing.trust_bundle(), now=NOW
        )


def test_desired_reaches_only_its_device(
    server, signing, store, artifact, device_credentials, mqtt_client
):
    a, b = device_credentials(), device_credentials()
    trust = signing.trust_bundle()
    one = deployment(signing, manifest_for(store, artifact))
    sent = {
        d.username: delivery.build_desired(revision=r, deployments=[one], trust=trust, now=NOW)
        for r, d in enumerate([a, b], start=1)
    }

    delivery.publish_desired(server, sent)

    for credentials in (a, b):
        device = Recorder(mqtt_client(credentials))
        own = device_topic(credentials.username, Channel.DESIRED)
        device.subscribe(own)
        message = device.wait_for(own)
        assert message.retain
        assert decode_as(Desired, bytes(message.payload)) == sent[credentials.username]
    snoop = Recorder(mqtt_client(a))
    [refusal] = snoop.subscribe(device_topic(b.username, Channel.DESIRED))
    assert refusal.is_failure
    delivery.publish_desired(server, {})  # nothing to send is not an error


def test_a_bad_device_id_publishes_no_desired(server, signing, device_credentials, mqtt_client):
    a = device_credentials()
    empty = delivery.build_desired(revision=1, deployments=[], trust=signing.trust_bundle(), now=1)

    with pytest.raises(InvalidInputError) as refused:
        delivery.publish_desired(server, {a.username: empty, "../etc": empty})

    assert refused.value.reason == "bad_device_id"
    device = Recorder(mqtt_client(a))
    own = device_topic(a.username, Channel.DESIRED)
    assert retained(server, device, own, own) == []


def test_a_device_pinned_at_root_v1_installs_what_was_delivered(
    server, signing, store, artifact, device_credentials, mqtt_client, tmp_path
):
    """The whole delivery as the agent sees it: desired, trust, admission, chunks, bytes."""
    credentials = device_credentials()
    body = manifest_for(store, artifact)
    desired = delivery.build_desired(
        revision=1, deployments=[deployment(signing, body)], trust=signing.trust_bundle(), now=NOW
    )
    delivery.publish_artifact(server, store, body.artifact.sha256, body.artifact.chunk_size)
    delivery.publish_desired(server, {credentials.username: desired})

    device = Recorder(mqtt_client(credentials))
    own = device_topic(credentials.username, Channel.DESIRED)
    device.subscribe(own)
    received = decode_as(Desired, bytes(device.wait_for(own).payload))
    pinned: SignedEnvelope = signing.trust_bundle().roots[0]
    facts = DeviceFacts(
        profile=PROFILE, max_artifact_bytes=10 * ARTIFACT_BYTES, rules=UpdateSection()
    )
    intake = Intake(Storage.open(tmp_path / "agent"), facts, pinned)
    [signal] = intake.decide(received, active=None, now=NOW)

    assert isinstance(signal, Start)
    assert intake.trust.root.version == 2  # rotated with the roots the desired carried
    admitted = intake.admit(signal.candidate.manifest, now=NOW).manifest
    chunks = Recorder(mqtt_client(credentials))
    chunks.subscribe(artifact_filter(signal.candidate.sha256))
    wait_for_chunks(chunks, admitted.artifact.sha256, admitted.artifact.chunk_count)
    assert assemble(chunks, admitted) == artifact


# -- publish_many -------------------------------------------------------------------------------


def test_publish_many_slides_its_window_past_the_inflight_limit(
    server, device_credentials, mqtt_client
):
    a = device_credentials()
    device = Recorder(mqtt_client(a))
    topic = device_topic(a.username, Channel.CMD)
    device.subscribe(topic)
    payloads = [str(i).encode() for i in range(2500)]

    server.publish_many(((topic, p, False) for p in payloads), timeout=30)

    device.wait_for(topic, payloads[-1])
    assert device.payloads(topic) == payloads


def test_publish_many_names_how_many_were_refused(server, device_credentials, mqtt_client):
    a = device_credentials()
    allowed = device_topic(a.username, Channel.CMD)
    forbidden = device_topic(a.username, Channel.TELEMETRY)  # the server may not write reports
    device = Recorder(mqtt_client(a))
    device.subscribe(allowed)

    with pytest.raises(BrokerError, match=r"1 of 3 messages not acknowledged") as raised:
        server.publish_many(
            [(allowed, b"1", False), (forbidden, b"x", False), (allowed, b"2", False)],
            timeout=TIMEOUT,
        )

    assert raised.value.reason == "broker_refused"
    assert f"publish to {forbidden}" in str(raised.value)
    device.wait_for(allowed, b"2")  # a refusal does not stop the rest
    assert device.payloads(allowed) == [b"1", b"2"]


def test_publish_many_gives_up_at_its_deadline(broker: MosquittoBroker, server):
    server.stop()  # disconnected: QoS 1 messages wait in paho for a reconnect that never comes
    with pytest.raises(BrokerError, match=r"2 of 2 messages not acknowledged within 0.2 s"):
        server.publish_many([(device_topic("dev-x", Channel.CMD), b"", False)] * 2, timeout=0.2)


class DamagingPublisher:
    """The real transport, but the artifact's file is damaged once its first chunk is out."""

    def __init__(self, transport: MqttTransport, path: Path) -> None:
        self._transport = transport
        self._path = path

    def publish_many(
        self, messages: Iterable[tuple[str, bytes, bool]], *, qos: int = 1, timeout: float
    ) -> None:
        def damaging() -> Iterator[tuple[str, bytes, bool]]:
            for index, message in enumerate(messages):
                yield message
                if index == 0:
                    data = bytearray(self._path.read_bytes())
                    data[-1] ^= 0xFF
                    self._path.write_bytes(bytes(data))

        self._transport.publish_many(damaging(), qos=qos, timeout=timeout)


def test_chunks_of_a_file_damaged_during_the_read_are_cleared_again(
    server, store, artifact, device_credentials, mqtt_client
):
    sha256 = sha(artifact)
    publisher = DamagingPublisher(server, store.path(sha256))

    with pytest.raises(ServerError) as refused:
        delivery.publish_artifact(publisher, store, sha256, CHUNK_BYTES)

    assert refused.value.reason == "artifact_corrupted"
    device = Recorder(mqtt_client(device_credentials()))
    marker = artifact_topic(sha256, MAX_CHUNK_INDEX)
    assert retained(server, device, artifact_filter(sha256), marker) == []
