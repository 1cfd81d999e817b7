"""Crash-safe file writes: temp file, fsync, rename, fsync of the directory.

A reader sees the old file or the new one, never a torn one, and after
:meth:`AtomicFile.commit` returns the new name survives a power cut. Temp
files live in the target's file system (a rename across file systems is a
copy) and vanish if the writer fails before committing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (a new or renamed file in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path, *, mode: int = 0o755) -> bool:
    """Create ``path`` (and its parents) with ``mode``; True if it did not exist.

    The new entry is fsynced into its parent, so a committed file is never
    left in a directory that itself vanishes after a crash.
    """
    if path.is_dir():
        return False
    make_dir(path.parent)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return False
    path.chmod(mode)  # mkdir's mode is filtered by the umask
    fsync_dir(path.parent)
    return True


class AtomicFile:
    """A temp file in ``directory`` that becomes a real file only on :meth:`commit`.

    Use as a context manager; leaving the block without committing removes
    the temp file. The final name may be chosen after writing, which is what
    a content-addressed store needs.
    """

    def __init__(self, directory: Path, *, mode: int = 0o600) -> None:
        self._directory = directory
        self._path = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)  # as for mkdir, the umask filters O_CREAT's mode
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._done = False

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)

    def commit(self, target: Path) -> None:
        """Flush to disk and rename onto ``target`` (replacing it), then sync the directories."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._path, target)
        self._done = True
        fsync_dir(target.parent)
        if target.parent != self._directory:
            fsync_dir(self._directory)

    def discard(self) -> None:
        if not self._done:
            self._file.close()
            self._path.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    with AtomicFile(path.parent, mode=mode) as tmp:
        tmp.write(data)
        tmp.commit(path)


def remove_durably(path: Path) -> bool:
    """Unlink ``path`` and sync its directory; False if it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True
