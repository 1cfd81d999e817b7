"""The agent's MQTT transport against the real broker with the fleet's per-device ACL."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.errors import AgentConfigError, TransportError
from edgefleet.agent.transport import (
    Acked,
    BrokerAddress,
    Connected,
    Disconnected,
    MqttTransport,
    Received,
    TransportEvent,
)
from edgefleet.shared.topics import Channel, artifact_topic, device_topic
from tests.conftest import ClientFactory, DeviceFactory
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.mqtt import Recorder

WAIT = 5.0
SHA = "ab" * 32


class Events:
    """The transport's sink: a queue, as in the agent, read back with bounded waits."""

    def __init__(self) -> None:
        self.queue: queue.Queue[TransportEvent] = queue.Queue()

    def __call__(self, event: TransportEvent) -> None:
        self.queue.put(event)

    def next(self, kind: type[TransportEvent], timeout: float = WAIT) -> TransportEvent:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(event, kind):
                return event
        raise AssertionError(f"no {kind.__name__} within {timeout} s")


TransportFactory = Callable[..., tuple[MqttTransport, Events]]


@pytest.fixture
def transports(broker: MosquittoBroker) -> Iterator[TransportFactory]:
    made: list[MqttTransport] = []

    def make(
        credentials: Credentials,
        *,
        port: int | None = None,
        tls_ca: str | None = None,
        will: bytes = b"offline",
    ) -> tuple[MqttTransport, Events]:
        events = Events()
        address = BrokerAddress(
            host=broker.host,
            port=broker.port if port is None else port,
            username=credentials.username,
            password=credentials.password,
            client_id=f"agent-{credentials.username}",
            keepalive=5,
            tls_ca=tls_ca,
        )
        state = device_topic(credentials.username, Channel.STATE)
        transport = MqttTransport(
            address,
            sink=events,
            will=lambda: (state, will),
            backoff=Backoff(initial=0.1, maximum=0.5),
        )
        made.append(transport)
        return transport, events

    yield make
    for transport in made:
        transport.stop()


@pytest.fixture
def server(broker: MosquittoBroker, mqtt_client: ClientFactory) -> Recorder:
    return Recorder(mqtt_client(broker.server_credentials))


def test_receives_its_desired_and_artifact_chunks(
    device_credentials: DeviceFactory, transports: TransportFactory, server: Recorder
) -> None:
    device = device_credentials()
    desired = device_topic(device.username, Channel.DESIRED)
    server.publish(desired, b"retained desired", retain=True)
    transport, events = transports(device)
    transport.subscribe(desired)
    transport.start()
    assert isinstance(events.next(Connected), Connected)
    message = events.next(Received)
    assert message == Received(desired, b"retained desired", retained=True)

    chunk = artifact_topic(SHA, 3)
    server.publish(chunk, b"chunk bytes", retain=True)
    transport.subscribe(f"ef/v1/a/{SHA}/+")
    assert events.next(Received) == Received(chunk, b"chunk bytes", retained=True)
    transport.unsubscribe(f"ef/v1/a/{SHA}/+")
    for topic in (chunk, desired):
        server.publish(topic, b"", retain=True)


def test_publish_is_acknowledged_and_a_forbidden_topic_is_refused(
    broker: MosquittoBroker,
    device_credentials: DeviceFactory,
    transports: TransportFactory,
    server: Recorder,
) -> None:
    device, other = device_credentials(), device_credentials()
    server.subscribe(f"ef/v1/d/{device.username}/telemetry")
    transport, events = transports(device)
    transport.start()
    events.next(Connected)
    mid = transport.publish(device_topic(device.username, Channel.TELEMETRY), b"t1")
    assert events.next(Acked) == Acked(mid, ok=True)
    server.wait_for(device_topic(device.username, Channel.TELEMETRY), b"t1")

    forbidden = transport.publish(device_topic(other.username, Channel.TELEMETRY), b"t2")
    refused = events.next(Acked)
    assert isinstance(refused, Acked)
    assert (refused.mid, refused.ok) == (forbidden, False)
    assert "authorized" in refused.reason.lower()


def test_a_dropped_connection_publishes_the_will_then_reconnects_and_resubscribes(
    device_credentials: DeviceFactory, transports: TransportFactory, server: Recorder
) -> None:
    device = device_credentials()
    state = device_topic(device.username, Channel.STATE)
    desired = device_topic(device.username, Channel.DESIRED)
    server.subscribe(state)
    server.publish(desired, b"d1", retain=True)
    transport, events = transports(device, will=b"gone")
    transport.subscribe(desired)
    transport.start()
    events.next(Connected)
    events.next(Received)
    # Cut the TCP connection under paho, as a network failure would.
    sock = transport._client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    events.next(Disconnected)
    server.wait_for(state, b"gone")
    events.next(Connected)
    assert events.next(Received) == Received(desired, b"d1", retained=True)
    server.publish(desired, b"", retain=True)


def test_a_clean_stop_keeps_the_will_back(
    device_credentials: DeviceFactory, transports: TransportFactory, server: Recorder
) -> None:
    device = device_credentials()
    state = device_topic(device.username, Channel.STATE)
    server.subscribe(state)
    transport, events = transports(device, will=b"crashed")
    transport.start()
    events.next(Connected)
    mid = transport.publish(state, b"stopping", retain=True)
    events.next(Acked)
    transport.stop()
    server.wait_for(state, b"stopping")
    time.sleep(0.3)
    assert server.payloads(state) == [b"stopping"]
    assert mid > 0


def test_publish_while_disconnected_is_delivered_after_connecting(
    device_credentials: DeviceFactory, transports: TransportFactory, server: Recorder
) -> None:
    device = device_credentials()
    topic = device_topic(device.username, Channel.EVENTS)
    server.subscribe(topic)
    transport, events = transports(device)
    mid = transport.publish(topic, b"queued before connecting")
    transport.start()
    assert events.next(Acked) == Acked(mid, ok=True)
    server.wait_for(topic, b"queued before connecting")


def test_refused_login_keeps_retrying_without_crashing(
    broker: MosquittoBroker, device_credentials: DeviceFactory, transports: TransportFactory
) -> None:
    device = device_credentials()
    transport, events = transports(Credentials(device.username, "wrong-password-123456"))
    transport.start()
    time.sleep(1.0)
    assert not transport.connected
    assert events.queue.empty()
    started = time.monotonic()
    transport.stop()
    assert time.monotonic() - started < 2.0


def test_unreachable_broker_is_retried_until_stopped(
    device_credentials: DeviceFactory, transports: TransportFactory
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    transport, _ = transports(device_credentials(), port=closed_port)
    transport.start()
    assert not transport.wait_connected(0.8)
    transport.stop()


def test_bad_tls_ca_is_a_config_error(
    device_credentials: DeviceFactory, transports: TransportFactory
) -> None:
    with pytest.raises(AgentConfigError, match="broker.tls_ca"):
        transports(device_credentials(), tls_ca="/nonexistent/ca.pem")


def test_invalid_topic_is_a_transport_error(
    device_credentials: DeviceFactory, transports: TransportFactory
) -> None:
    transport, _ = transports(device_credentials())
    with pytest.raises(TransportError, match="cannot publish"):
        transport.publish("ef/v1/d/+/state", b"x")
