"""The ``db_url`` fixture: every database test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.pool import QueuePool

from tests.harness.postgres import PostgresCluster

metadata = MetaData()
readings = Table(
    "readings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", String(63), nullable=False),
    Column("value", Float, nullable=False),
)


def test_round_trip_on_each_backend(db_url: str, request: pytest.FixtureRequest):
    engine = create_engine(db_url)
    try:
        backend = request.node.callspec.params["db_url"]
        assert engine.dialect.name == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]
        metadata.create_all(engine)
        rows = [{"device_id": f"dev-{i}", "value": i / 4} for i in range(100)]
        with engine.begin() as conn:
            conn.execute(insert(readings), rows)
        with engine.connect() as conn:
            back = conn.execute(
                select(readings.c.device_id, readings.c.value).order_by(readings.c.id)
            )
            assert [row._asdict() for row in back] == rows
    finally:
        engine.dispose()


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_starts_with_an_empty_database(db_url: str, attempt: int):
    # Whichever attempt runs second would find the first one's table if they shared.
    engine = create_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE leftover_{attempt} (id INTEGER)"))
    finally:
        engine.dispose()


def test_dropping_a_database_closes_its_open_sessions(postgres: PostgresCluster):
    # A test that forgets to dispose its engine leaves pooled sessions behind.
    url = postgres.create_database("edgefleet_test_drop_while_open")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.checkedin() == 1
        postgres.drop_database("edgefleet_test_drop_while_open")
    finally:
        engine.dispose()
    with pytest.raises(KeyError):
        postgres.drop_database("edgefleet_test_drop_while_open")
