"""``BatchWriter.write`` on PostgreSQL against psycopg used directly, on the same rows.

The counterpart of :mod:`tests.bench.writer_vs_sqlite3`: the same batches,
one transaction each, ``ON CONFLICT (device_id, seq) DO NOTHING`` and the
``last_seen_at`` refresh, on a fresh database of the harness's cluster per
try. Two limits, parameter tuples built before the clock starts:

* ``executemany``: psycopg's ``executemany`` of the writer's statements (the
  driver call the writer makes, so this ratio is the writer's own cost);
* ``copy``: ``COPY`` into a temporary table, then one ``INSERT ... SELECT``
  that skips the duplicates: what a COPY-based writer could reach, reported
  without a goal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import make_url

from edgefleet.server.ingest.writer import Batch
from tests.bench.databases import Databases
from tests.bench.writer_vs_sqlite3 import TELEMETRY_COLUMNS, as_parameters, compare, time_writer

_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, TELEMETRY_COLUMNS))
_INSERT = sql.SQL(
    "INSERT INTO telemetry ({columns}) VALUES ({values}) ON CONFLICT (device_id, seq) DO NOTHING"
).format(columns=_COLUMNS, values=sql.SQL(", ").join([sql.Placeholder()] * len(TELEMETRY_COLUMNS)))
_STAGE = sql.SQL(
    "CREATE TEMPORARY TABLE incoming ON COMMIT DROP AS SELECT {columns} FROM telemetry WITH NO DATA"
).format(columns=_COLUMNS)
_COPY = sql.SQL("COPY incoming ({columns}) FROM STDIN").format(columns=_COLUMNS)
_MOVE = sql.SQL(
    "INSERT INTO telemetry ({columns}) SELECT {columns} FROM incoming "
    "ON CONFLICT (device_id, seq) DO NOTHING"
).format(columns=_COLUMNS)
_SEEN = "UPDATE devices SET last_seen_at = %s WHERE id = %s"
Writes = Callable[[psycopg.Cursor[Any], list[tuple[Any, ...]]], int]
"""Inserts one batch's rows through the cursor; the number of rows inserted."""


def bench_writer_postgres(
    databases: Databases, batches: list[Batch], repeat: int
) -> dict[str, Any]:
    ways = {
        "writer": time_writer,
        "executemany": lambda url, b: _time_raw(url, b, _executemany),
        "copy": lambda url, b: _time_raw(url, b, _copy),
    }
    result = compare(databases, "postgresql", ways, batches, repeat)
    rates = result["rows_per_second"]
    result["ratio"] = rates["writer"] / rates["executemany"]
    result["ratio_vs_copy"] = rates["writer"] / rates["copy"]
    return result


def _executemany(cursor: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> int:
    cursor.executemany(_INSERT, rows)
    return cursor.rowcount


def _copy(cursor: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> int:
    cursor.execute(_STAGE)
    with cursor.copy(_COPY) as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(_MOVE)
    return cursor.rowcount


def _time_raw(url: str, batches: list[Batch], writes: Writes) -> float:
    prepared = [as_parameters(b) for b in batches]
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        started = time.perf_counter()
        for batch, rows in zip(batches, prepared, strict=True):
            with connection.transaction(), connection.cursor() as cursor:
                inserted = writes(cursor, rows)
                cursor.executemany(_SEEN, [(t, d) for d, t in batch.seen.items()])
            if inserted != len(rows):
                raise RuntimeError(f"{inserted} of {len(rows)} rows inserted")
        return time.perf_counter() - started


def _conninfo(url: str) -> str:
    """What psycopg itself takes for the database a SQLAlchemy URL names."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
