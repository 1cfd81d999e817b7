"""Fresh databases for the benchmark: schema, registered devices, a row count."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, insert, select
from sqlalchemy.pool import NullPool

from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import Device, TelemetryRecord
from tests.bench.consumers import Kind
from tests.harness.postgres import PostgresCluster
from tests.harness.telemetry import T


def prepare(engine: Engine, devices: Iterable[str]) -> None:
    """Schema and registered devices, as after provisioning."""
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(Device),
            [
                {
                    "id": device_id,
                    "profile": "sim",
                    "state": "online",
                    "tags": [],
                    "labels": {},
                    "running": [],
                    "created_at": T,
                    "updated_at": T,
                }
                for device_id in devices
            ],
        )


def stored_windows(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(TelemetryRecord)) or 0
    finally:
        engine.dispose()


@dataclass
class Databases:
    """A fresh database per ingest round, on each backend."""

    workdir: Path
    devices: list[str]
    cluster: PostgresCluster | None

    @contextmanager
    def fresh(self, kind: Kind) -> Iterator[str]:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            url = f"sqlite:///{self.workdir / name}.db"
        else:
            assert self.cluster is not None
            url = self.cluster.create_database(name)
        engine = make_engine(url)
        try:
            prepare(engine, self.devices)
        finally:
            engine.dispose()
        try:
            yield url
        finally:
            if self.cluster is not None and kind == "postgresql":
                self.cluster.drop_database(name)
