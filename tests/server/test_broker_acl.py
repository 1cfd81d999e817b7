"""Broker security on a real Mosquitto with dynamic security: what a device may and may not do.

Absence is only meaningful after something that would have come later has
arrived, so each test sends the forbidden message first, then an allowed one
down the same path, waits for the allowed one, and only then checks that the
forbidden one is missing. Nothing here sleeps and hopes.

Observed on 2.0.11: a denied PUBLISH gets PUBACK 135; a denied filter gets
SUBACK 135 in its slot (the others in the same SUBSCRIBE are still granted);
a bad login gets CONNACK 135; revoking, disabling or re-provisioning a device
sends its live MQTT v5 connections DISCONNECT 152 and closes them, before the
admin's command is answered.
"""

from __future__ import annotations

import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.server.errors import NotFoundError
from edgefleet.shared.topics import (
    DEVICE_READS,
    DEVICE_WRITES,
    Channel,
    all_artifacts_filter,
    artifact_filter,
    artifact_topic,
    channel_filter,
    device_topic,
    shared_subscription,
)
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.mqtt import TIMEOUT, Recorder

NOT_AUTHORIZED = 135
"""MQTT v5 reason code: mosquitto 2.0's answer to a denied CONNECT, PUBLISH or SUBSCRIBE."""
ADMINISTRATIVE_ACTION = 152
"""MQTT v5 DISCONNECT reason: dynamic security kicked the client."""
SHA = "c0ffee" + "0" * 58


def mosquitto_pub(broker: MosquittoBroker, who: Credentials, topic: str, payload: str) -> str:
    """Publish at QoS 1 with the command-line client, as a rogue script would; return stderr.

    QoS 1 makes it wait for the PUBACK, so when it returns the broker has
    already routed (or dropped) the message. It exits 0 even when denied.
    """
    result = subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1",
         "-u", who.username, "-P", who.password, "-t", topic, "-m", payload],
        capture_output=True, text=True, timeout=5, check=True,
    )  # fmt: skip
    return result.stderr


