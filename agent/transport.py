"""The agent's MQTT connection: the one agent module that imports paho.

It owns connecting (jittered exponential backoff, see :mod:`.backoff`), TLS,
the last will, subscriptions (re-sent on every connect: each connect starts
a clean session) and QoS 1 acknowledgements, and maps paho's return and
reason codes to :class:`~edgefleet.agent.errors.TransportError`
(:func:`_transport_error`). Everything else speaks in topics and bytes.

A connection normally runs on its own network thread. Given an
:class:`ExternalLoop`, it runs on that loop's thread instead, through paho's
external-loop calls: the fleet simulator drives thousands of agents' sockets
from one thread per process that way, where a thread per connection would
not fit.

Nothing here blocks paho's network thread: every callback turns what
happened into a :data:`TransportEvent` and hands it to ``sink``, which must
only enqueue (the agent's own thread does the work). A publish is tracked by
its message id: the :class:`Acked` event for it arrives once the broker's
PUBACK does, which is when the outbox may forget the message. A QoS 1
message in flight when the connection drops is sent again by paho on the
next connect, with the same id, so the agent never re-publishes it itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.errors import AgentConfigError, TransportError

log = logging.getLogger(__name__)

QOS = 1


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retained: bool


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker's answer to publish ``mid``; ``ok`` is False for a refusal (e.g. ACL)."""

    mid: int
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


TransportEvent = Received | Acked | Connected | Disconnected
Sink = Callable[[TransportEvent], None]
WillFactory = Callable[[], tuple[str, bytes]]
"""``() -> (topic, payload)`` of the retained last will, asked for before every connect."""


class ExternalLoop(Protocol):
    """Runs the network I/O of many connections on one thread (see :meth:`MqttTransport.start`).

    The loop connects an attached transport with :meth:`MqttTransport.connect_once`,
    services its :attr:`MqttTransport.client` with paho's ``loop_read``,
    ``loop_write`` and ``loop_misc``, and reconnects it after
    :meth:`MqttTransport.retry_delay` until it is detached.
    """

    def attach(self, transport: MqttTransport) -> None: ...
    def detach(self, transport: MqttTransport) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str
    password: str
    client_id: str
    keepalive: int = 30
    tls_ca: str | None = None


class MqttTransport:
    """One MQTT v5 connection that keeps itself up until :meth:`stop`."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        sink: Sink,
        will: WillFactory,
        backoff: Backoff | None = None,
        loop: ExternalLoop | None = None,
    ) -> None:
        self._address = address
        self._loop = loop
        self._sink = sink
        self._will = will
        self._backoff = backoff or Backoff()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=address.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self._client.username_pw_set(address.username, address.password)
        if address.tls_ca is not None:
            try:
                self._client.tls_set(ca_certs=address.tls_ca)
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                raise AgentConfigError(f"unusable broker.tls_ca {address.tls_ca}: {err}") from err
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._subscriptions: set[str] = set()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def client(self) -> mqtt.Client:
        """The paho client, for an :class:`ExternalLoop` to service."""
        return self._client

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        """Connect in the background and keep reconnecting until :meth:`stop`."""
        self._stopping.clear()
        if self._loop is not None:
            self._loop.attach(self)
            return
        self._thread = threading.Thread(target=self._run, name="edgefleet-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly: the broker then keeps the last will to itself."""
        self._stopping.set()
        self._client.disconnect()
        if self._loop is not None:
            self._loop.detach(self)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self._connected.clear()

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe now if connected, and again on every reconnect."""
        with self._lock:
            self._subscriptions.add(topic_filter)
        if self.connected:
            result, _mid = self._client.subscribe(topic_filter, QOS)
            if result not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise _transport_error(f"subscribe to {topic_filter}", result)

    def unsubscribe(self, topic_filter: str) -> None:
        with self._lock:
            if topic_filter not in self._subscriptions:
                return
            self._subscriptions.discard(topic_filter)
        if self.connected:
            self._client.unsubscribe(topic_filter)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Queue a QoS 1 publish; return its id, which a later :class:`Acked` names.

        While disconnected paho keeps the message and sends it after the next
        connect, so a publish is never lost between here and the broker.
        """
        try:
            info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        except ValueError as err:  # paho's answer to a bad topic or an oversized payload
            raise TransportError(f"cannot publish to {topic!r}: {err}") from err
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise _transport_error(f"publish to {topic}", info.rc)
        return info.mid

    # -- the connection thread -----------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self.connect_once():
                if self._stopping.is_set():  # stop() came while connect() was blocking
                    self._client.disconnect()
                self._client.loop_forever()
            if self._stopping.wait(self.retry_delay()):
                return

    def connect_once(self) -> bool:
        """One connection attempt (the TCP connect blocks); False, logged, if it failed."""
        try:
            topic, payload = self._will()
            self._client.will_set(topic, payload, qos=QOS, retain=True)
            self._client.connect(
                self._address.host,
                self._address.port,
                self._address.keepalive,
                clean_start=True,
            )
        except OSError as err:
            # The text, not the error: a log record kept by a handler would keep the
            # error's frames alive, and with them the socket paho leaves open on a
            # failed TLS handshake.
            reason = str(err)
            log.warning(
                "cannot reach broker %s:%d: %s", self._address.host, self._address.port, reason
            )
            return False
        return True

    def retry_delay(self) -> float:
        """Seconds to wait before the next attempt (jittered, growing while attempts fail)."""
        return self._backoff.next_delay()

    def _emit(self, event: TransportEvent) -> None:
        """Hand ``event`` to the sink; what it raises is logged, never thrown into paho."""
        try:
            self._sink(event)
        except Exception:
            log.exception("transport sink failed on %s", type(event).__name__)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self._backoff.reset()
        with self._lock:
            filters = sorted(self._subscriptions)
        if filters:
            client.subscribe([(f, QOS) for f in filters])
        log.info("connected to broker %s:%d", self._address.host, self._address.port)
        self._connected.set()
        self._emit(Connected())

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            if not self._stopping.is_set():
                log.warning("lost the broker (%s); reconnecting", reason)
            self._emit(Disconnected(str(reason)))

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        self._emit(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._emit(Acked(mid, not reason.is_failure, str(reason) if reason.is_failure else ""))

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties,
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error("broker refused a subscription (mid %d): %s", mid, reason)


def _transport_error(what: str, code: MQTTErrorCode) -> TransportError:
    """The one place paho's return codes become our errors."""
    return TransportError(f"{what}: {mqtt.error_string(code)}")
