"""The server's MQTT connection: the one server module that imports paho.

It owns connect and reconnect (exponential backoff, 1 s to 60 s), TLS,
subscriptions (re-sent on every connect: each connect starts a clean
session), QoS acknowledgements and the mapping of paho's return and reason
codes to :class:`~edgefleet.server.errors.BrokerError` (:func:`_broker_error`).
Everything else gets a :class:`MqttTransport` passed in and speaks bytes.

Paho runs its callbacks on its network thread while holding its own locks, so
nothing here calls into paho while holding a lock that a callback takes, and
acknowledgements are collected in :class:`_Acks` whichever comes first: the
ack or the waiter.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.server.errors import BrokerError, ConfigError

logger = logging.getLogger(__name__)

_A = TypeVar("_A")

MAX_INFLIGHT = 1000
"""QoS 1 publishes on the wire before their PUBACKs; paho's default of 20 makes a
fan-out of hundreds of chunks wait one round trip per 20. The fleet's broker
announces a receive maximum of 2,000 (:mod:`edgefleet.server.mosquitto`)."""

OutgoingMessage = tuple[str, bytes, bool]
"""``(topic, payload, retain)`` for :meth:`MqttTransport.publish_many`."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """CA bundle to verify the broker; client certificate and key for mutual TLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class MessageProperties:
    """What arrived with a message besides topic and payload (MQTT v5 properties, retain)."""

    retain: bool = False
    mid: int = 0
    qos: int = 0
    """With ``manual_ack``: what :meth:`MqttTransport.ack` needs once the message is safe."""
    correlation_data: bytes | None = None
    response_topic: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


MessageHandler = Callable[[str, bytes, MessageProperties], None]
"""``handler(topic, payload, properties)``; runs on paho's network thread."""

ResponseMatcher = Callable[[bytes], bool]
"""Recognises an answer by its payload, for responders that drop MQTT v5 correlation data."""


