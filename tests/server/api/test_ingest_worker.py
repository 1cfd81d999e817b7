"""The ingest worker process: killed mid-stream, it is replaced and nothing is lost."""

from __future__ import annotations

import os
import signal

from sqlalchemy import select

from edgefleet.server.db.models import TelemetryRecord
from edgefleet.shared.topics import Channel
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_devices_e2e import Device_, provision, telemetry, wait_until

MESSAGES = 400


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
        # The last messages may be queued behind the dead worker until the next shipment.
        wait_until(lambda: ingest.worker_pid not in (None, first_pid), timeout=30)
        server.wait_ingested(30)
    finally:
        agent.close()
    with server.services.sessions() as session:
        seqs = session.scalars(
            select(TelemetryRecord.seq).where(TelemetryRecord.device_id == device_id)
        ).all()
    assert sorted(seqs) == list(range(MESSAGES))
