"""Putting an artifact back together from its MQTT chunks, in any order.

Chunks are retained on the broker, so a reconnect or a re-subscription
delivers some of them again: a duplicate must be harmless. A chunk the
manifest does not account for (an index past ``chunk_count``, more bytes
than ``chunk_size`` or than the declared total) is refused on arrival, so
no more than the declared size is ever held in memory. The buffer is
allocated once at the declared size: a device holds one copy of the model
while it downloads, not a list of chunks plus their concatenation. A
refetch (:mod:`.refetch`) writes the new copies over the old ones in it.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from edgefleet.agent.update.refetch import fingerprints
from edgefleet.shared.errors import ArtifactError, ArtifactTooLargeError
from edgefleet.shared.manifest import ArtifactSpec, Manifest, check_artifact


class ChunkOutcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"


class ChunkAssembler:
    """Collects the chunks of one artifact; pure, no I/O."""

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest
        self._spec: ArtifactSpec = manifest.artifact
        self._buffer = bytearray(self._spec.size)
        self._received: set[int] = set()

    @property
    def spec(self) -> ArtifactSpec:
        return self._spec

    @property
    def complete(self) -> bool:
        return len(self._received) == self._spec.chunk_count

    @property
    def received_bytes(self) -> int:
        return sum(self.expected_length(i) for i in self._received)

    @property
    def progress(self) -> float:
        return len(self._received) / self._spec.chunk_count

    def expected_length(self, index: int) -> int:
        """Every chunk is ``chunk_size`` long except the last, which holds the rest."""
        start = index * self._spec.chunk_size
        return min(self._spec.chunk_size, self._spec.size - start)

    def accept(self, index: int, data: bytes) -> ChunkOutcome:
        """Take chunk ``index``; raise :class:`ArtifactError` if the manifest rules it out."""
        spec = self._spec
        if not 0 <= index < spec.chunk_count:
            raise ArtifactError(
                f"chunk {index} is outside the artifact's {spec.chunk_count} chunks",
                reason="chunk_out_of_range",
            )
        expected = self.expected_length(index)
        if len(data) > expected:
            raise ArtifactTooLargeError(
                f"chunk {index} is {len(data)} bytes, the manifest allows {expected} "
                f"({spec.size} bytes in chunks of {spec.chunk_size})"
            )
        if len(data) < expected:
            raise ArtifactError(
                f"chunk {index} is {len(data)} bytes, the manifest expects {expected}",
                reason="short_chunk",
            )
        if index in self._received:
            return ChunkOutcome.DUPLICATE
        start = index * spec.chunk_size
        self._buffer[start : start + expected] = data
        self._received.add(index)
        return ChunkOutcome.NEW

    def missing(self) -> list[int]:
        """Indices still to fetch, ascending: what a resume asks for."""
        return [i for i in range(self._spec.chunk_count) if i not in self._received]

    def restart(self) -> None:
        """Take every chunk again: the ones held did not make the manifest's artifact."""
        self._received.clear()

    def fingerprints(self) -> tuple[bytes, ...]:
        """Each chunk's short digest, to compare one failed fetch with the next."""
        return fingerprints(self._buffer, self._spec.chunk_size)

    def finish(self) -> bytearray:
        """The artifact, once every chunk is in and its sha256 is the manifest's.

        The buffer itself is handed over (no copy): the assembler is spent after this.
        """
        if not self.complete:
            missing = self.missing()
            raise ArtifactError(
                f"{len(missing)} of {self._spec.chunk_count} chunks missing (first: {missing[:8]})",
                reason="incomplete_artifact",
            )
        data = self._buffer
        check_artifact(self._manifest, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        self._buffer = bytearray()
        return data