class MqttTransport:
    """One MQTT v5 connection that keeps itself up.

    Built once in the composition root and passed to whatever publishes or
    subscribes. :meth:`start` returns at once; :meth:`wait_connected` bounds
    the wait for the first CONNACK.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        tls: TlsSettings | None = None,
        keepalive: int = 30,
        min_reconnect_delay: int = 1,
        max_reconnect_delay: int = 60,
        session_expiry: int = 0,
        manual_ack: bool = False,
    ) -> None:
        """``session_expiry`` > 0 keeps the session (and QoS 1 messages for it) on the
        broker that long after a disconnect, under a ``client_id`` that must then be
        stable; ``manual_ack`` leaves PUBACKs to :meth:`ack`, so a message the handler
        took but did not secure is redelivered after a crash instead of lost.
        """
        self._host, self._port, self._keepalive = host, port, keepalive
        self._session_expiry = session_expiry
        self._manual_ack = manual_ack
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        self._client.username_pw_set(username, password)
        if tls is not None:
            try:
                self._client.tls_set(
                    ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file
                )
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                raise ConfigError(f"unusable MQTT TLS settings: {err}") from err
        self._client.reconnect_delay_set(min_reconnect_delay, max_reconnect_delay)
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        self._receive_maximum = MAX_INFLIGHT  # lowered to what the broker's CONNACK announces
        # Not paho's enable_logger: 2.2 logs every idle loop pass while disconnected as an error.
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._answers_setup = threading.Lock()
        self._connected = threading.Event()
        self._stopping = False
        self._subscriptions: dict[str, int] = {}  # filter -> QoS, re-sent on every connect
        self._response_topics: set[str] = set()
        self._pending: list[_Pending] = []
        self._handler: MessageHandler | None = None
        self._pubacks: _Acks[ReasonCode] = _Acks("PUBLISH", lambda rc: rc.is_failure)
        self._subacks: _Acks[list[ReasonCode]] = _Acks(
            "SUBSCRIBE", lambda rcs: any(rc.is_failure for rc in rcs)
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; retries until :meth:`stop`, refused logins included."""
        self._stopping = False
        properties = None
        if self._session_expiry:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's
            properties.SessionExpiryInterval = self._session_expiry
        self._client.connect_async(
            self._host,
            self._port,
            self._keepalive,
            clean_start=not self._session_expiry,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message taken with ``manual_ack`` (safe from any thread)."""
        if qos > 0 and self._manual_ack:
            self._client.ack(mid, qos)

    def set_message_handler(self, handler: MessageHandler | None) -> None:
        """Route every message (but answers to :meth:`request`) to ``handler``.

        It runs on paho's network thread and MUST NOT block: while it runs,
        no acknowledgement, keepalive or other message is processed. Hand the
        message to a queue and return. What it raises is logged, not re-raised,
        so one bad message cannot stop the connection.
        """
        self._handler = handler

    def subscribe(self, topic_filter: str, qos: int = 1, *, timeout: float | None = 5.0) -> None:
        """Subscribe now if connected and on every later (re)connect.

        With a ``timeout`` and a live connection, waits for the SUBACK and
        raises :class:`BrokerError` if the broker refuses (the filter is then
        forgotten). Refusals of later re-subscriptions are logged.
        """
        with self._lock:
            self._subscriptions[topic_filter] = qos
        if not self.connected:
            return
        result, mid = self._client.subscribe(topic_filter, qos)
        if result is MQTTErrorCode.MQTT_ERR_NO_CONN or mid is None:
            return  # lost meanwhile: on_connect sends it
        if result is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _broker_error(f"subscribe to {topic_filter}", result)
        if timeout is None:
            self._subacks.abandon(mid)
            return
        reasons = self._subacks.wait(mid, timeout)
        reason = reasons[0] if reasons else None
        if reason is None or reason.is_failure:
            with self._lock:
                self._subscriptions.pop(topic_filter, None)
            raise _broker_error(f"subscribe to {topic_filter}", reason, timeout)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = 5.0,
    ) -> None:
        """Publish; with a ``timeout`` and QoS > 0, return only once the broker acknowledged.

        Raises :class:`BrokerError` when the broker refuses (reason code >=
        128, e.g. 135 for a topic our ACL does not allow) or does not answer
        in time. A timed-out QoS 1 message stays queued and may still arrive.
        """
        self._publish(topic, payload, qos=qos, retain=retain, timeout=timeout)

    def publish_many(
        self, messages: Iterable[OutgoingMessage], *, qos: int = 1, timeout: float
    ) -> None:
        """Publish every ``(topic, payload, retain)``; return once the broker acknowledged all.

        Waiting for each PUBACK in turn would cost a round trip per message;
        here a window of up to :data:`MAX_INFLIGHT` (or the broker's receive
        maximum, if lower) stays in flight and slides as acknowledgements
        come, so ``messages`` may be a generator (an artifact read chunk by
        chunk) and memory stays bounded. A refusal does not stop the rest;
        ``timeout`` bounds the whole batch, and past it nothing more is sent.
        Then :class:`BrokerError` says how many were not acknowledged and why
        the first was not. What ``messages`` raises propagates unchanged.
        """
        deadline = time.monotonic() + timeout
        window: deque[tuple[str, int]] = deque()
        failures: list[tuple[str, ReasonCode | None]] = []  # (topic, refusal or no answer)
        sent = 0
        stopped = False
        try:
            for topic, payload, retain in messages:
                while len(window) >= self._receive_maximum:
                    failures += self._settle(*window.popleft(), deadline)
                if time.monotonic() >= deadline:
                    stopped = True
                    break
                mid = self._send(topic, payload, qos=qos, retain=retain)
                sent += 1
                if qos > 0:
                    window.append((topic, mid))
            while window:
                failures += self._settle(*window.popleft(), deadline)
        finally:
            for _topic, mid in window:  # left by an exception: their acks are nobody's
                self._pubacks.abandon(mid)
        if failures or stopped:
            topic, refusal = failures[0] if failures else ("", None)
            first = _broker_error(f"publish to {topic}", refusal, timeout) if failures else None
            raise BrokerError(
                f"{len(failures)} of {sent} messages not acknowledged within {timeout} s"
                + ("; stopped sending at the deadline" if stopped else "")
                + (f" (first: {first})" if first else ""),
                reason="broker_refused" if any(r is not None for _, r in failures) else None,
            )

    def _settle(self, topic: str, mid: int, deadline: float) -> list[tuple[str, ReasonCode | None]]:
        """Wait for one PUBACK of :meth:`publish_many`: ``[]`` if it came and says yes."""
        reason = self._pubacks.wait(mid, _left(deadline))
        return [] if reason is not None and not reason.is_failure else [(topic, reason)]

    def request(
        self,
        topic: str,
        payload: bytes,
        response_topic: str,
        *,
        timeout: float = 5.0,
        matches: ResponseMatcher | None = None,
    ) -> bytes:
        """Publish a request and return the payload of its answer on ``response_topic``.

        The request carries MQTT v5 ``ResponseTopic`` and a fresh
        ``CorrelationData``; an answer is the first message on
        ``response_topic`` that echoes that correlation data or for which
        ``matches(payload)`` is true (``matches`` runs on the network thread).
        Messages on a response topic never reach the message handler.
        """
        deadline = time.monotonic() + timeout
        if not self.wait_connected(timeout):
            raise _broker_error(f"request on {topic}", None, timeout)
        self._listen_for_answers(response_topic, _left(deadline))
        pending = _Pending(response_topic, secrets.token_bytes(16), matches)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho's
        properties.ResponseTopic = response_topic
        properties.CorrelationData = pending.correlation_data
        with self._lock:
            self._pending.append(pending)
        try:
            self._publish(topic, payload, qos=1, timeout=_left(deadline), properties=properties)
            if not pending.answered.wait(_left(deadline)) or pending.answer is None:
                raise _broker_error(f"answer on {response_topic}", None, timeout)
            return pending.answer
        finally:
            with self._lock:
                if pending in self._pending:
                    self._pending.remove(pending)

    def _listen_for_answers(self, response_topic: str, timeout: float) -> None:
        """Subscribe to ``response_topic`` once; a request is only sent after its SUBACK."""
        with self._answers_setup:  # no callback takes this lock: paho may be called under it
            if response_topic in self._response_topics:
                return
            with self._lock:
                self._response_topics.add(response_topic)
            try:
                self.subscribe(response_topic, 1, timeout=timeout)
            except BrokerError:
                with self._lock:
                    self._response_topics.discard(response_topic)
                raise

    def _publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        timeout: float | None,
        properties: Properties | None = None,
    ) -> None:
        mid = self._send(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos == 0:
            return
        if timeout is None:
            self._pubacks.abandon(mid)
            return
        reason = self._pubacks.wait(mid, timeout)
        if reason is None or reason.is_failure:
            raise _broker_error(f"publish to {topic}", reason, timeout)

    def _send(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Properties | None = None,
    ) -> int:
        """Hand one message to paho; its packet id, for the PUBACK wait."""
        try:
            info = self._client.publish(
                topic, payload, qos=qos, retain=retain, properties=properties
            )
        except ValueError as err:  # paho's answer to a wildcard topic or an oversized payload
            raise BrokerError(f"cannot publish to {topic!r}: {err}") from err
        # NO_CONN at QoS > 0 means queued until the reconnect, where the ack wait goes on.
        if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS and (
            qos == 0 or info.rc is not MQTTErrorCode.MQTT_ERR_NO_CONN
        ):
            raise _broker_error(f"publish to {topic}", info.rc)
        return info.mid

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.warning(
                "broker %s:%d refused the connection: %s", self._host, self._port, reason
            )
            return
        announced = getattr(properties, "ReceiveMaximum", None)
        self._receive_maximum = (
            min(MAX_INFLIGHT, announced)
            if isinstance(announced, int) and announced > 0
            else MAX_INFLIGHT
        )
        with self._lock:
            subscriptions = list(self._subscriptions.items())
        if subscriptions:
            result, mid = client.subscribe(subscriptions)
            if result is MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._subacks.abandon(mid)  # refusals get logged when the SUBACK comes
        logger.info("connected to broker %s:%d", self._host, self._port)
        self._connected.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        logger.warning("cannot reach broker %s:%d; retrying", self._host, self._port)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stopping:
            logger.warning("lost broker %s:%d (%s); reconnecting", self._host, self._port, reason)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._pubacks.arrived(mid, reason)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties,
    ) -> None:
        self._subacks.arrived(mid, reasons)

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        topic, payload = message.topic, bytes(message.payload)
        properties = _message_properties(message)
        with self._lock:
            is_answer = topic in self._response_topics
            waiting = [p for p in self._pending if p.response_topic == topic]
        if is_answer:
            self.ack(message.mid, message.qos)
            for pending in waiting:
                if pending.take(payload, properties.correlation_data):
                    return
            return
        handler = self._handler
        if handler is None:
            # Not acknowledged under manual_ack: the broker delivers it again
            # to the next session instead of it being dropped here.
            return
        try:
            handler(topic, payload, properties)
        except Exception:
            logger.exception("message handler failed on %s", topic)
            self.ack(message.mid, message.qos)


class _Pending:
    """One :meth:`MqttTransport.request` waiting for its answer."""

    def __init__(
        self, response_topic: str, correlation_data: bytes, matches: ResponseMatcher | None
    ) -> None:
        self.response_topic = response_topic
        self.correlation_data = correlation_data
        self.answered = threading.Event()
        self.answer: bytes | None = None
        self._matches = matches

    def take(self, payload: bytes, correlation_data: bytes | None) -> bool:
        if self.answered.is_set():
            return False
        try:
            ours = correlation_data == self.correlation_data or (
                self._matches is not None and self._matches(payload)
            )
        except Exception:
            logger.exception("response matcher failed on %s", self.response_topic)
            return False
        if ours:
            self.answer = payload
            self.answered.set()
        return ours


class _Acks(Generic[_A]):
    """Acknowledgements by packet id, whether the waiter or the ack comes first.

    An ack nobody will wait for (``abandon``) is dropped on arrival, and
    logged if it is a refusal, so the table does not grow.
    """

    def __init__(self, what: str, refused: Callable[[_A], bool]) -> None:
        self._what = what
        self._refused = refused
        self._changed = threading.Condition()
        self._arrived: dict[int, _A] = {}
        self._abandoned: set[int] = set()

    def arrived(self, mid: int, ack: _A) -> None:
        with self._changed:
            if mid not in self._abandoned:
                self._arrived[mid] = ack
                self._changed.notify_all()
                return
            self._abandoned.discard(mid)
        self._log_refusal(mid, ack)

    def wait(self, mid: int, timeout: float) -> _A | None:
        with self._changed:
            if self._changed.wait_for(lambda: mid in self._arrived, timeout):
                return self._arrived.pop(mid)
            self._abandoned.add(mid)
            return None

    def abandon(self, mid: int) -> None:
        with self._changed:
            if mid not in self._arrived:
                self._abandoned.add(mid)
                return
            ack = self._arrived.pop(mid)
        self._log_refusal(mid, ack)

    def _log_refusal(self, mid: int, ack: _A) -> None:
        if self._refused(ack):
            logger.warning("broker refused %s (mid %d): %s", self._what, mid, ack)


def _broker_error(
    what: str, code: MQTTErrorCode | ReasonCode | None, timeout: float | None = None
) -> BrokerError:
    """The one place paho's return codes and MQTT reason codes become our errors."""
    if isinstance(code, ReasonCode):
        return BrokerError(
            f"{what}: broker answered {code} ({code.value})", reason="broker_refused"
        )
    if isinstance(code, MQTTErrorCode):
        return BrokerError(f"{what}: {mqtt.error_string(code)}")
    return BrokerError(f"{what}: no answer from the broker within {timeout} s")


def _message_properties(message: mqtt.MQTTMessage) -> MessageProperties:
    properties = message.properties
    correlation = getattr(properties, "CorrelationData", None)
    response_topic = getattr(properties, "ResponseTopic", None)
    return MessageProperties(
        retain=bool(message.retain),
        mid=message.mid,
        qos=message.qos,
        correlation_data=bytes(correlation) if correlation is not None else None,
        response_topic=response_topic if isinstance(response_topic, str) else None,
        user_properties=tuple(getattr(properties, "UserProperty", None) or ()),
    )


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
