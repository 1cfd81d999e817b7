"""MQTT topic names: built and parsed here and nowhere else.

Topic strings are an attack surface (a device id with ``/`` or ``+`` in it
would let one device address another, or subscribe to everyone), so ids are
validated on the way in and on the way out, and parsing is strict: anything
that is not exactly one of our topics raises :class:`TopicError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from edgefleet.shared.errors import TopicError

NAMESPACE = "ef/v1"
SHARED_GROUP = "edgefleet"
MAX_CHUNK_INDEX = 1_000_000

DEVICE_ID_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,62}"
"""Device ids; ``..`` is refused on top, so an id is also a safe path component."""
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = re.compile(r"0|[1-9][0-9]{0,6}")
_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Channel(StrEnum):
    """The per-device topics of DESIGN.md; the value is the last topic level."""

    STATE = "state"
    TELEMETRY = "telemetry"
    DRIFT = "drift"
    EVENTS = "events"
    DESIRED = "desired"
    CMD = "cmd"


DEVICE_WRITES: frozenset[Channel] = frozenset(
    {Channel.STATE, Channel.TELEMETRY, Channel.DRIFT, Channel.EVENTS}
)
"""Channels a device publishes on (and the only ones its ACL lets it write)."""

DEVICE_READS: frozenset[Channel] = frozenset({Channel.DESIRED, Channel.CMD})
"""Channels the server publishes on for one device (the device may only read them)."""


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    device_id: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class ArtifactTopic:
    sha256: str
    chunk: int


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` unchanged if it is safe in topics, usernames and paths."""
    if not isinstance(device_id, str) or _DEVICE_ID.fullmatch(device_id) is None:
        raise TopicError(
            f"invalid device id {device_id!r}: want 1-63 chars of [a-z0-9_.-], "
            "starting with a letter or digit"
        )
    if ".." in device_id:
        raise TopicError(f"invalid device id {device_id!r}: '..' is not allowed")
    return device_id


def validate_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise TopicError(f"invalid sha256 {sha256!r}: want 64 lowercase hex digits")
    return sha256


def _validate_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 0 <= chunk <= MAX_CHUNK_INDEX:
        raise TopicError(f"invalid chunk index {chunk!r}: want 0..{MAX_CHUNK_INDEX}")
    return chunk


def _channel(channel: Channel | str) -> Channel:
    try:
        return Channel(channel)
    except ValueError:
        raise TopicError(f"unknown channel {channel!r}") from None


def device_topic(device_id: str, channel: Channel) -> str:
    return f"{NAMESPACE}/d/{validate_device_id(device_id)}/{_channel(channel).value}"


def artifact_topic(sha256: str, chunk: int) -> str:
    return f"{NAMESPACE}/a/{validate_sha256(sha256)}/{_validate_chunk(chunk)}"


def artifact_filter(sha256: str) -> str:
    """Subscription filter for every chunk of one artifact."""
    return f"{NAMESPACE}/a/{validate_sha256(sha256)}/+"


def all_artifacts_filter() -> str:
    """Filter for every chunk of every artifact: what any device may read."""
    return f"{NAMESPACE}/a/#"


def channel_filter(channel: Channel) -> str:
    """Subscription filter for one channel of every device."""
    return f"{NAMESPACE}/d/+/{_channel(channel).value}"


def shared_subscription(channel: Channel, group: str = SHARED_GROUP) -> str:
    """Filter through which server replicas split one channel's ingest between them."""
    if not isinstance(group, str) or _GROUP.fullmatch(group) is None:
        raise TopicError(f"invalid shared subscription group {group!r}")
    return f"$share/{group}/{channel_filter(channel)}"


def parse_topic(topic: str) -> DeviceTopic | ArtifactTopic:
    """Parse a concrete topic (not a filter) into what it addresses."""
    if not isinstance(topic, str):
        raise TopicError(f"topic must be a string, got {type(topic).__name__}")
    prefix = NAMESPACE + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic {topic!r} is outside the {NAMESPACE} namespace")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 3:
        raise TopicError(f"topic {topic!r} has {len(parts)} levels under {NAMESPACE}, want 3")
    kind, ident, last = parts
    if kind == "d":
        return DeviceTopic(validate_device_id(ident), _channel(last))
    if kind == "a":
        if _CHUNK.fullmatch(last) is None:
            raise TopicError(f"topic {topic!r}: chunk index {last!r} is not a canonical integer")
        return ArtifactTopic(validate_sha256(ident), _validate_chunk(int(last)))
    raise TopicError(f"topic {topic!r}: unknown kind {kind!r}, want 'd' or 'a'")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest), for tests and ACL checks.

    ``$share/{group}/`` is stripped from the filter as a broker does; topics
    starting with ``$`` are not matched by leading wildcards (MQTT 3.1.1, 4.7.2).
    """
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(filter_levels):
        if level == "#":
            return i == len(filter_levels) - 1
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)
