"""The server's MQTT transport against a real Mosquitto: round trips, refusals, reconnects.

Every wait is bounded: messages are handed from paho's thread to a queue and
read with a timeout; reconnects are awaited with ``wait_connected``.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefleet.server.errors import BrokerError
from edgefleet.server.mqtt import MessageProperties, MqttTransport
from edgefleet.shared.topics import Channel, channel_filter, device_topic, shared_subscription
from tests.harness._system import free_loopback_port
from tests.harness.broker import TIMEOUT, Credentials, MosquittoBroker
from tests.harness.mqtt import Recorder

Received = tuple[str, bytes, MessageProperties]
TransportFactory = Callable[..., MqttTransport]


class Inbox:
    """A message handler that only enqueues, as the transport asks of handlers."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Received] = queue.Queue()

    def __call__(self, topic: str, payload: bytes, properties: MessageProperties) -> None:
        self.messages.put((topic, payload, properties))

    def next(self) -> Received:
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no message within {TIMEOUT} s") from None


def _transport(broker: MosquittoBroker, credentials: Credentials) -> MqttTransport:
    return MqttTransport(
        host=broker.host,
        port=broker.port,
        username=credentials.username,
        password=credentials.password,
        client_id=f"test-{secrets.token_hex(6)}",
    )


@pytest.fixture
def server_transport(broker: MosquittoBroker) -> Iterator[TransportFactory]:
    """``server_transport(broker=<the session broker>)``: started, connected, stopped afterwards."""
    started: list[MqttTransport] = []

    def start(on: MosquittoBroker = broker) -> MqttTransport:
        transport = _transport(on, on.server_credentials)
        started.append(transport)
        transport.start()
        assert transport.wait_connected(TIMEOUT)
        return transport

    yield start
    for transport in started:
        transport.stop()


def test_round_trip_through_the_broker(
    broker: MosquittoBroker, server_transport, device_credentials, mqtt_client
):
    a = device_credentials("a")
    transport = server_transport()
    inbox = Inbox()
    transport.set_message_handler(inbox)
    transport.subscribe(shared_subscription(Channel.TELEMETRY))
    device = Recorder(mqtt_client(a))

    telemetry = device_topic(a.username, Channel.TELEMETRY)
    assert not device.publish(telemetry, b"reading").is_failure
    topic, payload, properties = inbox.next()
    assert (topic, payload, properties.retain) == (telemetry, b"reading", False)

    desired = device_topic(a.username, Channel.DESIRED)
    transport.publish(desired, b"deploy", retain=True)
    device.subscribe(desired)
    assert device.wait_for(desired, b"deploy").retain
    transport.publish(desired, b"", retain=True)


def test_publish_to_a_forbidden_topic_raises(
    broker: MosquittoBroker, server_transport, device_credentials
):
    a = device_credentials("a")
    transport = server_transport()
    with pytest.raises(BrokerError, match=r"Not authorized \(135\)") as raised:
        transport.publish(device_topic(a.username, Channel.TELEMETRY), b"forged")
    assert raised.value.reason == "broker_refused"
    # The connection survives a refusal: the next allowed publish goes through.
    transport.publish(device_topic(a.username, Channel.CMD), b"ping")


def test_subscribe_to_a_forbidden_filter_raises(broker: MosquittoBroker, server_transport):
    transport = server_transport()
    with pytest.raises(BrokerError, match=r"subscribe to #: .*\(135\)"):
        transport.subscribe("#")


def test_publish_refuses_a_wildcard_topic(broker: MosquittoBroker, server_transport):
    with pytest.raises(BrokerError, match="cannot publish"):
        server_transport().publish(channel_filter(Channel.CMD), b"x")


def test_a_failing_handler_is_logged_and_the_loop_goes_on(
    broker: MosquittoBroker,
    server_transport,
    device_credentials,
    mqtt_client,
    caplog: pytest.LogCaptureFixture,
):
    a = device_credentials("a")
    transport = server_transport()
    inbox = Inbox()

    def handler(topic: str, payload: bytes, properties: MessageProperties) -> None:
        if payload == b"poison":
            raise ValueError("cannot digest this")
        inbox(topic, payload, properties)

    transport.set_message_handler(handler)
    transport.subscribe(shared_subscription(Channel.EVENTS))
    device = Recorder(mqtt_client(a))
    events = device_topic(a.username, Channel.EVENTS)
    with caplog.at_level(logging.ERROR, logger="edgefleet.server.mqtt"):
        device.publish(events, b"poison")
        device.publish(events, b"fine")
        assert inbox.next()[1] == b"fine"
    [record] = [r for r in caplog.records if r.name == "edgefleet.server.mqtt"]
    assert record.message == f"message handler failed on {events}"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert transport.connected


