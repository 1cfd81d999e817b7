"""Typed MQTT payloads for every device topic, and their wire codec.

One dataclass per channel (see :mod:`edgefleet.shared.topics`). Every payload
is a JSON object with a ``schema`` field; :func:`decode` refuses a version it
does not read, anything over the channel's size cap, and anything that does
not fit the dataclass exactly. Construction validates too, so a message that
exists in memory is a message that may be sent.

The device id is deliberately *not* in device payloads: the topic carries it
and the broker's ACL vouches for it, so a second copy could only disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar, TypeVar

from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import MessageError, MessageTooLargeError, UnsupportedSchemaError
from edgefleet.shared.schema import Length, Pattern, Range, require
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.topics import Channel

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION})

NAME_RE = r"[a-z0-9][a-z0-9_.-]{0,62}"
ID_RE = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
SHA256_RE = r"[0-9a-f]{64}"

Name = Annotated[str, Pattern(NAME_RE)]
"""Model names and hardware profiles: same alphabet as device ids."""
Identifier = Annotated[str, Pattern(ID_RE)]
Sha256 = Annotated[str, Pattern(SHA256_RE)]
Version = Annotated[int, Range(1, 2**53)]
Count = Annotated[int, Range(0, 2**53)]
Seq = Annotated[int, Range(0, 2**63 - 1)]
Timestamp = Annotated[float, Range(0, 1e11)]
"""Seconds since the epoch, from the sender's clock."""
Fraction = Annotated[float, Range(0.0, 1.0)]
Reason = Annotated[str, Length(max=500)]


class DeviceStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Slot(StrEnum):
    A = "a"
    B = "b"


class UpdatePhase(StrEnum):
    """The agent's update state machine (DESIGN.md, "Agent update state machine")."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    STAGED = "staged"
    TESTING = "testing"
    ACTIVE = "active"
    COMMITTED = "committed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class EventKind(StrEnum):
    RECEIVED = "received"
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    INSTALLED = "installed"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class SampleReason(StrEnum):
    RESERVOIR = "reservoir"
    LOW_CONFIDENCE = "low_confidence"


class CommandKind(StrEnum):
    SAMPLE_REQUEST = "sample_request"
    CONFIG_PUSH = "config_push"
    RESTART_AGENT = "restart_agent"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts over fixed buckets: ``counts[i]`` is below ``bounds[i]``, the last is the rest."""

    bounds: Annotated[tuple[Annotated[float, Range(-1e15, 1e15)], ...], Length(min=1, max=64)]
    counts: Annotated[tuple[Count, ...], Length(min=2, max=65)]

    def __post_init__(self) -> None:
        require(
            len(self.counts) == len(self.bounds) + 1,
            f"histogram has {len(self.bounds)} bounds but {len(self.counts)} counts, "
            "want one more count than bounds",
        )
        require(
            all(a < b for a, b in zip(self.bounds, self.bounds[1:], strict=False)),
            "histogram bounds must be strictly increasing",
        )

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class ModelSlot:
    """A model version installed in one of a device's two slots."""

    model: Name
    version: Version
    sha256: Sha256
    slot: Slot
    active: bool


@dataclass(frozen=True, slots=True)
class UpdateProgress:
    model: Name
    version: Version
    phase: UpdatePhase


@dataclass(frozen=True, slots=True)
class State:
    """Retained presence; the last will publishes ``status=offline`` with no models."""

    MAX_BYTES: ClassVar[int] = 16 * 1024

    status: DeviceStatus
    sent_at: Timestamp
    agent_version: Annotated[str, Length(max=64)] | None = None
    profile: Name | None = None
    models: Annotated[tuple[ModelSlot, ...], Length(max=32)] = ()
    update: UpdateProgress | None = None


@dataclass(frozen=True, slots=True)
class TelemetryWindow:
    """Metrics over one window; ``seq`` lets the server drop replays from the outbox."""

    seq: Seq
    start: Timestamp
    end: Timestamp
    inferences: Count
    errors: Count
    model: Name | None = None
    version: Version | None = None
    latency_ms: Histogram | None = None
    confidence: Histogram | None = None
    cpu_percent: Annotated[float, Range(0.0, 6400.0)] | None = None
    memory_bytes: Count | None = None
    temperature_c: Annotated[float, Range(-100.0, 250.0)] | None = None

    def __post_init__(self) -> None:
        require(self.end >= self.start, f"window ends ({self.end}) before it starts ({self.start})")
        require(
            self.errors <= self.inferences,
            f"{self.errors} errors out of {self.inferences} inferences",
        )
        require((self.model is None) == (self.version is None), "model and version come together")


@dataclass(frozen=True, slots=True)
class Telemetry:
    MAX_BYTES: ClassVar[int] = 256 * 1024

    sent_at: Timestamp
    windows: Annotated[tuple[TelemetryWindow, ...], Length(min=1, max=500)]


@dataclass(frozen=True, slots=True)
class FeatureSketch:
    """Counts of one feature over the manifest's baseline bins (``len(edges) + 1`` counts)."""

    name: Annotated[str, Length(min=1, max=128)]
    counts: Annotated[tuple[Count, ...], Length(min=2, max=257)]


@dataclass(frozen=True, slots=True)
class Sample:
    """A raw model input kept for retraining: a reservoir draw or a hard example."""

    sample_id: Identifier
    reason: SampleReason
    values: Annotated[tuple[Annotated[float, Range(-3e38, 3e38)], ...], Length(min=1, max=65536)]
    confidence: Fraction | None = None


