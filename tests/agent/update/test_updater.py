"""The updater shell on real parts: real storage, real models in the real runtime, real service.

Chunks are handed to it as the agent's loop would after the transport
received them; the subscriptions it asks for are recorded (the transport
itself is tested against the broker in ``tests/agent/test_transport.py`` and
the whole path end to end in ``tests/agent/e2e``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.errors import InferenceFailedError
from edgefleet.agent.inference import InferenceService
from edgefleet.agent.runtime import ModelRunner
from edgefleet.agent.storage import Storage
from edgefleet.agent.update.intake import DeviceFacts, Intake
from edgefleet.agent.update.recovery import recover
from edgefleet.agent.update.refetch import MAX_REFETCHES
from edgefleet.agent.update.updater import Updater
from edgefleet.shared.agent_config import DriftSection, UpdateSection
from edgefleet.shared.manifest import Manifest, SelfTest, SelfTestVector
from edgefleet.shared.messages import (
    Deployment,
    Desired,
    Event,
    EventKind,
    Slot,
    UpdatePhase,
    decode_as,
    encode,
)
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.topics import artifact_filter, artifact_topic
from tests.agent.signed_models import (
    chunks,
    deployment,
    desired,
    manifest_for,
    nan_model,
    with_version,
)
from tests.harness.models import TfliteModels
from tests.shared.factories import DAY, NOW, Fleet, key, key_list_envelope
from tests.shared.factories import manifest as fake_manifest

FLEET = Fleet()
QUICK = UpdateSection(
    probation_seconds=0.0,
    probation_min_inferences=0,
    download_timeout_seconds=60.0,
    shadow_samples=20,
)


class Clock:
    def __init__(self) -> None:
        self.elapsed = 0.0

    def time(self) -> float:
        return NOW + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed


class Subscriptions:
    def __init__(self) -> None:
        self.active: set[str] = set()
        self.calls: list[str] = []

    def subscribe(self, topic_filter: str) -> None:
        self.active.add(topic_filter)
        self.calls.append(topic_filter)

    def unsubscribe(self, topic_filter: str) -> None:
        self.active.discard(topic_filter)


class Crash(BaseException):
    """Stands for SIGKILL in the phase hook: nothing after it runs."""


class Device:
    """One updater over one data directory, rebuilt as after a restart by :meth:`restart`."""

    def __init__(self, root: Path, rules: UpdateSection = QUICK) -> None:
        self.root = root
        self.rules = rules
        self.clock = Clock()
        self.events: list[Event] = []
        self.crash_in: UpdatePhase | None = None
        self.restart()

    def restart(self) -> None:
        self.storage = Storage.open(self.root)
        self.service = InferenceService(drift=DriftSection(bytes_per_hour=0))
        self.subs = Subscriptions()
        facts = DeviceFacts(profile="sim", max_artifact_bytes=1 << 20, rules=self.rules)
        self.updater = Updater(
            storage=self.storage,
            serving=self.service,
            load_runner=lambda path, manifest: ModelRunner.load(
                path, manifest, threads=1, xnnpack=False
            ),
            subscriptions=self.subs,
            emit=self.events.append,
            intake=Intake(self.storage, facts, FLEET.root_v1),
            clock=self.clock.time,
            monotonic=self.clock.monotonic,
            on_phase=self._hook,
        )
        self.updater.boot()

    def _hook(self, phase: UpdatePhase) -> None:
        if phase is self.crash_in:
            self.crash_in = None
            raise Crash(phase.value)

    def feed(self, data: bytes, order: list[int] | None = None, *, sha: str | None = None) -> None:
        """Hand over chunks as published on ``sha``'s topics (by default, the data's own)."""
        sha = sha or hashlib.sha256(data).hexdigest()
        parts = chunks(data)
        for index in order if order is not None else range(len(parts)):
            self.updater.on_chunk(sha, index, parts[index])

    def install(self, revision: int, manifest: Manifest, data: bytes) -> None:
        self.updater.on_desired(desired(FLEET, revision, deployment(FLEET, manifest)))
        self.feed(data)
        self.updater.tick()

    def assert_failed(self, slug: str, *, serving: int = 1) -> None:
        """The update failed for ``slug``, left nothing in slot B, and ``serving`` still serves."""
        assert self.events[-1].kind is EventKind.FAILED
        assert (self.events[-1].reason or "").startswith(f"{slug}: "), self.events[-1].reason
        assert self.storage.record(Slot.B) is None
        assert self.serving() == serving

    def phase(self) -> UpdatePhase:
        return self.updater.state.phase

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def serving(self) -> int | None:
        active = self.service.active
        return None if active is None else active.runner.manifest.version


@pytest.fixture
def float32(tflite_models: TfliteModels) -> tuple[bytes, Manifest]:
    return tflite_models.float32, manifest_for(tflite_models.float32, 1)


@pytest.fixture
def int8(tflite_models: TfliteModels) -> tuple[bytes, Manifest]:
    return tflite_models.int8, manifest_for(tflite_models.int8, 2)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path / "data")


@pytest.fixture
def running(device: Device, float32: tuple[bytes, Manifest]) -> Device:
    """A device serving the float32 model as v1 (committed)."""
    device.install(1, float32[1], float32[0])
    assert device.phase() is UpdatePhase.COMMITTED
    device.events.clear()
    return device


def test_a_signed_model_is_installed_and_served(
    device: Device, float32: tuple[bytes, Manifest], tflite_models: TfliteModels
) -> None:
    data, manifest = float32
    device.updater.on_desired(desired(FLEET, 1, deployment(FLEET, manifest)))
    assert device.kinds() == [EventKind.RECEIVED, EventKind.DOWNLOADING]
    assert device.subs.active == {artifact_filter(manifest.artifact.sha256)}
    order = list(range(manifest.artifact.chunk_count))
    random.Random(3).shuffle(order)  # noqa: S311  (test data order)
    device.feed(data, order + order[:2])
    assert device.kinds() == [
        EventKind.RECEIVED,
        EventKind.DOWNLOADING,
        *[EventKind.DOWNLOADING] * (len(device.events) - 4),
        EventKind.VERIFIED,
        EventKind.INSTALLED,
    ]
    assert device.subs.active == set()
    assert device.phase() is UpdatePhase.ACTIVE
    sample = tflite_models.representative[:5]
    expected = ModelRunner.load(
        device.storage.model_path(Slot.A), manifest, threads=1, xnnpack=False
    ).predict(sample)
    np.testing.assert_allclose(device.service.predict(sample), expected)
    device.updater.tick()
    assert device.kinds()[-1] is EventKind.HEALTHY
    assert device.phase() is UpdatePhase.COMMITTED
    assert device.storage.pointer() is Slot.A
    assert device.storage.read_antirollback().accepted["vibration"].version == 1
    assert [(m.slot, m.active) for m in device.updater.models()] == [(Slot.A, True)]
    assert {e.rollout_id for e in device.events} == {"r-1"}


def test_an_update_goes_to_the_other_slot_and_keeps_the_old_one(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    running.install(2, int8[1], int8[0])
    assert running.kinds()[-1] is EventKind.HEALTHY
    assert running.storage.pointer() is Slot.B
    assert running.serving() == 2
    assert [(m.version, m.slot, m.active) for m in running.updater.models()] == [
        (1, Slot.A, False),
        (2, Slot.B, True),
    ]


def _tampered(envelope: SignedEnvelope) -> SignedEnvelope:
    signed = dict(envelope.signed)
    signed["expires_at"] = signed["expires_at"] + 1
    return dataclasses.replace(envelope, signed=signed)


REFUSALS: dict[str, Callable[[Manifest], SignedEnvelope]] = {
    "bad_signature": lambda m: _tampered(FLEET.sign(m)),
    "unknown_key": lambda m: FLEET.sign(m, key("stranger")),
    "expired": lambda m: FLEET.sign(
        dataclasses.replace(m, expires_at=NOW - 1, created_at=NOW - DAY)
    ),
    "wrong_profile": lambda m: FLEET.sign(dataclasses.replace(m, hardware_profile="rpi4")),
}


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_refused_updates_write_nothing_and_the_model_keeps_serving(
    running: Device, int8: tuple[bytes, Manifest], reason: str
) -> None:
    manifest = int8[1]
    envelope = REFUSALS[reason](manifest)
    running.updater.on_desired(desired(FLEET, 9, deployment(FLEET, manifest, envelope=envelope)))
    [event] = running.events
    assert event.kind is EventKind.FAILED
    assert (event.reason or "").startswith(f"{reason}: ")
    assert running.subs.calls.count(artifact_filter(manifest.artifact.sha256)) == 0
    assert running.storage.record(Slot.B) is None
    assert running.serving() == 1
    assert running.phase() is UpdatePhase.COMMITTED


def test_an_older_version_is_refused_as_a_rollback(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    running.install(2, with_version(manifest, 3), data)
    running.events.clear()
    running.updater.on_desired(desired(FLEET, 3, deployment(FLEET, with_version(manifest, 2))))
    [event] = running.events
    assert (event.reason or "").startswith("rollback: ")
    assert running.serving() == 3


def test_same_version_other_bytes_is_a_conflict_and_same_bytes_a_no_op(
    running: Device, float32: tuple[bytes, Manifest], int8: tuple[bytes, Manifest]
) -> None:
    conflicting = with_version(int8[1], 1)
    running.updater.on_desired(desired(FLEET, 2, deployment(FLEET, conflicting)))
    [event] = running.events
    assert (event.reason or "").startswith("version_conflict: ")
    running.updater.on_desired(desired(FLEET, 3, deployment(FLEET, float32[1])))
    assert len(running.events) == 1
    assert running.updater.state.revision == 3


def test_oversized_declared_artifact_is_refused_before_download(device: Device) -> None:
    big = bytes(range(256)) * (5 * 1024)  # 1.25 MiB, over the device's 1 MiB
    device.updater.on_desired(
        desired(FLEET, 1, deployment(FLEET, fake_manifest(artifact=big, profile="sim")))
    )
    [event] = device.events
    assert (event.reason or "").startswith("artifact_too_large: ")
    assert device.subs.calls == []


def test_stale_and_repeated_revisions_are_ignored(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    running.updater.on_desired(desired(FLEET, 1, deployment(FLEET, int8[1])))
    assert running.events == []
    assert running.phase() is UpdatePhase.COMMITTED


def test_chunk_beyond_the_declared_size_fails_the_update(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    running.updater.on_desired(desired(FLEET, 2, deployment(FLEET, manifest)))
    last = manifest.artifact.chunk_count - 1
    running.updater.on_chunk(manifest.artifact.sha256, last, chunks(data)[last] + b"extra")
    running.assert_failed("artifact_too_large")
    assert running.subs.active == set()


def flipped(data: bytes) -> bytes:
    """``data`` with one bit of its last byte flipped, as a bad link might deliver it."""
    return data[:-1] + bytes([data[-1] ^ 1])


def test_bytes_damaged_once_are_fetched_again_and_installed(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    running.updater.on_desired(desired(FLEET, 2, deployment(FLEET, manifest)))
    running.feed(flipped(data), sha=manifest.artifact.sha256)
    assert running.phase() is UpdatePhase.DOWNLOADING
    assert running.subs.calls.count(artifact_filter(manifest.artifact.sha256)) == 2
    running.feed(data)
    assert running.phase() is UpdatePhase.ACTIVE
    assert running.serving() == 2
    refetches = [e for e in running.events if (e.reason or "").startswith("refetch 1 of 3: ")]
    assert [(e.kind, e.progress) for e in refetches] == [(EventKind.DOWNLOADING, 0.0)]
    assert "sha256_mismatch: " in (refetches[0].reason or "")


def test_bytes_that_never_hash_to_the_manifest_fail_after_the_refetches(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    sha = manifest.artifact.sha256
    running.updater.on_desired(desired(FLEET, 2, deployment(FLEET, manifest)))
    for _ in range(MAX_REFETCHES + 1):
        running.feed(flipped(data), sha=sha)
    running.assert_failed("download_corrupt")
    assert "in 4 fetches; the last two fetches brought identical bytes" in (
        running.events[-1].reason or ""
    )
    assert running.subs.calls.count(artifact_filter(sha)) == MAX_REFETCHES + 1
    assert running.subs.active == set()


def test_missing_chunks_are_asked_for_again_then_the_download_times_out(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    sha = manifest.artifact.sha256
    running.updater.on_desired(desired(FLEET, 2, deployment(FLEET, manifest)))
    running.feed(data, [0])
    running.clock.elapsed += 11
    running.updater.tick()
    count = manifest.artifact.chunk_count
    assert {artifact_topic(sha, i) for i in range(1, count)} <= running.subs.active
    running.clock.elapsed += 60
    running.updater.tick()
    running.assert_failed("download_timeout")
    assert running.subs.active == set()
    assert running.phase() is UpdatePhase.FAILED


def test_a_model_that_misses_its_self_test_is_discarded(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    vectors = manifest.self_test.vectors
    wrong = SelfTest(
        vectors=(SelfTestVector(vectors[0].input, tuple(v + 0.5 for v in vectors[0].expected)),),
        tolerance=manifest.self_test.tolerance,
    )
    running.install(2, dataclasses.replace(manifest, self_test=wrong), data)
    running.assert_failed("self_test_failed")
    assert running.storage.read_antirollback().accepted["vibration"].version == 1


def test_a_model_that_breaches_probation_is_rolled_back_by_itself(
    tmp_path: Path, float32: tuple[bytes, Manifest]
) -> None:
    rules = UpdateSection(probation_seconds=3600.0, probation_min_inferences=20)
    device = Device(tmp_path / "data", rules)
    device.install(1, float32[1], float32[0])
    device.clock.elapsed += 3600
    device.updater.tick()
    for row in np.random.default_rng(0).uniform(-1, 1, (30, 4)):
        device.service.predict(row)
    data, bad = nan_model()
    device.install(2, bad, data)
    assert device.serving() == 5
    failures = 0
    for row in np.random.default_rng(1).uniform(-1, 1, (10, 4)):
        try:
            device.service.predict(row)
        except InferenceFailedError:
            failures += 1
    assert failures > 0
    device.updater.tick()
    assert device.events[-1].kind is EventKind.ROLLED_BACK
    assert (device.events[-1].reason or "").startswith("error_rate: ")
    assert device.serving() == 1
    assert device.storage.pointer() is Slot.A
    assert device.storage.record(Slot.B) is None


def test_shadow_candidate_is_compared_then_promoted_without_a_second_download(
    running: Device, int8: tuple[bytes, Manifest], tflite_models: TfliteModels
) -> None:
    data, manifest = int8
    shadow = deployment(FLEET, manifest, shadow=True)
    running.updater.on_desired(desired(FLEET, 2, shadow))
    running.feed(data)
    assert running.updater.state.shadowing
    assert running.serving() == 1
    for row in tflite_models.representative:
        running.service.predict(row)
    assert running.service.wait_for_shadow(5.0)
    report = running.service.shadow_report()
    running.updater.tick()
    verified = running.events[-1]
    assert verified.kind is EventKind.VERIFIED
    assert (verified.reason or "").startswith("shadow: agreement ")
    # The same result as numbers, which is what the server stores and gates on.
    assert verified.shadow == report.summary()
    assert verified.shadow is not None
    # Calls that found the shadow queue full are skipped, never waited for.
    assert verified.shadow.samples + report.skipped == len(tflite_models.representative)
    assert verified.shadow.samples >= QUICK.shadow_samples
    assert verified.shadow.agreement >= 0.9  # the int8 build of the same classifier
    assert verified.shadow.latency_delta_ms is not None
    assert decode_as(Event, encode(verified)) == verified
    calls = len(running.subs.calls)
    running.updater.on_desired(desired(FLEET, 3, deployment(FLEET, manifest)))
    assert running.kinds()[-2:] == [EventKind.RECEIVED, EventKind.INSTALLED]
    assert len(running.subs.calls) == calls
    assert running.serving() == 2


def test_extra_models_in_one_desired_are_refused_with_a_reason(
    device: Device, float32: tuple[bytes, Manifest]
) -> None:
    other = dataclasses.replace(float32[1], model="other")
    message = desired(FLEET, 1, deployment(FLEET, float32[1]), deployment(FLEET, other))
    device.updater.on_desired(message)
    assert device.events[0].model == "other"
    assert (device.events[0].reason or "").startswith("one_model_per_device: ")
    assert device.kinds()[1:] == [EventKind.RECEIVED, EventKind.DOWNLOADING]


def test_a_rotated_key_list_is_trusted_and_persisted(
    device: Device, float32: tuple[bytes, Manifest]
) -> None:
    new_signer = key("signer-new")
    keys_v2 = key_list_envelope(2, [new_signer], 1, signed_by=FLEET.roots[:2])
    message = Desired(
        revision=1,
        issued_at=NOW,
        deployments=(Deployment("vibration", FLEET.sign(float32[1], new_signer), rollout_id=None),),
        signing_keys=keys_v2,
    )
    device.updater.on_desired(message)
    assert device.kinds() == [EventKind.RECEIVED, EventKind.DOWNLOADING]
    assert device.storage.read_trust(FLEET.root_v1).signing_keys_envelope == keys_v2


def test_a_key_list_the_root_did_not_sign_refuses_the_update(
    device: Device, float32: tuple[bytes, Manifest]
) -> None:
    forged = key_list_envelope(2, [key("evil")], 1, signed_by=[key("evil")])
    message = dataclasses.replace(
        desired(FLEET, 1, deployment(FLEET, float32[1])), signing_keys=forged
    )
    device.updater.on_desired(message)
    [event] = device.events
    assert event.kind is EventKind.FAILED
    assert (event.reason or "").startswith("unknown_key: ")
    assert device.subs.calls == []


def test_a_desired_arriving_mid_update_waits_its_turn(
    running: Device, int8: tuple[bytes, Manifest]
) -> None:
    data, manifest = int8
    running.updater.on_desired(desired(FLEET, 2, deployment(FLEET, manifest)))
    running.updater.on_desired(desired(FLEET, 3, deployment(FLEET, with_version(manifest, 3))))
    assert running.kinds() == [EventKind.RECEIVED, EventKind.DOWNLOADING]
    running.feed(data)
    running.updater.tick()  # commits v2, then takes up v3
    assert running.kinds()[-3:] == [EventKind.HEALTHY, EventKind.RECEIVED, EventKind.DOWNLOADING]
    assert running.events[-1].version == 3


# -- crashes, in process: the hook raises where SIGKILL would land ---------------------------


@pytest.mark.parametrize(
    ("phase", "final"),
    [
        (UpdatePhase.DOWNLOADING, 2),
        (UpdatePhase.VERIFYING, 2),
        (UpdatePhase.STAGED, 2),
        (UpdatePhase.TESTING, 2),
        (UpdatePhase.ACTIVE, 1),
    ],
)
def test_a_crash_in_each_phase_boots_one_verified_model(
    running: Device, int8: tuple[bytes, Manifest], phase: UpdatePhase, final: int
) -> None:
    data, manifest = int8
    running.crash_in = phase
    with pytest.raises(Crash):
        running.install(2, manifest, data)
    left = running.storage.read_update_state()
    assert left.phase is phase
    assert (running.storage.pointer() is Slot.B) == (phase is UpdatePhase.ACTIVE)
    decision = recover(left, running.storage.view(), now=running.clock.time())
    assert decision.boot is Slot.A  # the old model, in every phase
    running.events.clear()
    running.restart()
    assert running.storage.view().verified[Slot.A].version == 1
    if phase is UpdatePhase.ACTIVE:
        assert running.kinds() == [EventKind.ROLLED_BACK]
        assert "restarted during probation" in (running.events[0].reason or "")
        assert running.storage.record(Slot.B) is None
    else:
        if phase in (UpdatePhase.DOWNLOADING, UpdatePhase.VERIFYING):
            running.feed(data)  # the retained chunks come again
        running.updater.tick()
        assert running.kinds()[-2:] == [EventKind.INSTALLED, EventKind.HEALTHY]
    assert running.serving() == final


def test_a_first_model_that_fails_probation_leaves_nothing_served_after_a_restart(
    tmp_path: Path,
) -> None:
    device = Device(tmp_path / "data", UpdateSection(probation_seconds=600.0))
    data, bad = nan_model()
    device.install(1, bad, data)
    assert device.serving() == 5
    for row in np.random.default_rng(2).uniform(-1, 0, (5, 4)):
        with pytest.raises(InferenceFailedError):
            device.service.predict(row)
    device.updater.tick()
    assert device.events[-1].kind is EventKind.ROLLED_BACK
    assert device.storage.pointer() is None
    # The service cannot unload a model: the agent must restart to stop serving it.
    assert device.updater.needs_restart
    device.restart()
    assert device.serving() is None
    assert not device.updater.needs_restart
