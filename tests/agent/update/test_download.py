"""A download over time: progress steps, resume of exactly the missing chunks, the deadline."""

from __future__ import annotations

import pytest

from edgefleet.agent.update.download import MAX_RESUME_TOPICS, Download, Resume, TimedOut
from edgefleet.shared.errors import ArtifactTooLargeError
from tests.shared.factories import manifest

DATA = bytes(range(256)) * 32  # 8 chunks of 1024
PARTS = [DATA[i : i + 1024] for i in range(0, len(DATA), 1024)]


def download(data: bytes = DATA) -> Download:
    return Download(manifest(artifact=data), now=0.0, timeout=100.0, stall=10.0)


def test_progress_is_reported_at_each_quarter_once() -> None:
    fetch = download()
    reported = [fetch.accept(i, PARTS[i], now=1.0) for i in range(8)]
    assert reported == [None, 0.25, None, 0.5, None, 0.75, None, None]
    assert fetch.accept(3, PARTS[3], now=2.0) is None
    assert fetch.assembler.complete
    assert fetch.sha256 == manifest(artifact=DATA).artifact.sha256


def test_a_stall_asks_again_for_exactly_the_missing_chunks() -> None:
    fetch = download()
    for i in (0, 2, 5):
        fetch.accept(i, PARTS[i], now=1.0)
    assert fetch.due(now=5.0) is None
    assert fetch.due(now=11.0) == Resume((1, 3, 4, 6, 7))
    assert fetch.due(now=12.0) is None  # the stall clock restarted
    fetch.accept(1, PARTS[1], now=13.0)
    assert fetch.due(now=22.0) is None
    assert fetch.due(now=23.0) == Resume((3, 4, 6, 7))
    assert fetch.asked() == {1, 3, 4, 6, 7}


def test_resume_asks_for_a_bounded_number_of_chunks() -> None:
    big = bytes(200 * 1024)
    fetch = Download(manifest(artifact=big), now=0.0, timeout=100.0, stall=1.0)
    due = fetch.due(now=2.0)
    assert isinstance(due, Resume)
    assert due.chunks == tuple(range(MAX_RESUME_TOPICS))


def test_deadline_fails_the_download_and_names_what_is_missing() -> None:
    fetch = download()
    fetch.accept(0, PARTS[0], now=1.0)
    due = fetch.due(now=100.0)
    assert isinstance(due, TimedOut)
    assert due.reason == (
        "download_timeout: 7 of 8 chunks missing after the deadline (first: [1, 2, 3, 4, 5, 6, 7])"
    )


def test_a_complete_download_has_nothing_due() -> None:
    fetch = download()
    for i, part in enumerate(PARTS):
        fetch.accept(i, part, now=1.0)
    assert fetch.due(now=1000.0) is None


def test_chunks_the_manifest_rules_out_still_raise() -> None:
    with pytest.raises(ArtifactTooLargeError):
        download().accept(0, PARTS[0] + b"!", now=1.0)
