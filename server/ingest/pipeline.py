"""From ``(topic, payload)`` to rows or a counted rejection. Pure: no I/O, no clock.

The broker's ACL already ties a topic to its device's credentials, so the
device id comes from the topic; the registry check here refuses ids the
server does not know or has revoked (a revoked device's last messages can
still be in flight).
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from edgefleet.shared import messages
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.messages import Histogram, Telemetry
from edgefleet.shared.topics import Channel, DeviceTopic, parse_topic


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    device_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Presence:
    """The latest retained state of a device (or its last will)."""

    device_id: str
    online: bool
    at: float
    agent_version: str | None
    running: list[dict[str, Any]]


@dataclass(slots=True)
class Routed:
    """What one message contributes to the next batch."""

    telemetry: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    presence: Presence | None = None
    drift: messages.Drift | None = None
    """A drift message waits here to be judged against its version (see ``drift_rows``)."""
    drift_rows: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


def percentile(histogram: Histogram, q: float) -> float | None:
    """Upper bound of the bucket holding the ``q`` quantile (the overflow bucket: its lower bound).

    An upper bound errs on the slow side, which is the safe side for latency gates.
    """
    total = histogram.total
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram.counts):
        seen += count
        if seen >= rank and count:
            return histogram.bounds[min(index, len(histogram.bounds) - 1)]
    return histogram.bounds[-1]


def _telemetry_rows(device_id: str, message: Telemetry, received_at: float) -> list[dict[str, Any]]:
    rows = []
    for window in message.windows:
        histograms: dict[str, Any] = {}
        for name in ("latency_ms", "confidence"):
            hist = getattr(window, name)
            if hist is not None:
                histograms[name] = {"bounds": hist.bounds, "counts": hist.counts}
        latency = window.latency_ms
        rows.append(
            {
                "device_id": device_id,
                "seq": window.seq,
                "window_start": window.start,
                "window_end": window.end,
                "model": window.model,
                "version": window.version,
                "inferences": window.inferences,
                "errors": window.errors,
                "latency_p50_ms": None if latency is None else percentile(latency, 0.50),
                "latency_p95_ms": None if latency is None else percentile(latency, 0.95),
                "cpu_percent": window.cpu_percent,
                "memory_bytes": window.memory_bytes,
                "temperature_c": window.temperature_c,
                # Serialized here, once: the writer hands rows to the driver as they are.
                "histograms": json.dumps(histograms, separators=(",", ":")),
                "received_at": received_at,
            }
        )
    return rows


def _shadow_columns(shadow: messages.ShadowSummary | None) -> dict[str, Any]:
    return {
        "shadow_samples": None if shadow is None else shadow.samples,
        "shadow_agreement": None if shadow is None else shadow.agreement,
        "shadow_latency_delta_ms": None if shadow is None else shadow.latency_delta_ms,
    }


def route(
    topic: str, payload: bytes, *, received_at: float, known_devices: Container[str]
) -> Routed | Rejection:
    try:
        address = parse_topic(topic)
    except EdgefleetError as err:
        return Rejection(err.reason, None, str(err))
    if not isinstance(address, DeviceTopic) or address.channel not in (
        Channel.STATE,
        Channel.TELEMETRY,
        Channel.EVENTS,
        Channel.DRIFT,
    ):
        return Rejection("not_a_device_topic", None, f"{topic!r} is not something devices send")
    device_id = address.device_id
    if device_id not in known_devices:
        return Rejection("unknown_device", device_id, f"device {device_id!r} is not registered")
    try:
        message = messages.decode(address.channel, payload)
    except EdgefleetError as err:
        return Rejection(err.reason, device_id, str(err))
    routed = Routed()
    if isinstance(message, messages.Telemetry):
        routed.telemetry = _telemetry_rows(device_id, message, received_at)
    elif isinstance(message, messages.Event):
        routed.events = [
            {
                "device_id": device_id,
                "seq": message.seq,
                "at": message.at,
                "kind": message.kind.value,
                "model": message.model,
                "version": message.version,
                "rollout_id": message.rollout_id,
                "reason": message.reason,
                "progress": message.progress,
                "received_at": received_at,
                **_shadow_columns(message.shadow),
            }
        ]
    elif isinstance(message, messages.State):
        routed.presence = Presence(
            device_id=device_id,
            online=message.status is messages.DeviceStatus.ONLINE,
            # The last will's timestamp is from CONNECT time: arrival is when it went away.
            at=received_at,
            agent_version=message.agent_version,
            running=[
                {
                    "model": m.model,
                    "version": m.version,
                    "sha256": m.sha256,
                    "slot": m.slot.value,
                    "active": m.active,
                }
                for m in message.models
            ],
        )
    elif isinstance(message, messages.Drift):
        routed.drift = message
    return routed
