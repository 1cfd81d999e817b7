"""A migrated database (SQLite and PostgreSQL) with one device in each interesting state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert

from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import Device

T = 1_767_225_600.0


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        for device_id, state in (
            ("cam-1", "online"),
            ("cam-2", "provisioned"),
            ("cam-3", "revoked"),
        ):
            connection.execute(
                insert(Device).values(
                    id=device_id,
                    profile="sim",
                    state=state,
                    tags=[],
                    labels={},
                    running=[],
                    created_at=T,
                    updated_at=T,
                )
            )
    yield engine
    engine.dispose()
