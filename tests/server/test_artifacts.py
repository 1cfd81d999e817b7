"""The content-addressed artifact store on a real directory."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from edgefleet.server.artifacts import ArtifactRef, ArtifactStore
from edgefleet.server.errors import InvalidInputError, NotFoundError, ServerError
from edgefleet.shared.manifest import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES

DATA = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes: chunks of 1,024 leave a short last one
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_put_and_read_round_trip(store: ArtifactStore):
    ref = store.put(DATA)

    assert ref == ArtifactRef(sha256=SHA, size=len(DATA))
    assert store.exists(SHA)
    assert store.read(SHA) == DATA
    assert store.size(SHA) == len(DATA)
    with store.open(SHA) as file:
        assert file.read() == DATA


def test_files_are_sharded_by_hash_prefix(store: ArtifactStore):
    store.put(DATA)

    assert files_under(store.root) == [store.root / SHA[:2] / SHA]
    assert stat.S_IMODE((store.root / SHA[:2] / SHA).stat().st_mode) == 0o644


def test_same_bytes_are_stored_once(store: ArtifactStore, tmp_path: Path):
    source = tmp_path / "model.tflite"
    source.write_bytes(DATA)

    first = store.put(DATA)
    again = store.put(DATA)
    from_file = store.put_file(source)

    assert first == again == from_file
    assert files_under(store.root) == [store.root / SHA[:2] / SHA]


def test_put_file_streams_a_large_file(store: ArtifactStore, tmp_path: Path):
    big = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "big.bin"
    source.write_bytes(big)

    ref = store.put_file(source)

    assert ref == ArtifactRef(hashlib.sha256(big).hexdigest(), len(big))
    assert store.read(ref.sha256) == big
    assert not any((store.root / ".tmp").iterdir())


@pytest.mark.parametrize("chunk_size", [MIN_CHUNK_BYTES, 4096, len(DATA), MAX_CHUNK_BYTES])
def test_chunks_reassemble_to_the_same_sha(store: ArtifactStore, chunk_size: int):
    store.put(DATA)

    chunks = list(store.chunks(SHA, chunk_size))
    spec = store.artifact_spec(SHA, chunk_size)

    assert hashlib.sha256(b"".join(chunks)).hexdigest() == SHA
    assert len(chunks) == spec.chunk_count
    assert all(len(c) == chunk_size for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk_size
    assert (spec.sha256, spec.size, spec.chunk_size) == (SHA, len(DATA), chunk_size)


@pytest.mark.parametrize("chunk_size", [0, MIN_CHUNK_BYTES - 1, MAX_CHUNK_BYTES + 1, True])
def test_chunk_size_out_of_bounds_is_refused(store: ArtifactStore, chunk_size: int):
    store.put(DATA)

    with pytest.raises(InvalidInputError):
        store.chunks(SHA, chunk_size)
    with pytest.raises(InvalidInputError):
        store.artifact_spec(SHA, chunk_size)


def corrupt(store: ArtifactStore, offset: int = 100) -> None:
    path = store.path(SHA)
    damaged = bytearray(path.read_bytes())
    damaged[offset] ^= 0x01
    path.write_bytes(bytes(damaged))


def test_corruption_on_disk_is_detected(store: ArtifactStore):
    store.put(DATA)
    corrupt(store)

    for read in (
        lambda: store.verify(SHA),
        lambda: store.read(SHA),
        lambda: store.chunks(SHA, 1024),  # before the first chunk goes out
        lambda: store.artifact_spec(SHA, 1024),
    ):
        with pytest.raises(ServerError) as caught:
            read()
        assert caught.value.reason == "artifact_corrupted"


def test_corruption_between_verify_and_delivery_is_detected(store: ArtifactStore):
    store.put(DATA)
    chunks = store.chunks(SHA, 1024)
    first = next(chunks)
    corrupt(store, offset=len(DATA) - 10)  # in the last chunk, past what is read ahead

    with pytest.raises(ServerError, match="corrupted"):
        list(chunks)
    assert first == DATA[:1024]


def test_putting_the_bytes_again_repairs_a_corrupted_copy(store: ArtifactStore):
    store.put(DATA)
    corrupt(store)

    store.put(DATA)

    assert store.verify(SHA) == ArtifactRef(SHA, len(DATA))


BAD_NAMES = [
    "",
    "../../etc/passwd",
    "../" + "a" * 61,
    "/" + "a" * 63,
    "ab/" + "c" * 61,
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    "a" * 64 + "\n",
    "a" * 32 + "\x00" + "a" * 31,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_no_caller_string_but_a_sha256_builds_a_path(store: ArtifactStore, tmp_path: Path, name):
    store.put(DATA)
    before = files_under(tmp_path)

    for use in (
        store.path,
        store.exists,
        store.open,
        store.read,
        store.verify,
        store.delete,
        store.size,
        lambda s: store.chunks(s, 1024),
        lambda s: store.artifact_spec(s, 1024),
    ):
        with pytest.raises(InvalidInputError) as caught:
            use(name)
        assert caught.value.reason == "bad_sha256"
    assert files_under(tmp_path) == before


def test_missing_artifacts(store: ArtifactStore):
    missing = "0" * 64

    assert not store.exists(missing)
    assert store.delete(missing) is False
    for use in (
        store.open,
        store.read,
        store.verify,
        store.size,
        lambda s: store.chunks(s, 1024),
        lambda s: store.artifact_spec(s, 1024),
    ):
        with pytest.raises(NotFoundError):
            use(missing)


def test_delete(store: ArtifactStore):
    store.put(DATA)

    assert store.delete(SHA) is True
    assert not store.exists(SHA)


def test_empty_and_oversized_artifacts_are_refused(tmp_path: Path):
    store = ArtifactStore(tmp_path / "a", max_bytes=2048)

    for data in (b"", b"x" * 2049):
        with pytest.raises(InvalidInputError):
            store.put(data)
        with pytest.raises(InvalidInputError):
            store.put_stream(io.BytesIO(data))
    assert store.put(b"x" * 2048).size == 2048
    assert files_under(tmp_path / "a") == [store.path(hashlib.sha256(b"x" * 2048).hexdigest())]


class Broken(io.RawIOBase):
    """A source that fails halfway, like an upload whose client went away."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise OSError("connection reset")
        return b"x" * 1000


def test_failed_upload_leaves_nothing_behind(store: ArtifactStore):
    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(Broken())  # type: ignore[arg-type]

    assert files_under(store.root) == []


def test_file_mode_does_not_depend_on_the_umask(store: ArtifactStore):
    old = os.umask(0o077)
    try:
        store.put(DATA)
    finally:
        os.umask(old)

    assert stat.S_IMODE(store.path(SHA).stat().st_mode) == 0o644
