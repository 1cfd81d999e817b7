"""One-off commands on ``cmd``: what each asks of the agent, decided without side effects.

A command the agent cannot read, or one it does not support, is *rejected*
with a reason (logged, counted and reported); an expired one is dropped; a
redelivered one (QoS 1 may repeat a message) is recognised by its id and
done once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from edgefleet.shared.errors import MessageError
from edgefleet.shared.messages import Command, CommandKind, decode_as

REMEMBERED = 256


class Order(StrEnum):
    PING = "ping"
    """Publish the retained state now: the server sees the device is alive, and what it runs."""
    SAMPLE = "sample"
    """Close the drift window now, so its samples go out without waiting for the window."""
    RESTART = "restart"
    """Stop cleanly and start again."""


@dataclass(frozen=True, slots=True)
class Accepted:
    order: Order
    command_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    why: str


_ORDERS = {
    CommandKind.PING: Order.PING,
    CommandKind.SAMPLE_REQUEST: Order.SAMPLE,
    CommandKind.RESTART_AGENT: Order.RESTART,
}


class CommandDesk:
    def __init__(self, remember: int = REMEMBERED) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def interpret(self, payload: bytes, *, now: float) -> Accepted | Rejected | Ignored:
        try:
            command = decode_as(Command, payload)
        except MessageError as err:
            return Rejected(f"bad_cmd: {err}")
        if command.command_id in self._seen:
            return Ignored(f"command {command.command_id} was already done")
        self._seen[command.command_id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        if command.expires_at is not None and now >= command.expires_at:
            return Ignored(f"command {command.command_id} expired at {command.expires_at:.0f}")
        order = _ORDERS.get(command.kind)
        if order is None:
            return Rejected(
                f"unsupported_cmd: {command.kind.value} is not supported by this agent",
                command.command_id,
            )
        return Accepted(order, command.command_id)
