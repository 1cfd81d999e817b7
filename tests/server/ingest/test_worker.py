"""The ingest worker loop over a real pipe, on SQLite and PostgreSQL.

It runs on a thread here; the process it normally runs in is exercised by
the API tests (``test_ingest_worker.py``), including a kill and restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest
from sqlalchemy import Engine, func, select

from edgefleet.server.db.models import Device, TelemetryRecord
from edgefleet.server.ingest import worker
from edgefleet.server.ingest.worker import Report, Shipment
from edgefleet.shared import messages
from edgefleet.shared.messages import Telemetry, TelemetryWindow
from edgefleet.shared.topics import Channel, device_topic
from tests.server.ingest.conftest import T


def telemetry(device_id: str, *seqs: int) -> tuple[str, bytes, float]:
    body = messages.encode(
        Telemetry(
            sent_at=T,
            windows=tuple(
                TelemetryWindow(seq=s, start=T + s, end=T + s + 1, inferences=3, errors=0)
                for s in seqs
            ),
        )
    )
    return device_topic(device_id, Channel.TELEMETRY), body, T


@pytest.fixture
def pipe(engine: Engine, db_url: str) -> Iterator[Connection]:
    ours, theirs = Pipe()
    thread = threading.Thread(target=worker.run, args=(theirs, db_url), daemon=True)
    thread.start()
    assert ours.poll(30)
    assert ours.recv() == "ready"
    yield ours
    if thread.is_alive():
        ours.send(Shipment([], final=True))
        ours.recv()
    thread.join(10)
    assert not thread.is_alive()


def ship(pipe: Connection, shipment: Shipment) -> Report:
    pipe.send(shipment)
    assert pipe.poll(30)
    report: Report = pipe.recv()
    return report


def stored(engine: Engine, device_id: str) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                select(TelemetryRecord.seq)
                .where(TelemetryRecord.device_id == device_id)
                .order_by(TelemetryRecord.seq)
            )
        )


def test_a_shipment_is_written_and_reported(pipe: Connection, engine: Engine) -> None:
    report = ship(pipe, Shipment([telemetry("cam-1", 1, 2), telemetry("cam-1", 3)]))
    assert report.messages == 2
    assert report.received == {"telemetry": 2}
    assert report.written is not None
    assert report.written.telemetry_inserted == 3
    assert report.rejections == []
    assert stored(engine, "cam-1") == [1, 2, 3]
    with engine.connect() as connection:
        seen = connection.scalar(select(Device.last_seen_at).where(Device.id == "cam-1"))
    assert seen == T


def test_a_resent_shipment_changes_nothing(pipe: Connection, engine: Engine) -> None:
    shipment = Shipment([telemetry("cam-1", 1, 2)])
    ship(pipe, shipment)
    again = ship(pipe, shipment)
    assert again.written is not None
    assert again.written.telemetry_inserted == 0
    assert again.written.telemetry_duplicates == 2
    assert stored(engine, "cam-1") == [1, 2]


def test_rejections_come_back_with_reasons_and_the_rest_is_kept(
    pipe: Connection, engine: Engine
) -> None:
    report = ship(
        pipe,
        Shipment(
            [
                telemetry("cam-1", 7),
                telemetry("ghost-9", 1),
                telemetry("cam-3", 1),  # revoked
                (device_topic("cam-1", Channel.TELEMETRY), b"{not json", T),
            ]
        ),
    )
    assert sorted(r.reason for r in report.rejections) == [
        "bad_json",
        "unknown_device",
        "unknown_device",
    ]
    assert report.received == {"telemetry": 1}
    assert stored(engine, "cam-1") == [7]
    with engine.connect() as connection:
        total = connection.scalar(select(func.count()).select_from(TelemetryRecord))
    assert total == 1


def test_the_final_shipment_is_written_before_the_worker_exits(
    pipe: Connection, engine: Engine
) -> None:
    report = ship(pipe, Shipment([telemetry("cam-2", 5)], final=True))
    assert report.written is not None
    assert report.written.telemetry_inserted == 1
    assert stored(engine, "cam-2") == [5]
    assert not pipe.poll(0.2)
