"""The outbox on real SQLite files: order, acks, the cap, crash safety, corruption, a full disk."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.errors import OutboxError
from edgefleet.agent.outbox import Outbox

CAP = 64 * 1024


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outbox.db"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    opened = Outbox.open(path, max_bytes=CAP)
    yield opened
    opened.close()


def test_messages_wait_in_order_until_acknowledged(outbox: Outbox) -> None:
    ids = [outbox.put("telemetry" if i % 2 else "events", f"m{i}".encode()) for i in range(5)]
    assert ids == sorted(ids)
    assert [(m.channel, m.payload) for m in outbox.pending(3)] == [
        ("events", b"m0"),
        ("telemetry", b"m1"),
        ("events", b"m2"),
    ]
    assert [m.payload for m in outbox.pending(10, after=ids[2])] == [b"m3", b"m4"]
    assert outbox.ack([ids[0], ids[3], 999_999]) == 2
    assert outbox.ack([ids[0]]) == 0  # a second PUBACK for the same message
    assert [m.payload for m in outbox.pending(10)] == [b"m1", b"m2", b"m4"]
    stats = outbox.stats()
    assert (stats.pending, stats.pending_bytes, stats.dropped, stats.recoveries) == (3, 6, 0, 0)


def test_unacknowledged_messages_and_their_ids_survive_a_restart(path: Path) -> None:
    first = Outbox.open(path, max_bytes=CAP)
    kept = first.put("drift", b"x" * 100)
    first.put("drift", b"y")
    first.ack([kept + 1])
    first.close()
    again = Outbox.open(path, max_bytes=CAP)
    assert [(m.id, m.payload) for m in again.pending()] == [(kept, b"x" * 100)]
    assert again.stats().pending_bytes == 100
    assert again.put("drift", b"z") > kept + 1  # ids are never reused
    again.close()


def test_sequence_numbers_grow_per_channel_from_the_clock_and_across_restarts(path: Path) -> None:
    first = Outbox.open(path, max_bytes=CAP, clock=lambda: 1000.0)
    assert [first.next_seq("telemetry") for _ in range(3)] == [1_000_000, 1_000_001, 1_000_002]
    assert first.next_seq("events") == 1_000_000
    first.close()
    # A clock set back at the next start changes nothing: the stored number wins.
    again = Outbox.open(path, max_bytes=CAP, clock=lambda: 1.0)
    assert again.next_seq("telemetry") == 1_000_003
    assert again.next_seq("drift") == 1_000  # a new channel starts from the clock
    again.close()


def test_the_cap_drops_the_oldest_messages_and_counts_them_for_good(path: Path) -> None:
    outbox = Outbox.open(path, max_bytes=CAP)
    for i in range(10):
        outbox.put("telemetry", bytes([i]) * 10_000)
    pending = outbox.pending(100)
    assert [m.payload[0] for m in pending] == [4, 5, 6, 7, 8, 9]
    stats = outbox.stats()
    assert (stats.pending, stats.pending_bytes, stats.dropped, stats.dropped_bytes) == (
        6,
        60_000,
        4,
        40_000,
    )
    outbox.close()
    assert Outbox.open(path, max_bytes=CAP).dropped() == 4


def test_a_message_bigger_than_the_whole_outbox_is_refused(outbox: Outbox) -> None:
    outbox.put("events", b"keep")
    with pytest.raises(OutboxError, match="cannot fit") as caught:
        outbox.put("drift", b"x" * (CAP + 1))
    assert caught.value.reason == "message_too_large"
    assert [m.payload for m in outbox.pending()] == [b"keep"]


def test_concurrent_writers_get_distinct_ids_and_sequence_numbers(outbox: Outbox) -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def write() -> None:
        for _ in range(50):
            seq = outbox.next_seq("telemetry")
            row = outbox.put("telemetry", str(seq).encode())
            with lock:
                seen.append((seq, row))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({seq for seq, _ in seen}) == len({row for _, row in seen}) == 200
    assert outbox.stats().pending == 200


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edgefleet.agent.outbox import Outbox

    outbox = Outbox.open(Path(sys.argv[1]), max_bytes=1 << 30)
    while True:
        seq = outbox.next_seq("telemetry")
        row = outbox.put("telemetry", str(seq).encode() * 50)
        print(seq, row, flush=True)
    """
)


