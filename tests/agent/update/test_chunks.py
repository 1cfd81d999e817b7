"""Chunk assembly: any order, duplicates harmless, nothing past the declared size."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.agent.update.chunks import ChunkAssembler, ChunkOutcome
from edgefleet.shared.errors import ArtifactError, ArtifactTooLargeError
from tests.shared.factories import manifest

DATA = bytes(range(256)) * 18 + b"tail"  # 4612 bytes: 4 full chunks of 1024 and one of 516


def chunks(data: bytes = DATA, size: int = 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def assembler(data: bytes = DATA) -> ChunkAssembler:
    return ChunkAssembler(manifest(artifact=data))


def test_chunks_in_order_make_the_artifact() -> None:
    parts = assembler()
    for index, chunk in enumerate(chunks()):
        assert parts.accept(index, chunk) is ChunkOutcome.NEW
    assert parts.complete
    assert bytes(parts.finish()) == DATA


@settings(max_examples=50, deadline=None)
@given(order=st.permutations(range(5)), repeats=st.lists(st.integers(0, 4), max_size=10))
def test_any_order_with_duplicates_makes_the_same_artifact(
    order: list[int], repeats: list[int]
) -> None:
    parts = assembler()
    pieces = chunks()
    outcomes = [parts.accept(i, pieces[i]) for i in [*order, *repeats]]
    assert outcomes[:5] == [ChunkOutcome.NEW] * 5
    assert outcomes[5:] == [ChunkOutcome.DUPLICATE] * len(repeats)
    assert bytes(parts.finish()) == DATA


def test_missing_lists_what_a_resume_must_fetch() -> None:
    parts = assembler()
    pieces = chunks()
    for index in (4, 0, 2):
        parts.accept(index, pieces[index])
    assert parts.missing() == [1, 3]
    assert not parts.complete
    assert parts.progress == pytest.approx(3 / 5)
    assert parts.received_bytes == 2 * 1024 + 516


@pytest.mark.parametrize("index", [-1, 5, 1000])
def test_chunk_beyond_the_count_is_refused(index: int) -> None:
    with pytest.raises(ArtifactError, match="outside") as caught:
        assembler().accept(index, b"x" * 1024)
    assert caught.value.reason == "chunk_out_of_range"


@pytest.mark.parametrize(
    ("index", "length"), [(0, 1025), (4, 517), (4, 1024)], ids=["full", "last+1", "last-as-full"]
)
def test_bytes_beyond_the_declared_size_are_refused(index: int, length: int) -> None:
    parts = assembler()
    with pytest.raises(ArtifactTooLargeError):
        parts.accept(index, b"x" * length)
    assert parts.missing() == [0, 1, 2, 3, 4]


def test_short_chunk_is_refused() -> None:
    with pytest.raises(ArtifactError) as caught:
        assembler().accept(1, b"x" * 1000)
    assert caught.value.reason == "short_chunk"


def test_finish_before_complete_names_the_missing_chunks() -> None:
    parts = assembler()
    parts.accept(0, chunks()[0])
    with pytest.raises(ArtifactError, match=r"4 of 5 chunks missing \(first: \[1, 2, 3, 4\]\)"):
        parts.finish()


def test_wrong_bytes_of_the_right_size_fail_the_sha256_check() -> None:
    parts = assembler()
    pieces = chunks()
    pieces[2] = bytes(reversed(pieces[2]))
    for index, chunk in enumerate(pieces):
        parts.accept(index, chunk)
    with pytest.raises(ArtifactError) as caught:
        parts.finish()
    assert caught.value.reason == "sha256_mismatch"


def test_duplicate_with_other_bytes_keeps_the_first() -> None:
    """A retained chunk redelivered is identical; a forged duplicate cannot overwrite."""
    parts = assembler()
    pieces = chunks()
    for index, chunk in enumerate(pieces):
        parts.accept(index, chunk)
    assert parts.accept(1, b"\0" * 1024) is ChunkOutcome.DUPLICATE
    assert hashlib.sha256(parts.finish()).hexdigest() == hashlib.sha256(DATA).hexdigest()


def test_single_chunk_artifact() -> None:
    data = bytes(range(7)) * 100
    parts = assembler(data)
    parts.accept(0, data)
    assert bytes(parts.finish()) == data
