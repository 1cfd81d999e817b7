"""What a rollout puts on the broker: retained artifact chunks and per-device ``desired``.

Thin I/O over a :class:`Publisher` passed in (the server's
:class:`~edgefleet.server.mqtt.MqttTransport` in production). Everything is
retained at QoS 1: the broker fans one publish out to every subscribed
device and keeps it for devices that come back later, so an artifact is
published once per rollout, not once per device, and an offline device
converges on its ``desired`` when it returns (DESIGN.md, "MQTT topics").

Nothing half-made goes out: payloads and topics are checked before the first
publish, the artifact is rehashed before its first chunk leaves, and chunks
already retained when the file turns out to have changed under the read are
cleared again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.errors import InvalidInputError, ServerError
from edgefleet.server.signing import TrustBundle
from edgefleet.shared.errors import MessageError, TopicError
from edgefleet.shared.messages import Deployment, Desired, encode
from edgefleet.shared.topics import Channel, artifact_topic, device_topic

QOS = 1
CLEARED = b""
"""A retained publish with no payload makes the broker forget the topic's retained message."""


class Publisher(Protocol):
    """The one thing delivery needs from a transport."""

    def publish_many(
        self, messages: Iterable[tuple[str, bytes, bool]], *, qos: int = 1, timeout: float
    ) -> None: ...


def publish_artifact(
    transport: Publisher,
    store: ArtifactStore,
    sha256: str,
    chunk_size: int,
    *,
    timeout: float = 60.0,
) -> int:
    """Retain every chunk of the stored artifact on ``ef/v1/a/{sha256}/{i}``; the chunk count.

    :meth:`ArtifactStore.chunks` rehashes the file before the first chunk
    (a damaged or missing artifact raises here and nothing is published)
    and again while reading; if the bytes changed in between, the chunks
    already retained are cleared before the error goes on, so no device
    assembles a mixture.
    """
    chunks = store.chunks(sha256, chunk_size)
    published = 0

    def messages() -> Iterator[tuple[str, bytes, bool]]:
        nonlocal published
        for index, chunk in enumerate(chunks):
            published = index + 1
            yield artifact_topic(sha256, index), chunk, True

    try:
        transport.publish_many(messages(), qos=QOS, timeout=timeout)
    except ServerError as err:
        if err.reason == "artifact_corrupted":
            clear_artifact(transport, sha256, published, timeout=timeout)
        raise
    return published


def clear_artifact(
    transport: Publisher, sha256: str, chunk_count: int, *, timeout: float = 60.0
) -> None:
    """Make the broker forget the artifact's chunks: devices can no longer fetch them."""
    if isinstance(chunk_count, bool) or not isinstance(chunk_count, int) or chunk_count < 0:
        raise InvalidInputError(f"chunk count {chunk_count!r} is not a count")
    try:
        topics = [artifact_topic(sha256, index) for index in range(chunk_count)]
    except TopicError as err:
        raise InvalidInputError(str(err), reason="bad_artifact_topic") from err
    transport.publish_many(((t, CLEARED, True) for t in topics), qos=QOS, timeout=timeout)


def build_desired(
    *, revision: int, deployments: Sequence[Deployment], trust: TrustBundle, now: float
) -> Desired:
    """One device's ``desired``: its deployments and what it needs to trust their manifests.

    Roots are every version after v1, oldest first: a device pins whichever
    root was current when it was provisioned (v1 at the earliest), and the
    agent rotates through the newer ones one step at a time, skipping those
    it holds already. The signing-key list is the current one, so a device
    learns of a rotated or revoked signing key with the deployment itself.
    """
    try:
        return Desired(
            revision=revision,
            issued_at=now,
            deployments=tuple(deployments),
            signing_keys=trust.signing_keys,
            roots=tuple(trust.roots[1:]),
        )
    except MessageError as err:
        raise InvalidInputError(f"cannot build desired: {err}", reason=err.reason) from err


def publish_desired(
    transport: Publisher, desired_by_device: Mapping[str, Desired], *, timeout: float = 60.0
) -> None:
    """Retain each device's ``desired`` on its own topic, in one batch.

    Every topic and payload is built before the first publish, so a bad
    device id or an oversized message publishes nothing at all.
    """
    try:
        messages = [
            (device_topic(device_id, Channel.DESIRED), encode(desired), True)
            for device_id, desired in desired_by_device.items()
        ]
    except TopicError as err:
        raise InvalidInputError(str(err), reason="bad_device_id") from err
    except MessageError as err:
        raise InvalidInputError(f"cannot encode desired: {err}", reason=err.reason) from err
    transport.publish_many(messages, qos=QOS, timeout=timeout)
