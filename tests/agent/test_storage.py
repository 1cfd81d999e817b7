"""The data directory: atomic documents, two slots, the pointer, and a real full disk."""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgefleet.agent.errors import StorageError, UpdateStateError
from edgefleet.agent.storage import Storage, write_atomic
from edgefleet.agent.update.recovery import SlotModel
from edgefleet.agent.update.state import UpdateState
from edgefleet.shared.admission import Admission, admit
from edgefleet.shared.antirollback import AntiRollbackState
from edgefleet.shared.errors import ArtifactError
from edgefleet.shared.messages import Slot
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore
from tests.shared.factories import NOW, Fleet, manifest, root_envelope

FLEET = Fleet()
ROOT = Path(__file__).resolve().parents[2]


def admitted(version: int, data: bytes) -> tuple[Admission, SignedEnvelope]:
    envelope = FLEET.sign(manifest(version=version, artifact=data))
    admission = admit(
        envelope,
        trust=FLEET.store,
        installed=AntiRollbackState(),
        hardware_profile="rpi4",
        max_artifact_bytes=1 << 20,
        now=NOW,
    )
    return admission, envelope


V1 = b"model-one " * 500
V2 = b"model-two " * 700


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage.open(tmp_path / "data")


def install(storage: Storage, slot: Slot, version: int, data: bytes) -> None:
    storage.stage(slot, *admitted(version, data), data)
    storage.mark_tested(slot)