def test_device_cannot_publish_telemetry_as_another_device(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a, b = device_credentials("a"), device_credentials("b")
    server = Recorder(mqtt_client(broker.server_credentials))
    [granted] = server.subscribe(shared_subscription(Channel.TELEMETRY))
    assert not granted.is_failure

    rogue = mosquitto_pub(broker, a, device_topic(b.username, Channel.TELEMETRY), "rogue")
    assert "Not authorized" in rogue
    mosquitto_pub(broker, a, device_topic(a.username, Channel.TELEMETRY), "legit")

    server.wait_for(device_topic(a.username, Channel.TELEMETRY), b"legit")
    assert server.payloads() == [b"legit"]


@pytest.mark.parametrize("channel", sorted(DEVICE_WRITES))
def test_device_writes_its_own_channels_only(
    broker: MosquittoBroker, device_credentials, mqtt_client, channel: Channel
):
    a, b = device_credentials("a"), device_credentials("b")
    server = Recorder(mqtt_client(broker.server_credentials))
    server.subscribe(shared_subscription(channel))
    device = Recorder(mqtt_client(a))

    assert device.publish(device_topic(b.username, channel), b"rogue").value == NOT_AUTHORIZED
    assert not device.publish(device_topic(a.username, channel), b"legit").is_failure

    server.wait_for(device_topic(a.username, channel), b"legit")
    # Only these two devices' topics: the session broker may hold other tests' retained state.
    assert server.payloads(device_topic(a.username, channel)) == [b"legit"]
    assert server.payloads(device_topic(b.username, channel)) == []


@pytest.mark.parametrize("channel", sorted(DEVICE_READS))
def test_device_cannot_write_what_only_the_server_may(
    broker: MosquittoBroker, device_credentials, mqtt_client, channel: Channel
):
    a = device_credentials("a")
    own_topic = device_topic(a.username, channel)
    device = Recorder(mqtt_client(a))
    device.subscribe(own_topic)
    server = Recorder(mqtt_client(broker.server_credentials))

    assert device.publish(own_topic, b"forged").value == NOT_AUTHORIZED
    assert not server.publish(own_topic, b"from-server").is_failure

    device.wait_for(own_topic, b"from-server")
    assert device.payloads() == [b"from-server"]


def test_retained_desired_reaches_only_its_device(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a, b = device_credentials("a"), device_credentials("b")
    desired_a = device_topic(a.username, Channel.DESIRED)
    desired_b = device_topic(b.username, Channel.DESIRED)
    server = Recorder(mqtt_client(broker.server_credentials))
    server.publish(desired_b, b"for-b", retain=True)
    server.publish(desired_a, b"for-a", retain=True)

    spy = Recorder(mqtt_client(a))
    # One SUBSCRIBE queues retained messages in filter order, so B's would
    # come before A's own if the broker granted those filters.
    granted = spy.subscribe(desired_b, "ef/v1/d/+/desired", desired_a)
    assert [reason.value for reason in granted] == [NOT_AUTHORIZED, NOT_AUTHORIZED, 1]
    spy.wait_for(desired_a, b"for-a")
    assert desired_b not in {m.topic for m in spy.messages}

    owner = Recorder(mqtt_client(b))
    owner.subscribe(desired_b)
    assert owner.wait_for(desired_b, b"for-b").retain
    for topic in (desired_a, desired_b):
        server.publish(topic, b"", retain=True)


def test_device_wildcard_subscription_is_refused_and_sees_nothing(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a, b = device_credentials("a"), device_credentials("b")
    spy = Recorder(mqtt_client(a))
    own_cmd = device_topic(a.username, Channel.CMD)
    granted = spy.subscribe("#", "ef/v1/#", own_cmd)
    assert [reason.value for reason in granted] == [NOT_AUTHORIZED, NOT_AUTHORIZED, 1]
    other = Recorder(mqtt_client(b))
    server = Recorder(mqtt_client(broker.server_credentials))

    assert not other.publish(device_topic(b.username, Channel.TELEMETRY), b"b-data").is_failure
    server.publish(device_topic(b.username, Channel.CMD), b"b-cmd")
    server.publish(own_cmd, b"a-cmd")

    spy.wait_for(own_cmd, b"a-cmd")
    assert [m.topic for m in spy.messages] == [own_cmd]


def test_devices_fetch_artifact_chunks_but_cannot_plant_them(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a = device_credentials("a")
    server = Recorder(mqtt_client(broker.server_credentials))
    server.publish(artifact_topic(SHA, 0), b"chunk-0", retain=True)
    device = Recorder(mqtt_client(a))

    assert device.publish(artifact_topic(SHA, 1), b"planted").value == NOT_AUTHORIZED
    device.subscribe(artifact_filter(SHA))
    assert device.wait_for(artifact_topic(SHA, 0), b"chunk-0").retain
    server.publish(artifact_topic(SHA, 2), b"chunk-2")
    device.wait_for(artifact_topic(SHA, 2), b"chunk-2")
    assert device.payloads() == [b"chunk-0", b"chunk-2"]
    server.publish(artifact_topic(SHA, 0), b"", retain=True)  # an empty retained clears it


@pytest.mark.parametrize(
    "who", ["wrong-password", "unknown-user", "anonymous", "server-name-wrong-password"]
)
def test_broker_refuses_bad_credentials(broker: MosquittoBroker, device_credentials, who: str):
    device = device_credentials()
    credentials = {
        "wrong-password": Credentials(device.username, device.password + "x"),
        "unknown-user": Credentials("dev-never-provisioned", device.password),
        "anonymous": None,
        "server-name-wrong-password": Credentials(broker.server_credentials.username, "guess"),
    }[who]
    # 135 "Not authorized", not 134 "Bad user name or password": 2.0.11 does not say which.
    assert broker.connack(credentials).value == NOT_AUTHORIZED


class Dropped:
    """Records the moment the broker closes one client's connection, and why."""

    def __init__(self, client: mqtt.Client) -> None:
        self.event = threading.Event()
        self.reasons: list[ReasonCode] = []
        client.on_disconnect = self._on_disconnect

    def wait(self) -> ReasonCode:
        assert self.event.wait(TIMEOUT), "the broker kept the connection open"
        return self.reasons[0]

    def _on_disconnect(self, _client, _userdata, _flags, reason: ReasonCode, _props) -> None:
        self.reasons.append(reason)
        self.event.set()


def test_revoked_device_is_dropped_at_once_and_cannot_reconnect(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a = device_credentials("a")
    dropped = Dropped(mqtt_client(a))

    broker.remove_device(a.username)

    assert dropped.wait().value == ADMINISTRATIVE_ACTION
    assert broker.connack(a).value == NOT_AUTHORIZED
    assert not broker.accounts.device_exists(a.username)


def test_revoking_twice_or_an_unknown_device_is_fine(broker: MosquittoBroker, device_credentials):
    a = device_credentials("a")
    broker.remove_device(a.username)
    broker.remove_device(a.username)
    broker.accounts.revoke_device("never-provisioned")
    assert not broker.accounts.device_exists("never-provisioned")


def test_disabled_device_is_dropped_and_reprovisioning_lets_it_back(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a = device_credentials("a")
    dropped = Dropped(mqtt_client(a))

    broker.accounts.disable_device(a.username)

    assert dropped.wait().value == ADMINISTRATIVE_ACTION
    assert broker.connack(a).value == NOT_AUTHORIZED
    assert broker.accounts.device_exists(a.username)
    again = broker.add_device(a.username)
    assert broker.connack(again).value == 0


def test_disabling_an_unknown_device_is_not_found(broker: MosquittoBroker):
    with pytest.raises(NotFoundError):
        broker.accounts.disable_device("never-provisioned")


def test_reprovisioning_rotates_the_password(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    old = device_credentials("a")
    dropped = Dropped(mqtt_client(old))

    new = broker.add_device(old.username)

    assert new.password != old.password
    assert (
        dropped.wait().value == ADMINISTRATIVE_ACTION
    )  # a session opened with the old password does not outlive it
    assert broker.connack(old).value == NOT_AUTHORIZED
    device = Recorder(mqtt_client(new))
    # The rebuilt role is the device's own, not a wider one.
    assert not device.publish(device_topic(new.username, Channel.STATE), b"up").is_failure
    [refused] = device.subscribe(channel_filter(Channel.STATE))
    assert refused.value == NOT_AUTHORIZED


def test_devices_are_listed_and_the_service_accounts_are_not(
    broker: MosquittoBroker, device_credentials
):
    a = device_credentials("a")
    listed = broker.accounts.list_devices()
    assert a.username in listed
    assert broker.server_credentials.username not in listed
    assert broker.admin_credentials.username not in listed


@pytest.mark.parametrize(
    "topic_filter",
    [
        *(shared_subscription(channel) for channel in sorted(Channel)),
        shared_subscription(Channel.TELEMETRY, group="thieves"),
        channel_filter(Channel.TELEMETRY),
        channel_filter(Channel.DESIRED),
        "#",
        "ef/v1/#",
        "ef/v1/d/#",
        "+/+/+/+/+",
        "$SYS/#",
        "$CONTROL/dynamic-security/#",
        "$CONTROL/dynamic-security/v1/response",
    ],
)
def test_device_cannot_subscribe_beyond_what_it_reads(
    broker: MosquittoBroker, device_credentials, mqtt_client, topic_filter: str
):
    device = Recorder(mqtt_client(device_credentials("a")))
    [reason] = device.subscribe(topic_filter)
    assert reason.value == NOT_AUTHORIZED


@pytest.mark.parametrize("channel", sorted(DEVICE_WRITES))
def test_device_cannot_read_back_what_it_writes(
    broker: MosquittoBroker, device_credentials, mqtt_client, channel: Channel
):
    a = device_credentials("a")
    device = Recorder(mqtt_client(a))
    [reason] = device.subscribe(device_topic(a.username, channel))
    assert reason.value == NOT_AUTHORIZED


def test_device_subscribes_to_everything_it_reads(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a = device_credentials("a")
    device = Recorder(mqtt_client(a))
    own = [device_topic(a.username, channel) for channel in sorted(DEVICE_READS)]
    granted = device.subscribe(*own, all_artifacts_filter(), artifact_filter(SHA))
    assert [reason.value for reason in granted] == [1] * (len(own) + 2)


def test_server_can_do_what_the_server_needs(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a = device_credentials("a")
    server = Recorder(mqtt_client(broker.server_credentials))
    reports = sorted(DEVICE_WRITES)
    filters = [shared_subscription(c) for c in reports] + [channel_filter(c) for c in reports]
    assert [reason.value for reason in server.subscribe(*filters)] == [1] * len(filters)

    desired = device_topic(a.username, Channel.DESIRED)
    # 16 "No matching subscribers" is a success: the retained copy waits for the device.
    assert server.publish(desired, b"deploy", retain=True).value == 16
    assert not server.publish(device_topic(a.username, Channel.CMD), b"ping").is_failure
    assert not server.publish(artifact_topic(SHA, 3), b"chunk-3", retain=True).is_failure
    device = Recorder(mqtt_client(a))
    device.subscribe(desired, artifact_filter(SHA))
    assert device.wait_for(desired, b"deploy").retain
    assert device.wait_for(artifact_topic(SHA, 3), b"chunk-3").retain
    server.publish(desired, b"", retain=True)
    server.publish(artifact_topic(SHA, 3), b"", retain=True)


@pytest.mark.parametrize(
    ("action", "topic"),
    [
        ("publish", device_topic("dev-x", Channel.TELEMETRY)),
        ("publish", device_topic("dev-x", Channel.STATE)),
        ("publish", "$CONTROL/dynamic-security/v1"),
        ("publish", "elsewhere"),
        ("subscribe", "#"),
        ("subscribe", "$CONTROL/dynamic-security/#"),
        ("subscribe", channel_filter(Channel.CMD)),
    ],
)
def test_server_is_confined_to_its_own_job(
    broker: MosquittoBroker, mqtt_client, action: str, topic: str
):
    server = Recorder(mqtt_client(broker.server_credentials))
    if action == "publish":
        assert server.publish(topic, b"x").value == NOT_AUTHORIZED
    else:
        [reason] = server.subscribe(topic)
        assert reason.value == NOT_AUTHORIZED


def test_mqtt311_denied_publish_is_acked_as_success(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    # MQTT 3.1.1 has no reason codes: the device cannot tell it was denied.
    # Agents must not treat a PUBACK as proof of delivery.
    a, b = device_credentials("a"), device_credentials("b")
    device = Recorder(mqtt_client(a, protocol=mqtt.MQTTv311))
    assert device.publish(device_topic(b.username, Channel.TELEMETRY), b"rogue").value == 0


def test_device_cannot_join_the_servers_share_group_and_swallow_ingest(
    broker: MosquittoBroker, device_credentials, mqtt_client
):
    a, thief_id = device_credentials("a"), device_credentials("thief")
    telemetry = device_topic(a.username, Channel.TELEMETRY)
    barrier = device_topic(a.username, Channel.EVENTS)
    server = Recorder(mqtt_client(broker.server_credentials))
    server.subscribe(shared_subscription(Channel.TELEMETRY), shared_subscription(Channel.EVENTS))
    thief = Recorder(mqtt_client(thief_id))
    [refused] = thief.subscribe(shared_subscription(Channel.TELEMETRY))
    assert refused.value == NOT_AUTHORIZED
    device = Recorder(mqtt_client(a))

    sent = [f"reading-{i}".encode() for i in range(4)]
    for payload in sent:
        assert not device.publish(telemetry, payload).is_failure
    # Same publisher, same subscribing session, and only the server is in the
    # events group: the barrier arrives after every reading that reached it.
    assert not device.publish(barrier, b"barrier").is_failure
    server.wait_for(barrier, b"barrier")

    assert thief.payloads() == []
    assert server.payloads(telemetry) == sent
