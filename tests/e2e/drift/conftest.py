"""The fleet of ``tests/e2e/rollouts`` (real server, broker and agents in this process), reused.

SQLite only: the loop's database work is covered on both backends by the
API and service tests; here the point is the whole path, once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.rollouts.conftest import make_fleet

__all__ = ["make_fleet"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/drift/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'edgefleet.db'}"
