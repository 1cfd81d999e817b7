"""The key that signs dashboard sessions, kept in the data directory.

A file rather than a database row: it sits next to the other key material
(``keys/``) with the same 0600 rule, and reading it needs no migration.
Replicas behind one load balancer must share it (copy the file), as they
share the signing keys. Created on first use; two processes starting at once
agree on one key, because the file appears with ``link``, which never
replaces an existing name.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from edgefleet.server.atomic import fsync_dir, make_dir
from edgefleet.server.errors import ConfigError

FILE_NAME = "web_session.key"
KEY_BYTES = 32


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path} holds {len(key)} bytes, want {KEY_BYTES}; delete it to renew")
    return key


def load_or_create(data_dir: Path) -> bytes:
    path = data_dir / FILE_NAME
    if path.exists():
        return _read(path)
    make_dir(data_dir, mode=0o700)
    temp = data_dir / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    finally:
        temp.unlink()
        fsync_dir(data_dir)
    return _read(path)
