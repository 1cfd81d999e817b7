"""Ingest loses nothing: not when its worker process is killed, not while the server is down."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from sqlalchemy import select

from edgefleet.server.db.models import TelemetryRecord
from edgefleet.shared.topics import Channel
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import Server, running_server, server_settings, unique_id
from tests.server.api.test_devices_e2e import Device_, provision, telemetry, wait_until

MESSAGES = 400


def stored_seqs(server: Server, device_id: str) -> list[int]:
    with server.services.sessions() as session:
        return list(
            session.scalars(
                select(TelemetryRecord.seq).where(TelemetryRecord.device_id == device_id)
            )
        )


def test_a_killed_worker_is_restarted_and_every_window_lands_once(server: Server) -> None:
    ingest = server.client.app.state.runtime.ingest  # type: ignore[attr-defined]
    first_pid = ingest.worker_pid
    assert first_pid is not None
    device_id = unique_id("cam")
    agent = Device_(provision(server, device_id))
    try:
        for seq in range(MESSAGES):
            agent.publish(Channel.TELEMETRY, telemetry(seq))
            if seq == MESSAGES // 2:
                os.kill(first_pid, signal.SIGKILL)
        # The last messages may be queued behind the dead worker until the next shipment,
        # or still at the broker, which sends only so many unacknowledged ones at a time.
        wait_until(lambda: ingest.worker_pid not in (None, first_pid), timeout=30)
        wait_until(lambda: len(stored_seqs(server, device_id)) >= MESSAGES, timeout=30)
        server.wait_ingested(30)
    finally:
        agent.close()
    assert sorted(stored_seqs(server, device_id)) == list(range(MESSAGES))


def test_telemetry_sent_while_the_server_is_down_lands_after_it_restarts(
    broker: MosquittoBroker, db_url: str, tmp_path: Path
) -> None:
    settings = server_settings(
        broker,
        db_url,
        tmp_path / "data",
        broker_client_id=f"edgefleet-ingest-restart-{uuid.uuid4().hex[:8]}",
        broker_session_expiry=60,
    )
    device_id = unique_id("cam")
    with running_server(settings) as first:
        agent = Device_(provision(first, device_id))
    try:
        for seq in range(MESSAGES):
            agent.publish(Channel.TELEMETRY, telemetry(seq))
        with running_server(settings, names="again") as second:
            wait_until(lambda: len(stored_seqs(second, device_id)) == MESSAGES, timeout=30)
            second.wait_ingested(10)
            assert sorted(stored_seqs(second, device_id)) == list(range(MESSAGES))
    finally:
        agent.close()
        # Mosquitto gives an offline session its share of the group's messages:
        # end this one (a clean start discards it) before other tests run.
        with running_server(settings.model_copy(update={"broker_session_expiry": 0}), "end"):
            pass