def test_sigkill_mid_write_loses_nothing_committed_and_never_repeats_a_seq(path: Path) -> None:
    path.parent.mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    committed = [tuple(map(int, child.stdout.readline().split())) for _ in range(300)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    committed += [tuple(map(int, line.split())) for line in child.stdout if line.strip()]
    child.stdout.close()

    outbox = Outbox.open(path, max_bytes=1 << 30)
    stored = {m.id: m.payload for m in outbox.pending(100_000)}
    for seq, row in committed:
        assert stored[row] == str(seq).encode() * 50
    assert outbox.next_seq("telemetry") > max(seq for seq, _ in committed)
    assert outbox.stats().recoveries == 0
    outbox.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_file_that_is_no_database_is_moved_aside_and_replaced(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not an sqlite file at all" * 100)
    outbox = Outbox.open(path, max_bytes=CAP, clock=lambda: 2000.0)
    assert outbox.stats().recoveries == 1
    assert (path.parent / "outbox.db.corrupt-2000").read_bytes().startswith(b"this is not")
    assert outbox.next_seq("events") == 2_000_000
    outbox.put("events", b"works")
    assert [m.payload for m in outbox.pending()] == [b"works"]
    outbox.close()


def test_damaged_pages_are_detected_at_open_and_the_outbox_starts_afresh(path: Path) -> None:
    first = Outbox.open(path, max_bytes=1 << 24, clock=lambda: 1000.0)
    for i in range(200):
        first.put("telemetry", bytes([i % 256]) * 1000)
    old_seq = first.next_seq("telemetry")
    first.close()
    data = bytearray(path.read_bytes())
    assert len(data) >= 48 * 4096
    data[8 * 4096 : 40 * 4096] = b"\xa5" * (32 * 4096)  # trash pages in the middle
    path.write_bytes(bytes(data))
    outbox = Outbox.open(path, max_bytes=1 << 24, clock=lambda: 3000.0)
    stats = outbox.stats()
    assert (stats.recoveries, stats.pending) == (1, 0)
    assert outbox.next_seq("telemetry") > old_seq
    outbox.close()
    assert list(path.parent.glob("outbox.db.corrupt-3000"))


DISK_FULL = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from edgefleet.agent.errors import OutboxError
    from edgefleet.agent.outbox import Outbox

    outbox = Outbox.open(Path(sys.argv[1]), max_bytes=1 << 30)
    for i in range(20):
        outbox.put("telemetry", b"k" * 1000)
    # From here the kernel refuses to let any file grow: the disk is "full".
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (Path(sys.argv[1]).stat().st_size, -1))
    try:
        for i in range(1000):
            outbox.put("telemetry", b"x" * 20_000)
    except OutboxError as err:
        print("refused:", err.reason, err)
    resource.setrlimit(resource.RLIMIT_FSIZE, (-1, -1))
    outbox.put("telemetry", b"after")
    print("pending:", outbox.stats().pending)
    """
)


def test_a_write_the_disk_refuses_is_a_clear_error_and_corrupts_nothing(path: Path) -> None:
    path.parent.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "refused: outbox_failed cannot store a message in" in done.stdout
    pending_line = done.stdout.strip().splitlines()[-1]
    outbox = Outbox.open(path, max_bytes=1 << 30)
    stored = outbox.pending(10_000)
    assert pending_line == f"pending: {len(stored)}"
    assert [m.payload for m in stored[:20]] == [b"k" * 1000] * 20
    assert stored[-1].payload == b"after"
    assert outbox.stats().recoveries == 0
    outbox.close()
