"""Commands: read, deduplicated, expired or refused with a reason, never a crash."""

from __future__ import annotations

import pytest

from edgefleet.agent.commands import Accepted, CommandDesk, Ignored, Order, Rejected
from edgefleet.shared.messages import Command, CommandKind, encode

NOW = 1_800_000_000.0


def command(kind: CommandKind, command_id: str = "c-1", expires_at: float | None = None) -> bytes:
    return encode(
        Command(command_id=command_id, kind=kind, issued_at=NOW - 10, expires_at=expires_at)
    )


@pytest.mark.parametrize(
    ("kind", "order"),
    [
        (CommandKind.PING, Order.PING),
        (CommandKind.SAMPLE_REQUEST, Order.SAMPLE),
        (CommandKind.RESTART_AGENT, Order.RESTART),
    ],
)
def test_supported_commands(kind: CommandKind, order: Order) -> None:
    assert CommandDesk().interpret(command(kind), now=NOW) == Accepted(order, "c-1")


def test_config_push_is_refused_as_unsupported() -> None:
    result = CommandDesk().interpret(command(CommandKind.CONFIG_PUSH), now=NOW)
    assert isinstance(result, Rejected)
    assert result.reason.startswith("unsupported_cmd: config_push")
    assert result.command_id == "c-1"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"schema":1,"command_id":"x","kind":"self_destruct","issued_at":1}',
        b'{"schema":1,"command_id":"x","kind":"ping"}',
        b'{"schema":9,"command_id":"x","kind":"ping","issued_at":1}',
        b"{" * 10_000,
    ],
    ids=["empty", "text", "array", "unknown-kind", "missing-field", "schema", "deep"],
)
def test_malformed_commands_are_rejected_with_a_reason(payload: bytes) -> None:
    result = CommandDesk().interpret(payload, now=NOW)
    assert isinstance(result, Rejected)
    assert result.reason.startswith("bad_cmd: ")
    assert result.command_id is None


def test_a_redelivered_command_is_done_once() -> None:
    desk = CommandDesk()
    assert isinstance(desk.interpret(command(CommandKind.PING), now=NOW), Accepted)
    assert isinstance(desk.interpret(command(CommandKind.PING), now=NOW), Ignored)
    assert isinstance(desk.interpret(command(CommandKind.PING, "c-2"), now=NOW), Accepted)


def test_memory_of_ids_is_bounded() -> None:
    desk = CommandDesk(remember=2)
    for name in ("a", "b", "c"):
        desk.interpret(command(CommandKind.PING, name), now=NOW)
    assert isinstance(desk.interpret(command(CommandKind.PING, "a"), now=NOW), Accepted)


def test_an_expired_command_is_dropped() -> None:
    payload = command(CommandKind.RESTART_AGENT, expires_at=NOW - 1)
    result = CommandDesk().interpret(payload, now=NOW)
    assert isinstance(result, Ignored)
    assert "expired" in result.why
