"""The session signing key file: made once with 0600, reused, refused when exposed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgefleet.server.errors import ConfigError
from edgefleet.server.web.secret import FILE_NAME, KEY_BYTES, load_or_create


def test_made_private_once_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = load_or_create(data)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE((data / FILE_NAME).stat().st_mode) == 0o600
    assert load_or_create(data) == key
    assert [p.name for p in data.iterdir()] == [FILE_NAME]


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    os.chmod(tmp_path / FILE_NAME, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create(tmp_path)


def test_a_truncated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="delete it to renew"):
        load_or_create(tmp_path)
