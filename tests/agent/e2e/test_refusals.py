"""Every kind of bad update is refused before a byte is fetched or written, and reported."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Deployment, EventKind, Slot
from edgefleet.shared.signed import SignedEnvelope
from tests.agent.e2e.conftest import DeviceMaker
from tests.agent.e2e.harness import FLEET, Device, wait_until
from tests.agent.signed_models import manifest_for, with_version
from tests.harness.broker import MosquittoBroker
from tests.harness.models import TfliteModels
from tests.shared.factories import DAY, key
from tests.shared.factories import manifest as made_up_manifest

pytestmark = pytest.mark.slow


def tampered(manifest: Manifest) -> SignedEnvelope:
    envelope = FLEET.sign(manifest)
    signed = {**envelope.signed, "expires_at": envelope.signed["expires_at"] + DAY}
    return dataclasses.replace(envelope, signed=signed)


def refuse(
    device: Device,
    broker: MosquittoBroker,
    manifest: Manifest,
    reason: str,
    envelope: SignedEnvelope | None = None,
) -> None:
    """Deploy ``manifest`` (as ``envelope``); it must be refused for ``reason``, untouched."""
    before = len(device.server.events())
    log_before = len(broker.log_text())
    device.server.deploy(Deployment(manifest.model, envelope or FLEET.sign(manifest)))
    event = wait_until(
        lambda: next(
            (e for e in device.server.events()[before:] if e.kind is EventKind.FAILED), None
        ),
        f"a failed event for {reason}",
    )
    assert (event.reason or "").startswith(f"{reason}: "), event.reason
    assert [e.kind for e in device.server.events()[before:]] == [EventKind.FAILED]
    # Refused before downloading: the agent never subscribed to the artifact's chunks.
    assert fetched(device, manifest) not in broker.log_text()[log_before:]


def fetched(device: Device, manifest: Manifest) -> str:
    """What the broker logs when this device's agent subscribes to ``manifest``'s chunks."""
    return f"edgefleet-agent-{device.server.device_id} 1 ef/v1/a/{manifest.artifact.sha256}/+"


def test_refusals(
    make_device: DeviceMaker, broker: MosquittoBroker, tflite_models: TfliteModels
) -> None:
    device = make_device(max_artifact_bytes=64 * 1024)
    v1 = manifest_for(tflite_models.float32, 1)
    v2 = manifest_for(tflite_models.int8, 2)
    device.agent.start().wait_api()
    device.server.install(v1, tflite_models.float32)
    device.server.install(v2, tflite_models.int8)
    assert fetched(device, v2) in broker.log_text()
    slot_a = device.data_dir / "slots" / "a"
    assert sorted(p.name for p in slot_a.iterdir()) == ["model.tflite", "slot.json"]
    served = (device.data_dir / "slots" / "b" / "model.tflite").read_bytes()

    other = with_version(manifest_for(tflite_models.float32, 1), 3)
    now = int(time.time())
    cases: list[tuple[str, Manifest, Callable[[Manifest], SignedEnvelope] | None]] = [
        ("bad_signature", other, tampered),
        ("unknown_key", other, lambda m: FLEET.sign(m, key("stranger"))),
        (
            "expired",
            # the agent runs on the real clock
            dataclasses.replace(other, created_at=now - 60 * DAY, expires_at=now - DAY),
            None,
        ),
        ("wrong_profile", dataclasses.replace(other, hardware_profile="rpi4"), None),
        ("rollback", v1, None),
        ("version_conflict", with_version(manifest_for(tflite_models.float32, 1), 2), None),
        (
            "artifact_too_large",
            made_up_manifest(version=4, profile="sim", artifact=bytes(100 * 1024)),
            None,
        ),
    ]
    for reason, manifest, sign in cases:
        refuse(device, broker, manifest, reason, None if sign is None else sign(manifest))
        assert device.agent.model_version() == 2
        status, body = device.agent.predict(tflite_models.representative[:2].tolist())
        assert (status, body["version"]) == (200, 2)
    assert (device.data_dir / "slots" / "b" / "model.tflite").read_bytes() == served
    assert sorted(p.name for p in slot_a.iterdir()) == ["model.tflite", "slot.json"]
    assert device.data_dir.joinpath("active").read_text() == Slot.B.value


def test_a_desired_without_signatures_is_rejected_unread(
    make_serving: DeviceMaker, tflite_models: TfliteModels
) -> None:
    """A manifest with no signature at all does not even parse: logged and counted, no crash."""
    device = make_serving()
    envelope = FLEET.sign(manifest_for(tflite_models.int8, 2))
    unsigned = (
        b'{"deployments":[{"manifest":{"signatures":[],"signed":'
        + envelope.payload
        + b'},"model":"vibration"}],"issued_at":1800000000.0,"revision":50,"schema":1}'
    )
    device.server.retain(f"ef/v1/d/{device.server.device_id}/desired", unsigned)
    device.agent.wait_line("unusable desired")
    assert device.agent.model_version() == 1
    assert device.agent.terminate() == 0
