"""A download whose bytes do not verify: every chunk fetched again, a bounded number of times."""

from __future__ import annotations

import pytest

from edgefleet.agent.update.download import Download, Resume, TimedOut, Verified
from edgefleet.agent.update.refetch import (
    FINGERPRINT_BYTES,
    MAX_REFETCHES,
    Corrupt,
    Refetch,
    RefetchBudget,
    changed_chunks,
    fingerprints,
)
from edgefleet.shared.errors import ArtifactError
from tests.shared.factories import manifest

DATA = bytes(range(256)) * 32  # 8 chunks of 1024
PARTS = [DATA[i : i + 1024] for i in range(0, len(DATA), 1024)]


def damaged(index: int, parts: list[bytes] = PARTS) -> list[bytes]:
    """``parts`` with one byte of chunk ``index`` flipped, as a bad link would deliver them."""
    chunk = bytearray(parts[index])
    chunk[len(chunk) // 2] ^= 0xFF
    return [bytes(chunk) if i == index else part for i, part in enumerate(parts)]


def fetch(download: Download, parts: list[bytes], *, now: float = 1.0) -> None:
    for index, part in enumerate(parts):
        download.accept(index, part, now=now)


def download() -> Download:
    return Download(manifest(artifact=DATA), now=0.0, timeout=100.0, stall=10.0)


def test_fingerprints_tell_chunks_apart_and_name_the_changed_ones() -> None:
    prints = fingerprints(DATA, 1024)
    assert len(prints) == 8
    assert {len(p) for p in prints} == {FINGERPRINT_BYTES}
    assert len(fingerprints(DATA[:-1], 1024)) == 8  # a short last chunk still counts
    assert changed_chunks(prints, prints) == []
    assert changed_chunks(prints, fingerprints(b"".join(damaged(5)), 1024)) == [5]


def test_the_budget_allows_a_bounded_number_of_refetches_then_gives_up() -> None:
    budget = RefetchBudget()
    prints = fingerprints(DATA, 1024)
    outcomes = [budget.mismatch(prints, "sha256_mismatch: x") for _ in range(MAX_REFETCHES + 1)]
    assert [type(o) for o in outcomes] == [Refetch] * MAX_REFETCHES + [Corrupt]
    assert outcomes[0].reason == "refetch 1 of 3: sha256_mismatch: x; fetching every chunk again"
    assert outcomes[-1].reason.startswith("download_corrupt: ")
    assert "in 4 fetches; the last two fetches brought identical bytes" in outcomes[-1].reason
    assert outcomes[-1].reason.endswith("; last: sha256_mismatch: x")
    assert budget.used == MAX_REFETCHES
    assert isinstance(budget.mismatch(prints, "again"), Corrupt)  # spent stays spent


def test_a_reason_names_the_chunks_that_changed_since_the_previous_fetch() -> None:
    budget = RefetchBudget()
    budget.mismatch(fingerprints(b"".join(damaged(2)), 1024), "sha256_mismatch: x")
    second = budget.mismatch(fingerprints(b"".join(damaged(6)), 1024), "sha256_mismatch: y")
    assert second.reason == (
        "refetch 2 of 3: sha256_mismatch: y; chunks [2, 6] changed since the previous fetch; "
        "fetching every chunk again"
    )


def test_a_long_list_of_changed_chunks_is_cut_short() -> None:
    big = bytes(20 * 1024)
    budget = RefetchBudget()
    budget.mismatch(fingerprints(big, 1024), "d")
    noisy = budget.mismatch(fingerprints(bytes([1]) * len(big), 1024), "d")
    assert "chunks [0, 1, 2, 3, 4, 5, 6, 7] and 12 more changed" in noisy.reason


def test_a_download_damaged_once_is_fetched_again_from_scratch_and_verifies() -> None:
    fetching = download()
    fetch(fetching, damaged(3))
    outcome = fetching.verify(now=2.0)
    assert isinstance(outcome, Refetch)
    assert outcome.reason.startswith("refetch 1 of 3: sha256_mismatch: artifact sha256 ")
    assert fetching.artifact is None
    assert fetching.refetches == 1
    assert fetching.assembler.missing() == list(range(8))
    # Progress is reported again from the start of the new fetch.
    assert [fetching.accept(i, PARTS[i], now=3.0) for i in range(3)] == [None, 0.25, None]
    fetch(fetching, PARTS, now=3.0)
    assert fetching.verify(now=4.0) == Verified()
    assert bytes(fetching.artifact or b"") == DATA


def test_a_refetch_gets_its_own_deadline_and_stall_clock() -> None:
    fetching = download()
    fetch(fetching, damaged(0), now=90.0)
    assert isinstance(fetching.verify(now=95.0), Refetch)
    assert fetching.due(now=104.0) is None  # past the first deadline, within the new stall time
    assert fetching.due(now=106.0) == Resume(tuple(range(8)))
    timed_out = fetching.due(now=195.0)
    assert isinstance(timed_out, TimedOut)
    assert timed_out.reason.startswith("download_timeout: 8 of 8 chunks missing")


def test_a_download_damaged_every_time_is_corrupt_after_the_refetches() -> None:
    fetching = download()
    outcomes = []
    for attempt in range(MAX_REFETCHES + 1):
        fetch(fetching, damaged(attempt % 2))
        outcomes.append(fetching.verify(now=2.0))
    *refetches, last = outcomes
    assert [type(o) for o in refetches] == [Refetch] * MAX_REFETCHES
    assert isinstance(last, Corrupt)
    assert last.reason.startswith("download_corrupt: the artifact did not match its manifest")
    assert "chunks [0, 1] changed since the previous fetch" in last.reason
    assert fetching.artifact is None


def test_verify_needs_a_complete_download() -> None:
    fetching = download()
    fetching.accept(0, PARTS[0], now=1.0)
    with pytest.raises(ArtifactError, match="7 of 8 chunks missing") as caught:
        fetching.verify(now=2.0)
    assert caught.value.reason == "incomplete_artifact"
