"""The agent's data directory: two model slots, the active pointer, and its persisted state.

::

    {data_dir}/
      lock                   held (flock) by the one agent using this directory
      active                 "a" or "b": the slot being served (absent: none)
      update.json            the update state machine (edgefleet.agent.update.state)
      trust.json             the trust store (pinned root, rotated roots, key list)
      antirollback.json      highest accepted version per model
      slots/{a,b}/model.tflite
      slots/{a,b}/slot.json  the slot's signed manifest and whether it passed its self-test

Every write is a temp file in the same directory, fsync, rename, fsync of
the directory: after a power cut a reader finds the old file or the new one,
never a torn one. A slot's record is removed *before* its model file is
replaced and written again after, so no record ever describes bytes it did
not see. A full disk (or any other write failure) is a :class:`StorageError`
and leaves every existing file as it was.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgefleet.agent.errors import StorageError
from edgefleet.agent.update.recovery import SlotModel, SlotsView
from edgefleet.agent.update.state import UpdateState
from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.admission import Admission
from edgefleet.shared.antirollback import AntiRollbackState
from edgefleet.shared.errors import EdgefleetError, MessageError, UpdateRejectedError
from edgefleet.shared.manifest import Manifest, check_artifact
from edgefleet.shared.messages import Slot
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
RECORD_FILE = "slot.json"
RECORD_MAX_BYTES = 512 * 1024
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """What a slot holds, as signed; ``tested`` once the bytes passed their self-test."""

    manifest: SignedEnvelope
    tested: bool = False

    def parsed(self) -> Manifest:
        return Manifest.from_signed(self.manifest.signed)


class Storage:
    """The data directory; every method is one durable step (or a read)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock: IO[bytes] | None = None

    @classmethod
    def open(cls, data_dir: Path) -> Storage:
        """Create the layout if needed (mode 0700: it holds the device's trust state)."""
        storage = cls(data_dir)
        try:
            for slot in Slot:
                storage.slot_dir(slot).mkdir(mode=0o700, parents=True, exist_ok=True)
            data_dir.chmod(0o700)
        except OSError as err:
            raise _storage_error(f"cannot create the data directory {data_dir}", err) from err
        return storage

    def lock(self) -> None:
        """Hold the directory for this process: two agents on one slot pair would corrupt it."""
        handle = (self.root / "lock").open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.close()
            raise StorageError(
                f"another agent is using {self.root}", reason="data_dir_locked"
            ) from err
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def outbox_path(self) -> Path:
        return self.root / "outbox.sqlite"

    # -- small documents ---------------------------------------------------------

    def read_update_state(self) -> UpdateState:
        """The persisted state; :class:`UpdateStateError` if it is unreadable."""
        data = self._read(self.root / "update.json")
        return UpdateState() if data is None else UpdateState.from_bytes(data)

    def write_update_state(self, state: UpdateState) -> None:
        self._write(self.root / "update.json", state.to_bytes())

    def read_trust(self, pinned: SignedEnvelope) -> TrustStore:
        """The persisted store, or the config's pinned root if that is newer or the file bad.

        The file is re-verified from its root down (the disk is not trusted);
        a config that pins a newer root than the file (a re-provisioned
        device) wins.
        """
        fresh = TrustStore.pin(pinned)
        data = self._read(self.root / "trust.json")
        if data is None:
            return fresh
        try:
            stored = TrustStore.from_bytes(data)
        except EdgefleetError as err:
            log.warning("trust store on disk is unusable (%s); starting from the pinned root", err)
            return fresh
        if stored.root.version < fresh.root.version:
            return fresh
        return stored

    def write_trust(self, store: TrustStore) -> None:
        self._write(self.root / "trust.json", store.to_bytes())

    def read_antirollback(self) -> AntiRollbackState:
        """The accepted versions; a damaged file is rebuilt from the slots, never emptied.

        Forgetting the record would let a replayed old manifest in; the
        versions the slots hold are a floor nobody can lower.
        """
        data = self._read(self.root / "antirollback.json")
        if data is None:
            return AntiRollbackState()
        try:
            return AntiRollbackState.from_bytes(data)
        except MessageError as err:
            log.warning("anti-rollback state is unreadable (%s); rebuilding it from the slots", err)
            return self._floor_from_slots()

    def write_antirollback(self, state: AntiRollbackState) -> None:
        self._write(self.root / "antirollback.json", state.to_bytes())

    # -- slots ---------------------------------------------------------------------

    def slot_dir(self, slot: Slot) -> Path:
        return self.root / "slots" / slot.value

    def model_path(self, slot: Slot) -> Path:
        return self.slot_dir(slot) / MODEL_FILE

    def pointer(self) -> Slot | None:
        data = self._read(self.root / "active")
        if data is None:
            return None
        try:
            return Slot(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            log.warning("active pointer holds %r, not a slot; treating it as unset", data[:16])
            return None

    def set_pointer(self, slot: Slot | None) -> None:
        """Swap the active pointer atomically (``None``: serve nothing)."""
        path = self.root / "active"
        if slot is not None:
            self._write(path, slot.value.encode("ascii"))
            return
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(self.root)
        except OSError as err:
            raise _storage_error("cannot clear the active pointer", err) from err

    def record(self, slot: Slot) -> SlotRecord | None:
        data = self._read(self.slot_dir(slot) / RECORD_FILE)
        if data is None:
            return None
        try:
            record = schema.from_json(SlotRecord, jsoncodec.parse(data, max_bytes=RECORD_MAX_BYTES))
            record.parsed()
        except MessageError as err:
            log.warning("slot %s record is unreadable: %s", slot.value, err)
            return None
        return record

    def stage(
        self,
        slot: Slot,
        admission: Admission,
        envelope: SignedEnvelope,
        data: bytes | bytearray,
    ) -> None:
        """Write a verified artifact into ``slot`` (never the active one), untested.

        Takes the :class:`~edgefleet.shared.admission.Admission` the manifest
        earned, and checks the bytes against it before the slot is touched.
        """
        manifest = admission.manifest
        if Manifest.from_signed(envelope.signed) != manifest:
            raise StorageError("the envelope is not the admitted manifest", reason="bad_stage")
        check_artifact(manifest, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        self._refuse_active(slot, "stage into")
        self._remove(self.slot_dir(slot) / RECORD_FILE)
        self._write(self.model_path(slot), data)
        self._write_record(slot, SlotRecord(envelope, tested=False))

    def mark_tested(self, slot: Slot) -> None:
        record = self.record(slot)
        if record is None:
            raise StorageError(f"slot {slot.value} holds no staged model", reason="bad_stage")
        self._write_record(slot, SlotRecord(record.manifest, tested=True))

    def discard(self, slot: Slot) -> None:
        """Empty ``slot`` (record first, so a crash halfway leaves an unrecorded file)."""
        self._refuse_active(slot, "discard")
        self._remove(self.slot_dir(slot) / RECORD_FILE)
        self._remove(self.model_path(slot))

    def view(self) -> SlotsView:
        """The pointer and the slots fit to serve: tested, and bytes hashing to the record."""
        verified: dict[Slot, SlotModel] = {}
        for slot in Slot:
            model = self._fit(slot)
            if model is not None:
                verified[slot] = model
        return SlotsView(pointer=self.pointer(), verified=verified)

    def _fit(self, slot: Slot) -> SlotModel | None:
        record = self.record(slot)
        if record is None or not record.tested:
            return None
        manifest = record.parsed()
        try:
            digest, size = _hash_file(self.model_path(slot))
        except OSError as err:
            log.warning("slot %s model is unreadable: %s", slot.value, err)
            return None
        if (digest, size) != (manifest.artifact.sha256, manifest.artifact.size):
            log.error(
                "slot %s model does not match its manifest (%s..., %d bytes): damaged on disk",
                slot.value,
                digest[:12],
                size,
            )
            return None
        return SlotModel(manifest.model, manifest.version, manifest.artifact.sha256)

    def _floor_from_slots(self) -> AntiRollbackState:
        floor = AntiRollbackState()
        manifests = [r.parsed() for s in Slot if (r := self.record(s)) is not None and r.tested]
        for manifest in sorted(manifests, key=lambda m: m.version):
            try:
                floor = floor.record(manifest)
            except UpdateRejectedError:
                continue  # the same version in both slots: recorded once is enough
        return floor

    def _refuse_active(self, slot: Slot, what: str) -> None:
        if self.pointer() is slot:
            raise StorageError(
                f"refusing to {what} the active slot {slot.value}", reason="bad_stage"
            )

    def _write_record(self, slot: Slot, record: SlotRecord) -> None:
        self._write(self.slot_dir(slot) / RECORD_FILE, jsoncodec.canonical(schema.to_json(record)))

    # -- durable primitives ------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise _storage_error(f"cannot read {path}", err) from err

    def _write(self, path: Path, data: bytes | bytearray) -> None:
        write_atomic(path, data)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except OSError as err:
            raise _storage_error(f"cannot remove {path}", err) from err


def write_atomic(path: Path, data: bytes | bytearray) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the directory.

    On any failure the temp file is removed and ``path`` is as it was.
    """
    temp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise _storage_error(f"cannot write {path}", err) from err


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _storage_error(what: str, err: OSError) -> StorageError:
    """The one place an ``OSError`` of the data directory becomes a :class:`StorageError`."""
    if err.errno in _FULL:
        return StorageError(f"{what}: the disk is full ({err.strerror})", reason="disk_full")
    return StorageError(f"{what}: {err}")
