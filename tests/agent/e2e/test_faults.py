"""Bad things on the device and on the wire: a clear error, no crash, the model keeps serving."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess

import pytest

from edgefleet.shared.messages import Command, CommandKind, Deployment, EventKind, encode
from edgefleet.shared.topics import artifact_topic
from tests.agent.e2e.conftest import DeviceMaker
from tests.agent.e2e.harness import FAST_UPDATES, FLEET, wait_until
from tests.agent.signed_models import manifest_for
from tests.harness.models import TfliteModels
from tests.shared.factories import NOW
from tests.shared.factories import manifest as made_up_manifest

pytestmark = pytest.mark.slow


def test_a_corrupt_model_file_falls_back_to_the_other_slot_then_to_nothing(
    make_serving: DeviceMaker, tflite_models: TfliteModels
) -> None:
    device = make_serving()
    device.server.install(manifest_for(tflite_models.int8, 2), tflite_models.int8)
    assert device.agent.terminate() == 0

    served = device.data_dir / "slots" / "b" / "model.tflite"
    served.write_bytes(served.read_bytes()[:-10] + b"corrupted!")
    device.restart().wait_api()
    event = device.server.wait_event(EventKind.ROLLED_BACK, 1)
    assert (event.reason or "").startswith("slot_unusable: ")
    assert device.agent.model_version() == 1

    assert device.agent.terminate() == 0
    (device.data_dir / "slots" / "a" / "model.tflite").write_bytes(b"TFL3 and then nothing")
    device.restart().wait_api()
    device.agent.wait_line("damaged on disk")
    status, body = device.agent.request("GET", "/v1/model")
    assert status == 503, body
    assert device.agent.terminate() == 0


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="no user namespaces for a private tmpfs")
def test_a_full_disk_fails_the_update_and_keeps_the_model(
    make_device: DeviceMaker, tflite_models: TfliteModels
) -> None:
    """The data directory is a real 2 MiB tmpfs (a private mount namespace): real ENOSPC."""
    mount = 'mount -t tmpfs -o size=2m,mode=0700 tmpfs "$1" && shift && exec "$@"'
    device = make_device(max_artifact_bytes=8 << 20)
    device.agent.wrapper = ("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount)
    device.agent.wrapper += ("sh", str(device.data_dir))
    device.data_dir.mkdir()
    device.agent.start().wait_api()
    device.server.install(manifest_for(tflite_models.float32, 1), tflite_models.float32)

    big = bytes(range(256)) * (12 * 1024)  # 3 MiB: more than the file system holds
    chunk = 256 * 1024
    base = made_up_manifest(version=2, profile="sim", artifact=big)
    manifest = dataclasses.replace(
        base,
        artifact=dataclasses.replace(
            base.artifact, chunk_size=chunk, chunk_count=len(big) // chunk
        ),
    )
    sha = hashlib.sha256(big).hexdigest()
    for index in range(len(big) // chunk):
        device.server.retain(artifact_topic(sha, index), big[index * chunk : (index + 1) * chunk])
    device.server.deploy(Deployment("vibration", FLEET.sign(manifest)))
    event = device.server.wait_event(EventKind.FAILED, 2)
    assert (event.reason or "").startswith("disk_full: "), event.reason
    assert "the disk is full" in (event.reason or "")
    assert device.agent.model_version() == 1
    status, body = device.agent.predict(tflite_models.representative[:1].tolist())
    assert (status, body["version"]) == (200, 1)
    assert device.agent.terminate() == 0


def test_a_missing_chunk_times_out_the_download(
    make_serving: DeviceMaker, tflite_models: TfliteModels
) -> None:
    update = dataclasses.replace(FAST_UPDATES, download_timeout_seconds=3.0)
    device = make_serving(update=update)
    manifest = manifest_for(tflite_models.int8, 2)
    device.server.publish_chunks(tflite_models.int8, skip=frozenset({1}))
    device.server.deploy(Deployment("vibration", FLEET.sign(manifest)))
    event = device.server.wait_event(EventKind.FAILED, 2)
    count = manifest.artifact.chunk_count
    assert event.reason == (
        f"download_timeout: 1 of {count} chunks missing after the deadline (first: [1])"
    )
    device.agent.wait_line("asking again for 1 chunks")
    assert device.agent.model_version() == 1
    assert not (device.data_dir / "slots" / "b" / "model.tflite").exists()


def test_malformed_and_unsupported_commands_are_reported_and_survived(
    make_serving: DeviceMaker, tflite_models: TfliteModels
) -> None:
    device = make_serving()
    device.server.command(b"\xff\xfe not a command")
    device.server.command(
        encode(Command(command_id="c-7", kind=CommandKind.CONFIG_PUSH, issued_at=NOW))
    )
    reasons = wait_until(
        lambda: (
            [e.reason or "" for e in device.server.events() if (e.reason or "").startswith("cmd")]
            if len([e for e in device.server.events() if e.kind is EventKind.FAILED]) >= 2
            else None
        ),
        "two command rejections",
    )
    assert reasons[0].startswith("cmd: bad_cmd: ")
    assert reasons[1].startswith("cmd c-7: unsupported_cmd: config_push")
    states = len(device.server.states())
    device.server.command(encode(Command(command_id="c-8", kind=CommandKind.PING, issued_at=NOW)))
    wait_until(lambda: len(device.server.states()) > states, "a fresh state after a ping")
    assert device.agent.model_version() == 1
    assert device.agent.terminate() == 0


def test_restart_command_restarts_the_agent_in_place(
    make_serving: DeviceMaker, tflite_models: TfliteModels
) -> None:
    device = make_serving()
    assert device.agent.process is not None
    pid = device.agent.process.pid
    started = sum('"msg": "agent ' in line and "started" in line for line in device.agent.lines)
    device.server.command(
        encode(Command(command_id="r-1", kind=CommandKind.RESTART_AGENT, issued_at=NOW))
    )
    wait_until(
        lambda: (
            sum('"msg": "agent ' in line and "started" in line for line in device.agent.lines)
            > started
        ),
        "the agent started again",
    )
    assert device.agent.process.pid == pid  # exec'd in place: systemd sees the same service
    assert device.agent.process.poll() is None
    device.agent.wait_api()
    assert device.agent.model_version() == 1
    assert device.agent.terminate() == 0
