"""Content-addressed artifact store: model bytes on disk, named by their SHA-256.

::

    {root}/
      .tmp/                 uploads in progress (same file system, so rename is atomic)
      ab/abcdef0123...      one file per artifact, sharded by the first two hex digits

A path is only ever built from a string that passed
:func:`edgefleet.shared.topics.validate_sha256` (64 lowercase hex digits), so
no caller can name a file outside the store. Writes are atomic and durable
(temp file, fsync, rename, fsync of the directory); identical bytes are stored
once. The disk is not trusted: :meth:`ArtifactStore.read`, :meth:`verify` and
:meth:`chunks` rehash what they read and refuse bytes that no longer match
their name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edgefleet.server.atomic import AtomicFile, make_dir, remove_durably
from edgefleet.server.errors import InvalidInputError, NotFoundError, ServerError
from edgefleet.shared.errors import TopicError
from edgefleet.shared.manifest import (
    MAX_ARTIFACT_BYTES,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    ArtifactSpec,
)
from edgefleet.shared.topics import validate_sha256

READ_BYTES = 1024 * 1024
FILE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    sha256: str
    size: int


def _corrupted(sha256: str, found: str) -> ServerError:
    return ServerError(
        f"artifact {sha256[:16]}... is corrupted on disk (its bytes hash to {found[:16]}...)",
        reason="artifact_corrupted",
    )


class ArtifactStore:
    """Artifacts under ``root``; each is at most ``max_bytes`` long and never empty."""

    def __init__(self, root: Path, *, max_bytes: int = MAX_ARTIFACT_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._tmp = root / ".tmp"

    def path(self, sha256: str) -> Path:
        """Where the artifact named ``sha256`` lives; refuses anything but a sha256."""
        try:
            name = validate_sha256(sha256)
        except TopicError as err:
            raise InvalidInputError(str(err), reason="bad_sha256") from err
        return self.root / name[:2] / name

    # -- writing ---------------------------------------------------------------

    def put(self, data: bytes) -> ArtifactRef:
        self._check_size(len(data))
        sha256 = hashlib.sha256(data).hexdigest()
        if self._present(sha256, len(data)):
            return ArtifactRef(sha256, len(data))
        make_dir(self._tmp)
        with AtomicFile(self._tmp, mode=FILE_MODE) as tmp:
            tmp.write(data)
            self._commit(tmp, sha256)
        return ArtifactRef(sha256, len(data))

    def put_stream(self, source: BinaryIO) -> ArtifactRef:
        """Store everything ``source`` yields, hashing on the way; memory stays flat."""
        make_dir(self._tmp)
        digest = hashlib.sha256()
        size = 0
        with AtomicFile(self._tmp, mode=FILE_MODE) as tmp:
            while block := source.read(READ_BYTES):
                size += len(block)
                self._check_size(size)
                digest.update(block)
                tmp.write(block)
            self._check_size(size)
            sha256 = digest.hexdigest()
            if not self._present(sha256, size):
                self._commit(tmp, sha256)
        return ArtifactRef(sha256, size)

    def put_file(self, path: Path) -> ArtifactRef:
        with path.open("rb") as source:
            return self.put_stream(source)

    def delete(self, sha256: str) -> bool:
        """Remove an artifact; False if it was not there."""
        return remove_durably(self.path(sha256))

    def _check_size(self, size: int) -> None:
        if size == 0:
            raise InvalidInputError("an artifact cannot be empty", reason="empty_artifact")
        if size > self.max_bytes:
            raise InvalidInputError(
                f"artifact is over the limit of {self.max_bytes} bytes",
                reason="artifact_too_large",
            )

    def _present(self, sha256: str, size: int) -> bool:
        """Stored already and intact; a damaged copy is replaced by the caller."""
        try:
            return self.path(sha256).stat().st_size == size and self._intact(sha256)
        except FileNotFoundError:
            return False

    def _intact(self, sha256: str) -> bool:
        try:
            self.verify(sha256)
        except ServerError:
            return False
        return True

    def _commit(self, tmp: AtomicFile, sha256: str) -> None:
        target = self.path(sha256)
        make_dir(target.parent)
        tmp.commit(target)

    # -- reading ---------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError as err:
            raise self._not_found(sha256) from err

    def open(self, sha256: str) -> BinaryIO:
        """The raw file, unverified (for streaming); the caller closes it."""
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError as err:
            raise self._not_found(sha256) from err

    def read(self, sha256: str) -> bytes:
        with self.open(sha256) as file:
            data = file.read()
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise _corrupted(sha256, found)
        return data

    def verify(self, sha256: str) -> ArtifactRef:
        """Rehash the stored bytes; raise if they no longer match their name."""
        digest = hashlib.sha256()
        size = 0
        with self.open(sha256) as file:
            while block := file.read(READ_BYTES):
                digest.update(block)
                size += len(block)
        if digest.hexdigest() != sha256:
            raise _corrupted(sha256, digest.hexdigest())
        return ArtifactRef(sha256, size)

    def chunks(self, sha256: str, chunk_size: int) -> Iterator[bytes]:
        """The artifact in pieces of ``chunk_size`` (the last one shorter), for MQTT delivery.

        The whole file is verified before the first chunk comes out, so a
        corrupted artifact is never published; it is hashed again as it is
        read, and a change in between raises after the last chunk. A bad
        chunk size, a missing or a corrupted artifact raise here, not at the
        first ``next()``.
        """
        _check_chunk_size(chunk_size)
        self.verify(sha256)
        return self._read_chunks(sha256, chunk_size)

    def _read_chunks(self, sha256: str, chunk_size: int) -> Iterator[bytes]:
        digest = hashlib.sha256()
        with self.open(sha256) as file:
            while chunk := file.read(chunk_size):
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != sha256:
            raise _corrupted(sha256, digest.hexdigest())

    def artifact_spec(self, sha256: str, chunk_size: int) -> ArtifactSpec:
        """The manifest's description of a stored artifact (verified first)."""
        _check_chunk_size(chunk_size)
        ref = self.verify(sha256)
        return ArtifactSpec(
            sha256=ref.sha256,
            size=ref.size,
            chunk_size=chunk_size,
            chunk_count=-(-ref.size // chunk_size),
        )

    def _not_found(self, sha256: str) -> NotFoundError:
        return NotFoundError(f"no artifact {sha256[:16]}...", reason="artifact_not_found")


def _check_chunk_size(chunk_size: int) -> None:
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or not MIN_CHUNK_BYTES <= chunk_size <= MAX_CHUNK_BYTES
    ):
        raise InvalidInputError(
            f"chunk size {chunk_size!r} is not between {MIN_CHUNK_BYTES} and {MAX_CHUNK_BYTES}",
            reason="bad_chunk_size",
        )
