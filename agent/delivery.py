"""From the outbox to the broker, at least once, and what goes into the outbox.

:class:`Delivery` hands the oldest pending messages to the transport while
it is connected, remembers which broker message id carries which outbox
row, and deletes a row only when its PUBACK comes back. A message whose
PUBACK is lost with the connection is re-sent by the transport after the
reconnect under the same id, so nothing is published twice by the agent
itself; after an agent restart the outbox still holds every unacknowledged
message and sends it again (the server drops repeated ``seq`` values).

A PUBACK that refuses a message (the broker's ACL, a payload it will not
take) will refuse it again: the message is dropped, logged and counted
rather than retried forever ahead of everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from edgefleet.agent.outbox import Outbox
from edgefleet.shared.messages import Drift, Event, Telemetry, TelemetryWindow, encode
from edgefleet.shared.topics import Channel, device_topic

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 100
"""Messages handed to the transport and not yet acknowledged: bounds paho's memory."""
WINDOWS_PER_MESSAGE = 100
"""Telemetry windows per message: a backlog goes out in few messages, each well under the cap."""


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int: ...


class Delivery:
    def __init__(self, outbox: Outbox, publisher: Publisher, device_id: str) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._topics = {c.value: device_topic(device_id, c) for c in Channel}
        self._in_flight: dict[int, int] = {}  # broker message id -> outbox row id
        self._handed = 0  # highest outbox row id handed to the transport
        self.refused = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def send(self) -> int:
        """Hand pending messages to the transport, if connected; return how many."""
        if not self._publisher.connected:
            return 0
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return 0
        items = self._outbox.pending(room, after=self._handed)
        for item in items:
            mid = self._publisher.publish(self._topics[item.channel], item.payload)
            self._in_flight[mid] = item.id
            self._handed = item.id
        return len(items)

    def acked(self, acks: Iterable[tuple[int, bool, str]]) -> int:
        """Forget the outbox rows of ``(mid, ok, reason)`` acknowledgements; return how many."""
        rows = []
        for mid, ok, reason in acks:
            row = self._in_flight.pop(mid, None)
            if row is None:
                continue  # not an outbox message (the retained state)
            if not ok:
                self.refused += 1
                log.error("broker refused outbox message %d (%s); dropping it", row, reason)
            rows.append(row)
        return self._outbox.ack(rows) if rows else 0

    def put_event(self, event: Event) -> None:
        numbered = replace(event, seq=self._outbox.next_seq(Channel.EVENTS.value))
        self._outbox.put(Channel.EVENTS.value, encode(numbered))

    def put_telemetry(self, windows: list[TelemetryWindow], *, sent_at: float) -> None:
        for start in range(0, len(windows), WINDOWS_PER_MESSAGE):
            batch = tuple(windows[start : start + WINDOWS_PER_MESSAGE])
            message = Telemetry(sent_at=sent_at, windows=batch)
            self._outbox.put(Channel.TELEMETRY.value, encode(message))

    def put_drift(self, drifts: list[Drift]) -> None:
        for drift in drifts:
            self._outbox.put(Channel.DRIFT.value, encode(drift))