def test_request_is_answered_by_correlation_data(
    broker: MosquittoBroker, server_transport, device_credentials, mqtt_client
):
    a = device_credentials("a")
    transport = server_transport()
    device = mqtt_client(a)
    cmd = device_topic(a.username, Channel.CMD)
    events = device_topic(a.username, Channel.EVENTS)

    def respond(client: mqtt.Client, _userdata, message: mqtt.MQTTMessage) -> None:
        asked: Any = message.properties  # paho sets v5 properties as dynamic attributes
        # A stale answer first: the transport must skip it and wait for its own.
        for correlation, payload in [(b"someone else", b"stale"), (asked.CorrelationData, b"pong")]:
            answer: Any = Properties(PacketTypes.PUBLISH)
            answer.CorrelationData = correlation
            client.publish(asked.ResponseTopic, payload, qos=1, properties=answer)

    Recorder(device).subscribe(cmd)
    device.on_message = respond  # after the Recorder, which installs its own
    inbox = Inbox()
    transport.set_message_handler(inbox)

    assert transport.request(cmd, b"ping", events, timeout=TIMEOUT) == b"pong"
    # Answers (and stale ones) stay off the message handler.
    assert inbox.messages.empty()


def test_request_without_an_answer_times_out(
    broker: MosquittoBroker, server_transport, device_credentials
):
    a = device_credentials("a")
    transport = server_transport()
    started = time.monotonic()
    with pytest.raises(BrokerError, match="no answer"):
        transport.request(
            device_topic(a.username, Channel.CMD),
            b"ping",
            device_topic(a.username, Channel.EVENTS),
            timeout=0.3,
        )
    assert time.monotonic() - started < 2


@pytest.mark.broker
def test_reconnects_and_resubscribes_after_the_broker_restarts(caplog: pytest.LogCaptureFixture):
    # A broker of its own: a restart drops every connection, other tests' too.
    with MosquittoBroker(verbose_log=False) as own:
        transport = _transport(own, own.server_credentials)
        transport.start()
        try:
            assert transport.wait_connected(TIMEOUT)
            inbox = Inbox()
            transport.set_message_handler(inbox)
            transport.subscribe(shared_subscription(Channel.TELEMETRY))
            a = own.add_device("dev-restart")

            with caplog.at_level(logging.WARNING, logger="edgefleet.server.mqtt"):
                own.restart()  # returns once the admin's transport is back: >= 1 s
                # paho retries after 1 s first (then 2, 4... up to 60): well within the bound.
                assert transport.wait_connected(TIMEOUT)
            assert any(r.message.startswith("lost broker") for r in caplog.records)
            # Packets of one connection are handled in order: once this SUBACK is
            # back, the re-subscription sent on reconnect is in place too.
            transport.subscribe(shared_subscription(Channel.EVENTS))

            device = own.client(a)  # accounts survive: the plugin keeps them on disk
            try:
                telemetry = device_topic(a.username, Channel.TELEMETRY)
                assert not Recorder(device).publish(telemetry, b"after").is_failure
                assert inbox.next()[:2] == (telemetry, b"after")
                transport.publish(device_topic(a.username, Channel.CMD), b"still-allowed")
            finally:
                device.disconnect()
                device.loop_stop()
        finally:
            transport.stop()


def test_wait_connected_times_out_against_a_closed_port():
    transport = MqttTransport(
        host="127.0.0.1",
        port=free_loopback_port(),  # nothing listens there
        username="nobody",
        password="nothing",
        client_id="test-closed-port",
    )
    transport.start()
    try:
        started = time.monotonic()
        assert not transport.wait_connected(0.3)
        assert 0.3 <= time.monotonic() - started < 1.5
        assert not transport.connected
    finally:
        stopping = time.monotonic()
        transport.stop()
        assert time.monotonic() - stopping < 3  # paho sleeps in the backoff in 1 s steps


def test_a_refused_login_is_logged_and_never_connects(
    broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
):
    transport = _transport(broker, Credentials(broker.server_credentials.username, "wrong"))

    def refusal_logged() -> bool:
        return any("refused the connection: Not authorized" in r.message for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="edgefleet.server.mqtt"):
        transport.start()
        try:
            deadline = time.monotonic() + TIMEOUT
            while not refusal_logged() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert refusal_logged()
            assert not transport.connected
        finally:
            transport.stop()


def test_stop_is_idempotent_and_the_handler_stays_quiet(broker: MosquittoBroker):
    transport = _transport(broker, broker.server_credentials)
    transport.start()
    assert transport.wait_connected(TIMEOUT)
    done = threading.Event()
    transport.set_message_handler(lambda *_: done.set())
    transport.stop()
    transport.stop()
    assert not transport.connected
    assert not done.is_set()