@dataclass(frozen=True, slots=True)
class Drift:
    MAX_BYTES: ClassVar[int] = 1024 * 1024

    seq: Seq
    model: Name
    version: Version
    window_start: Timestamp
    window_end: Timestamp
    count: Count
    features: Annotated[tuple[FeatureSketch, ...], Length(max=1024)]
    output: FeatureSketch | None = None
    mean_confidence: Fraction | None = None
    samples: Annotated[tuple[Sample, ...], Length(max=256)] = ()

    def __post_init__(self) -> None:
        require(self.window_end >= self.window_start, "drift window ends before it starts")
        names = [f.name for f in self.features]
        require(len(set(names)) == len(names), "feature names repeat")


@dataclass(frozen=True, slots=True)
class ShadowSummary:
    """A shadow candidate against the served model, on the same live inputs.

    ``agreement`` is the share of ``samples`` both models answered alike (a
    failed candidate call disagrees). ``latency_delta_ms`` is the mean
    latency per call of the candidate minus the served model's (positive:
    the candidate is slower); None when the candidate finished no call.
    """

    samples: Count
    agreement: Fraction
    latency_delta_ms: Annotated[float, Range(-1e6, 1e6)] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One update-progress transition; ``reason`` explains every failure and rollback.

    ``shadow`` carries a shadow run's result as numbers (on its ``verified``
    event), so the server can gate a rollout on it without parsing ``reason``.
    """

    MAX_BYTES: ClassVar[int] = 8 * 1024

    seq: Seq
    at: Timestamp
    kind: EventKind
    model: Name
    version: Version
    rollout_id: Identifier | None = None
    reason: Reason | None = None
    progress: Fraction | None = None
    shadow: ShadowSummary | None = None

    def __post_init__(self) -> None:
        if self.kind in (EventKind.FAILED, EventKind.ROLLED_BACK):
            require(bool(self.reason), f"a {self.kind.value} event needs a reason")


@dataclass(frozen=True, slots=True)
class Deployment:
    """One model the device should run, with its signed manifest inline.

    Inline, so a device that comes back online finds everything it needs to
    verify the update (before downloading a byte) in the one retained message.
    With ``shadow`` the device stages this version and runs it beside the
    version it serves now, without serving it, and reports agreement.
    """

    model: Name
    manifest: SignedEnvelope
    shadow: bool = False
    rollout_id: Identifier | None = None

    def __post_init__(self) -> None:
        named = self.manifest.signed.get("model")
        require(
            named == self.model, f"deployment of {self.model!r} carries a manifest for {named!r}"
        )


@dataclass(frozen=True, slots=True)
class Desired:
    """Retained: the full desired deployment for one device, replaced as a whole.

    ``revision`` grows with every publish, so an agent ignores a stale copy.
    ``roots`` carries every root version after the one a device may have
    pinned, oldest first, so it can rotate one step at a time;
    ``signing_keys`` is the current root-signed key list.
    """

    MAX_BYTES: ClassVar[int] = 1024 * 1024

    revision: Seq
    issued_at: Timestamp
    deployments: Annotated[tuple[Deployment, ...], Length(max=8)]
    signing_keys: SignedEnvelope | None = None
    roots: Annotated[tuple[SignedEnvelope, ...], Length(max=16)] = ()

    def __post_init__(self) -> None:
        models = [d.model for d in self.deployments]
        require(len(set(models)) == len(models), "a model is deployed twice")


@dataclass(frozen=True, slots=True)
class Command:
    MAX_BYTES: ClassVar[int] = 16 * 1024

    command_id: Identifier
    kind: CommandKind
    issued_at: Timestamp
    expires_at: Timestamp | None = None
    args: Annotated[dict[str, str | int | float | bool], Length(max=64)] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        require(
            self.expires_at is None or self.expires_at > self.issued_at,
            "command expires before it is issued",
        )


Message = State | Telemetry | Drift | Event | Desired | Command
M = TypeVar("M", bound=Message)

MESSAGE_TYPES: dict[Channel, type[Message]] = {
    Channel.STATE: State,
    Channel.TELEMETRY: Telemetry,
    Channel.DRIFT: Drift,
    Channel.EVENTS: Event,
    Channel.DESIRED: Desired,
    Channel.CMD: Command,
}


def encode(message: Message) -> bytes:
    """Wire bytes for ``message`` (canonical JSON, so equal messages give equal bytes).

    The message is passed through the decoder first: a sender finds out here,
    not from a receiver's rejection counter, that a field is out of range,
    and an ``int`` in a float field goes out as a float, so bytes round-trip.
    """
    checked = schema.from_json(type(message), schema.to_json(message))
    body: dict[str, Any] = schema.to_json(checked)
    body["schema"] = SCHEMA_VERSION
    payload = jsoncodec.canonical(body)
    if len(payload) > message.MAX_BYTES:
        raise MessageTooLargeError(
            f"{type(message).__name__} is {len(payload)} bytes, limit is {message.MAX_BYTES}"
        )
    return payload


def decode_as(cls: type[M], payload: bytes) -> M:
    """Parse an untrusted payload as ``cls``, or raise a :class:`MessageError`."""
    body = jsoncodec.parse(payload, max_bytes=cls.MAX_BYTES)
    if not isinstance(body, dict):
        raise MessageError(f"payload must be a JSON object, got {type(body).__name__}")
    version = body.pop("schema", None)
    if isinstance(version, bool) or not isinstance(version, int):
        raise MessageError("missing or non-integer 'schema' field", reason="missing_field")
    if version not in SUPPORTED_SCHEMAS:
        raise UnsupportedSchemaError(
            f"schema version {version} is not supported (this build reads "
            f"{sorted(SUPPORTED_SCHEMAS)})"
        )
    return schema.from_json(cls, body)


def decode(channel: Channel, payload: bytes) -> Message:
    """Parse a payload received on ``channel``."""
    return decode_as(MESSAGE_TYPES[Channel(channel)], payload)
