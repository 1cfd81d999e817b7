from __future__ import annotations

import pytest

from edgefleet.server.ingest.pipeline import Rejection, Routed, percentile, route
from edgefleet.shared import messages
from edgefleet.shared.messages import Histogram, Telemetry, TelemetryWindow
from edgefleet.shared.topics import Channel, device_topic
from tests.fixtures.golden import BadPayload, bad_payloads, golden_payload

T = 1_767_225_600.0
KNOWN = {"cam-1", "cam-2"}


def test_golden_telemetry_becomes_one_row_per_window() -> None:
    payload = golden_payload("telemetry")
    routed = route(
        device_topic("cam-1", Channel.TELEMETRY), payload, received_at=T, known_devices=KNOWN
    )
    assert isinstance(routed, Routed)
    message = messages.decode(Channel.TELEMETRY, payload)
    assert isinstance(message, Telemetry)
    assert [r["seq"] for r in routed.telemetry] == [w.seq for w in message.windows]
    assert all(r["device_id"] == "cam-1" for r in routed.telemetry)


@pytest.mark.parametrize(
    ("golden", "shadow"),
    [("events_verified_shadow", (400, 0.975, 0.375)), ("events_downloading", (None, None, None))],
)
def test_shadow_results_land_in_their_columns(
    golden: str, shadow: tuple[int | None, float | None, float | None]
) -> None:
    routed = route(
        device_topic("cam-1", Channel.EVENTS),
        golden_payload(golden),
        received_at=T,
        known_devices=KNOWN,
    )
    assert isinstance(routed, Routed)
    [row] = routed.events
    columns = ("shadow_samples", "shadow_agreement", "shadow_latency_delta_ms")
    assert tuple(row[c] for c in columns) == shadow


def test_last_will_marks_the_device_offline_at_arrival_time() -> None:
    routed = route(
        device_topic("cam-2", Channel.STATE),
        golden_payload("state_offline_will"),
        received_at=T + 5,
        known_devices=KNOWN,
    )
    assert isinstance(routed, Routed)
    assert routed.presence is not None
    assert routed.presence.online is False
    assert routed.presence.at == T + 5


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("ef/v1/d/stranger/telemetry", "unknown_device"),
        ("ef/v1/d/cam-1/desired", "not_a_device_topic"),
        ("ef/v1/d/CAM/telemetry", "bad_topic"),
        ("elsewhere/cam-1", "bad_topic"),
    ],
)
def test_topics_that_are_not_a_known_device_talking_are_rejected(topic: str, reason: str) -> None:
    result = route(topic, golden_payload("telemetry"), received_at=T, known_devices=KNOWN)
    assert isinstance(result, Rejection)
    assert result.reason == reason


DEVICE_SENT = [c for c in bad_payloads() if c.channel not in (Channel.DESIRED, Channel.CMD)]


@pytest.mark.parametrize("case", DEVICE_SENT, ids=lambda c: c.name)
def test_every_bad_device_payload_is_a_counted_rejection(case: BadPayload) -> None:
    result = route(
        device_topic("cam-1", case.channel), case.payload, received_at=T, known_devices=KNOWN
    )
    assert isinstance(result, Rejection)
    assert result.reason == case.reason
    assert result.device_id == "cam-1"


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ((0, 0, 0, 0), 0.95, None),
        ((10, 0, 0, 0), 0.95, 5.0),
        ((50, 40, 10, 0), 0.5, 5.0),
        ((50, 40, 10, 0), 0.95, 20.0),
        ((0, 0, 0, 7), 0.5, 20.0),
    ],
)
def test_percentile_is_the_upper_bound_of_its_bucket(
    counts: tuple[int, ...], q: float, expected: float | None
) -> None:
    assert percentile(Histogram((5.0, 10.0, 20.0), counts), q) == expected


def test_latency_percentiles_land_in_the_row() -> None:
    window = TelemetryWindow(
        seq=1,
        start=T,
        end=T + 60,
        inferences=100,
        errors=0,
        latency_ms=Histogram((5.0, 10.0, 20.0), (50, 40, 10, 0)),
    )
    payload = messages.encode(Telemetry(sent_at=T + 60, windows=(window,)))
    routed = route(
        device_topic("cam-1", Channel.TELEMETRY), payload, received_at=T, known_devices=KNOWN
    )
    assert isinstance(routed, Routed)
    assert routed.telemetry[0]["latency_p50_ms"] == 5.0
    assert routed.telemetry[0]["latency_p95_ms"] == 20.0