def test_layout_is_private(storage: Storage) -> None:
    for path in (storage.root, storage.slot_dir(Slot.A), storage.slot_dir(Slot.B)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert storage.pointer() is None
    assert storage.view().verified == {}


def test_update_state_round_trips_and_a_damaged_one_is_a_clear_error(storage: Storage) -> None:
    assert storage.read_update_state() == UpdateState()
    state = UpdateState(revision=4)
    storage.write_update_state(state)
    assert storage.read_update_state() == state
    (storage.root / "update.json").write_bytes(b'{"phase": "act')
    with pytest.raises(UpdateStateError):
        storage.read_update_state()


def test_trust_store_persists_and_falls_back_to_the_pinned_root(storage: Storage) -> None:
    assert storage.read_trust(FLEET.root_v1) == TrustStore.pin(FLEET.root_v1)
    storage.write_trust(FLEET.store)
    assert storage.read_trust(FLEET.root_v1) == FLEET.store
    (storage.root / "trust.json").write_bytes(
        FLEET.store.to_bytes().replace(b'"sig":"', b'"sig":"A')
    )
    assert storage.read_trust(FLEET.root_v1) == TrustStore.pin(FLEET.root_v1)


def test_a_newer_pinned_root_wins_over_the_file(storage: Storage) -> None:
    storage.write_trust(FLEET.store)
    root_v2 = root_envelope(2, FLEET.roots, 2)
    assert storage.read_trust(root_v2).root.version == 2


def test_stage_writes_an_untested_slot_that_is_not_yet_fit(storage: Storage) -> None:
    admission, envelope = admitted(1, V1)
    storage.stage(Slot.A, admission, envelope, V1)
    assert storage.model_path(Slot.A).read_bytes() == V1
    record = storage.record(Slot.A)
    assert record is not None
    assert not record.tested
    assert storage.view().verified == {}
    storage.mark_tested(Slot.A)
    sha = hashlib.sha256(V1).hexdigest()
    assert storage.view().verified == {Slot.A: SlotModel("vibration", 1, sha)}
    assert not [p for p in storage.slot_dir(Slot.A).iterdir() if p.name.startswith(".tmp")]


def test_bytes_that_are_not_the_manifests_are_refused_before_the_slot_is_touched(
    storage: Storage,
) -> None:
    install(storage, Slot.B, 1, V1)
    admission, envelope = admitted(2, V2)
    with pytest.raises(ArtifactError):
        storage.stage(Slot.B, admission, envelope, V2[:-1] + b"!")
    assert storage.model_path(Slot.B).read_bytes() == V1
    other_admission, _ = admitted(3, V2)
    with pytest.raises(StorageError, match="not the admitted manifest"):
        storage.stage(Slot.B, other_admission, envelope, V2)
    assert Slot.B in storage.view().verified


def test_the_active_slot_is_never_staged_into_or_discarded(storage: Storage) -> None:
    install(storage, Slot.A, 1, V1)
    storage.set_pointer(Slot.A)
    with pytest.raises(StorageError, match="active slot a"):
        storage.stage(Slot.A, *admitted(2, V2), V2)
    with pytest.raises(StorageError, match="active slot a"):
        storage.discard(Slot.A)
    assert storage.view().verified[Slot.A].version == 1


def test_discard_empties_a_slot(storage: Storage) -> None:
    install(storage, Slot.B, 1, V1)
    storage.discard(Slot.B)
    assert storage.record(Slot.B) is None
    assert not storage.model_path(Slot.B).exists()
    storage.discard(Slot.B)  # idempotent


def test_pointer_swaps_and_clears(storage: Storage) -> None:
    storage.set_pointer(Slot.B)
    assert storage.pointer() is Slot.B
    storage.set_pointer(Slot.A)
    assert storage.pointer() is Slot.A
    storage.set_pointer(None)
    assert storage.pointer() is None
    (storage.root / "active").write_bytes(b"\xff")
    assert storage.pointer() is None


def test_damaged_model_bytes_make_a_slot_unfit(storage: Storage) -> None:
    install(storage, Slot.A, 1, V1)
    storage.model_path(Slot.A).write_bytes(V1[:-1] + b"X")
    assert storage.view().verified == {}
    storage.model_path(Slot.A).unlink()
    assert storage.view().verified == {}


def test_damaged_record_makes_a_slot_unfit(storage: Storage) -> None:
    install(storage, Slot.A, 1, V1)
    (storage.slot_dir(Slot.A) / "slot.json").write_bytes(b"{}")
    assert storage.record(Slot.A) is None
    assert storage.view().verified == {}


def test_antirollback_round_trips_and_is_rebuilt_from_the_slots_not_emptied(
    storage: Storage,
) -> None:
    assert storage.read_antirollback() == AntiRollbackState()
    install(storage, Slot.A, 4, V1)
    install(storage, Slot.B, 5, V2)
    state = AntiRollbackState().record(manifest(version=7))
    storage.write_antirollback(state)
    assert storage.read_antirollback() == state
    (storage.root / "antirollback.json").write_bytes(b"garbage")
    rebuilt = storage.read_antirollback()
    assert rebuilt.accepted["vibration"].version == 5


def test_one_agent_per_data_directory(tmp_path: Path) -> None:
    first = Storage.open(tmp_path / "data")
    first.lock()
    second = Storage.open(tmp_path / "data")
    with pytest.raises(StorageError) as caught:
        second.lock()
    assert caught.value.reason == "data_dir_locked"
    first.unlock()
    second.lock()
    second.unlock()


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "doc"
    write_atomic(target, b"old")
    with pytest.raises(StorageError, match="cannot write"):
        write_atomic(tmp_path / "missing-dir" / "doc", b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc"]


FULL_DISK = textwrap.dedent(
    """
    import subprocess, sys
    from pathlib import Path
    data = Path(sys.argv[1])
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(data)], check=True)

    from edgefleet.agent.errors import StorageError
    from edgefleet.agent.storage import Storage
    from edgefleet.shared.messages import Slot
    from tests.agent.test_storage import V1, admitted, install

    storage = Storage.open(data)
    install(storage, Slot.A, 1, V1)
    storage.set_pointer(Slot.A)
    big = bytes(range(256)) * 400  # 100 KiB: more than the 64 KiB file system holds
    try:
        storage.stage(Slot.B, *admitted(2, big), big)
    except StorageError as err:
        print("refused", err.reason, err)
    view = storage.view()
    print("verified", sorted(s.value for s in view.verified), view.pointer.value)
    print("slot-b", sorted(p.name for p in storage.slot_dir(Slot.B).iterdir()))
    print("slot-a-intact", storage.model_path(Slot.A).read_bytes() == V1)
    storage.write_update_state(storage.read_update_state())
    print("still-writable")
    """
)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "t", "/mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespaces to mount a small tmpfs")
def test_full_disk_is_a_clear_error_and_the_served_model_is_untouched(tmp_path: Path) -> None:
    """A real ENOSPC: a 64 KiB tmpfs in a private mount namespace (no root needed)."""
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount"]
        + [sys.executable, "-c", FULL_DISK, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused disk_full cannot write")
    assert "the disk is full" in lines[0]
    assert lines[1:] == [
        "verified ['a'] a",
        "slot-b []",
        "slot-a-intact True",
        "still-writable",
    ]
