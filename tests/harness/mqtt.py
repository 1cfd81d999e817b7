"""Blocking, bounded waits over paho's callbacks, so tests read top to bottom."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

TIMEOUT = 5.0

_T = TypeVar("_T")


class Recorder:
    """Records what one connected client receives and the broker's acknowledgements.

    Paho runs callbacks on its network thread while holding its own locks, so
    calls into paho are never made while holding ours.
    """

    def __init__(self, client: mqtt.Client, *, timeout: float = TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout
        self._changed = threading.Condition()
        self._messages: list[mqtt.MQTTMessage] = []
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe

    @property
    def messages(self) -> list[mqtt.MQTTMessage]:
        with self._changed:
            return list(self._messages)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [bytes(m.payload) for m in self.messages if topic is None or m.topic == topic]

    def subscribe(self, *topics: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe in one SUBSCRIBE packet (retained messages arrive in that order)."""
        result, mid = self.client.subscribe([(topic, qos) for topic in topics])
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"subscribe not sent: {mqtt.error_string(result)}")
        return self._wait(lambda: self._subacks.get(mid), f"SUBACK for {topics}")

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> ReasonCode:
        """Publish and return the broker's answer: the PUBACK reason code at QoS 1."""
        if qos != 1:
            raise ValueError("only QoS 1 has an answer to wait for")
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return self._wait(lambda: self._pubacks.get(info.mid), f"PUBACK for {topic}")

    def wait_for(self, topic: str, payload: bytes | None = None) -> mqtt.MQTTMessage:
        """Wait for a message on ``topic`` (with ``payload``, if given)."""

        def arrived() -> mqtt.MQTTMessage | None:
            for message in self._messages:
                if message.topic == topic and payload in (None, message.payload):
                    return message
            return None

        return self._wait(arrived, f"message on {topic} ({payload!r})")

    def _wait(self, found: Callable[[], _T | None], what: str) -> _T:
        deadline = time.monotonic() + self.timeout
        with self._changed:
            while (result := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {self.timeout} s")
                self._changed.wait(left)
            return result

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def _on_publish(
        self, _client: mqtt.Client, _userdata: object, mid: int, reason: ReasonCode, _props: object
    ) -> None:
        with self._changed:
            self._pubacks[mid] = reason
            self._changed.notify_all()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _props: object,
    ) -> None:
        with self._changed:
            self._subacks[mid] = reasons
            self._changed.notify_all()
