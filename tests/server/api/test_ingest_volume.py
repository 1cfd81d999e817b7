"""10,000 telemetry windows from 20 provisioned devices, replays included, stored exactly once.

The devices log in with the credentials of their bundles and publish at QoS 1
as fast as paho lets them. About a fifth of the windows go out twice, the
way an agent's outbox replays them: a copy inside the same message, an older
message re-sent a few messages later (often in the same ingest batch as its
original), and the unacknowledged tail re-sent after a reconnect.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from edgefleet.server.db.models import TelemetryRecord
from edgefleet.shared.messages import TelemetryWindow
from edgefleet.shared.topics import Channel, device_topic
from tests.harness.telemetry import payload, window
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_devices_e2e import Device_, provision

pytestmark = pytest.mark.slow

DEVICES = 20
WINDOWS_PER_DEVICE = 500
IN_MESSAGE_COPY = 0.05
"""Share of windows repeated inside their own message."""
RESEND_SOON = 0.10
"""Share of messages re-sent a few messages after the original."""
RESEND_TAIL = 0.05
"""Share of a device's messages (its last ones) re-sent after everything else."""
DEADLINE_SECONDS = 60.0


@dataclass
class Plan:
    """What one device sends, in order, and how many window copies are replays."""

    payloads: list[bytes] = field(default_factory=list)
    replayed_windows: int = 0


def plan_device(rng: random.Random) -> Plan:
    plan = Plan()
    originals: list[tuple[TelemetryWindow, ...]] = []
    seq = 0
    while seq < WINDOWS_PER_DEVICE:
        size = min(rng.randint(1, 8), WINDOWS_PER_DEVICE - seq)
        windows = [window(rng, s) for s in range(seq, seq + size)]
        seq += size
        copies = [w for w in windows if rng.random() < IN_MESSAGE_COPY]
        plan.replayed_windows += len(copies)
        originals.append(tuple(windows + copies))
    later: dict[int, list[tuple[TelemetryWindow, ...]]] = {}
    for index, message in enumerate(originals):
        if rng.random() < RESEND_SOON:
            later.setdefault(index + rng.randint(1, 5), []).append(message)
            plan.replayed_windows += len(message)
    tail = originals[-max(1, int(len(originals) * RESEND_TAIL)) :]
    plan.replayed_windows += sum(len(m) for m in tail)
    for index, message in enumerate(originals):
        plan.payloads += [payload(m) for m in [message, *later.pop(index, [])]]
    plan.payloads += [payload(m) for pending in later.values() for m in pending]
    plan.payloads += [payload(m) for m in tail]
    return plan


def metric_samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def counter(server: Server, name: str, **labels: str) -> float:
    return metric_samples(server).get((name, tuple(sorted(labels.items()))), 0.0)


def received(server: Server) -> float:
    return counter(server, "edgefleet_ingest_messages_received_total", channel="telemetry")


def rejections(server: Server) -> dict[str, float]:
    """By reason; other tests' devices on the shared broker may add some (their last wills)."""
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in metric_samples(server).items()
        if name == "edgefleet_ingest_messages_rejected_total" and value
    }


def stored(server: Server) -> Counter[tuple[str, int]]:
    with server.services.sessions() as session:
        rows = session.execute(select(TelemetryRecord.device_id, TelemetryRecord.seq)).all()
    return Counter((device_id, seq) for device_id, seq in rows)


def test_ten_thousand_windows_with_replays_are_stored_exactly_once(server: Server) -> None:
    rng = random.Random(20260101)  # noqa: S311  # reproducible test data, not secrets
    plans = {unique_id("vol"): plan_device(rng) for _ in range(DEVICES)}
    agents = [Device_(provision(server, device_id)) for device_id in plans]
    sent = sum(len(plan.payloads) for plan in plans.values())
    replayed = sum(plan.replayed_windows for plan in plans.values())
    assert 0.15 * DEVICES * WINDOWS_PER_DEVICE < replayed < 0.3 * DEVICES * WINDOWS_PER_DEVICE
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        pending: list[mqtt.MQTTMessageInfo] = []
        # Interleave the devices, as a fleet would.
        for index in range(max(len(plan.payloads) for plan in plans.values())):
            for agent, plan in zip(agents, plans.values(), strict=True):
                if index < len(plan.payloads):
                    topic = device_topic(agent.config.device.id, Channel.TELEMETRY)
                    pending.append(agent.client.publish(topic, plan.payloads[index], qos=1))
        for info in pending:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge every publish in time"
        # Everything is at the broker; count it off the server's side, then wait for the writer.
        while received(server) < sent:
            assert time.monotonic() < deadline, (
                f"{received(server):.0f} of {sent} messages taken in time; "
                f"rejected: {rejections(server)}"
            )
            time.sleep(0.05)
        server.wait_ingested(max(0.1, deadline - time.monotonic()))
    finally:
        for agent in agents:
            agent.close()

    rows = stored(server)
    expected = {(d, s) for d in plans for s in range(WINDOWS_PER_DEVICE)}
    assert set(rows) == expected
    assert sum(rows.values()) == len(expected) == 10_000
    assert received(server) == sent
    assert counter(server, "edgefleet_ingest_rows_written_total", table="telemetry") == 10_000
    assert counter(server, "edgefleet_ingest_duplicates_total", table="telemetry") == replayed
