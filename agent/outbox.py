"""The disk-backed outbox: every message the agent publishes waits here until the broker has it.

Delivery is at-least-once: the transport publishes :meth:`Outbox.pending`
messages with QoS 1 and calls :meth:`Outbox.ack` only on PUBACK, so a broker
outage or an agent restart loses nothing the cap left in. The cap counts
payload bytes; when a new message would pass it, the oldest messages are
dropped (a fresh reading beats a stale one) and the drop is counted in the
same transaction, so the count survives anything the data does.

``synchronous=FULL``, not the WAL-usual NORMAL: the board's SD card can lose
power at any moment, and NORMAL may then forget the last commits. Forgetting
messages would break "nothing is lost", and forgetting a handed-out
sequence number is worse: it would be handed out again and the server, which
drops repeated ``seq`` values as redeliveries, would silently discard the new
message. The agent writes a few messages a minute, so an fsync per commit
costs little and wears the card little.

Sequence numbers per channel start from the wall clock in milliseconds, not
from 1: a device whose outbox had to be started afresh (corrupt file, wiped
data directory) still never reuses a number the server has seen, as long as
its clock is not set back past its old numbers. A corrupt database is moved
aside (kept for inspection), a fresh one started and the recovery counted,
instead of failing at every start.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgefleet.agent.errors import OutboxError

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,"
    " payload BLOB NOT NULL, size INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sequences (channel TEXT PRIMARY KEY, last INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26
_ACK_CHUNK = 500


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    channel: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    pending_bytes: int
    max_bytes: int
    dropped: int
    """Messages dropped by the byte cap (or lost with a corrupt file), ever."""
    dropped_bytes: int
    recoveries: int
    """Times a corrupt database was moved aside and started afresh."""


class _Corrupt(Exception):
    """The database file is damaged: recover, don't retry."""


class Outbox:
    """Thread-safe; one connection, one lock, every change one transaction."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        *,
        max_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._db = connection
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        count, total = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
        ).fetchone()
        self._pending, self._bytes = int(count), int(total)
        # The highest row id stored: the agent asks for what is pending after what it handed
        # out on every pass of its loop, and the answer is mostly "nothing", known without SQL.
        (newest,) = connection.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
        self._newest = int(newest)

    @classmethod
    def open(cls, path: Path, *, max_bytes: int, clock: Callable[[], float] = time.time) -> Outbox:
        """Open (or create) the outbox at ``path``; a corrupt file is moved aside and replaced."""
        if max_bytes < 1:
            raise OutboxError(f"outbox cap must be positive, got {max_bytes}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return cls(_connect(path), path, max_bytes=max_bytes, clock=clock)
            except _Corrupt:
                log.exception("outbox %s is corrupt: moving it aside, starting afresh", path)
                sequences, lost, counters = _salvage(path)
                _move_aside(path, clock)
                outbox = cls(_connect(path), path, max_bytes=max_bytes, clock=clock)
                outbox._seed(sequences, counters, lost)
                return outbox
        except _Corrupt as err:
            raise OutboxError(f"outbox {path} stays corrupt after recovery: {err}") from err
        except (OSError, sqlite3.Error) as err:
            raise _translate(err, f"cannot open outbox {path}") from err

    # -- sequence numbers ----------------------------------------------------------

    def next_seq(self, channel: str) -> int:
        """The next number for ``channel``: larger than any before it, durable once returned."""
        first = max(1, int(self._clock() * 1000))
        with self._transaction("cannot take a sequence number") as db:
            (value,) = db.execute(
                "INSERT INTO sequences (channel, last) VALUES (?, ?) "
                "ON CONFLICT (channel) DO UPDATE SET last = last + 1 RETURNING last",
                (channel, first),
            ).fetchone()
        return int(value)

    # -- messages ------------------------------------------------------------------

    def put(self, channel: str, payload: bytes) -> int:
        """Store ``payload`` for ``channel``; returns its id. Oldest messages make room."""
        size = len(payload)
        if size > self.max_bytes:
            raise OutboxError(
                f"a {size}-byte message cannot fit an outbox capped at {self.max_bytes} bytes",
                reason="message_too_large",
            )
        with self._transaction("cannot store a message") as db:
            freed, dropped = self._make_room(db, size)
            (row_id,) = db.execute(
                "INSERT INTO messages (channel, payload, size) VALUES (?, ?, ?) RETURNING id",
                (channel, payload, size),
            ).fetchone()
        # The cached totals change only once the transaction has gone through.
        self._pending += 1 - dropped
        self._bytes += size - freed
        self._newest = max(self._newest, int(row_id))
        return int(row_id)

    def _make_room(self, db: sqlite3.Connection, size: int) -> tuple[int, int]:
        excess = self._bytes + size - self.max_bytes
        if excess <= 0:
            return 0, 0
        freed, cutoff, dropped = 0, 0, 0
        for row_id, row_size in db.execute("SELECT id, size FROM messages ORDER BY id"):
            freed += row_size
            cutoff = row_id
            dropped += 1
            if freed >= excess:
                break
        db.execute("DELETE FROM messages WHERE id <= ?", (cutoff,))
        _add(db, "dropped", dropped)
        _add(db, "dropped_bytes", freed)
        log.warning("outbox full: dropped the %d oldest messages (%d bytes)", dropped, freed)
        return freed, dropped

    def pending(self, limit: int = 100, *, after: int = 0) -> list[OutboxItem]:
        """Oldest first; ``after`` skips ids up to it (those already in flight)."""
        if after >= self._newest:
            return []
        with self._transaction("cannot read the outbox", write=False) as db:
            rows = db.execute(
                "SELECT id, channel, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [OutboxItem(int(i), str(c), bytes(p)) for i, c, p in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Delete delivered messages; unknown ids (already acked, or dropped) are ignored."""
        wanted = sorted(set(ids))
        deleted = freed = 0
        with self._transaction("cannot acknowledge messages") as db:
            for start in range(0, len(wanted), _ACK_CHUNK):
                chunk = wanted[start : start + _ACK_CHUNK]
                marks = ",".join("?" * len(chunk))
                sizes = db.execute(
                    f"DELETE FROM messages WHERE id IN ({marks}) RETURNING size",  # noqa: S608
                    chunk,
                ).fetchall()
                deleted += len(sizes)
                freed += sum(s for (s,) in sizes)
        self._pending -= deleted
        self._bytes -= freed
        return deleted

    # -- accounting ----------------------------------------------------------------

    def dropped(self) -> int:
        return self.stats().dropped

    def stats(self) -> OutboxStats:
        with self._transaction("cannot read the outbox", write=False) as db:
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return OutboxStats(
                pending=self._pending,
                pending_bytes=self._bytes,
                max_bytes=self.max_bytes,
                dropped=int(counters.get("dropped", 0)),
                dropped_bytes=int(counters.get("dropped_bytes", 0)),
                recoveries=int(counters.get("recoveries", 0)),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _seed(self, sequences: dict[str, int], counters: dict[str, int], lost: int) -> None:
        """Carry what could be read from a corrupt file into the fresh one."""
        with self._transaction("cannot record the recovery") as db:
            db.executemany("INSERT INTO sequences (channel, last) VALUES (?, ?)", sequences.items())
            for name, value in counters.items():
                _add(db, name, value)
            _add(db, "dropped", lost)
            _add(db, "recoveries", 1)

    @contextmanager
    def _transaction(self, doing: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            try:
                # IMMEDIATE takes the write lock up front: no upgrade deadlock, no surprise later.
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as err:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise _translate(err, f"{doing} in {self.path}") from err
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise


def _add(db: sqlite3.Connection, name: str, value: int) -> None:
    db.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, value),
    )


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA journal_size_limit=4194304")
        (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
        if check == "ok":
            for statement in _SCHEMA:
                db.execute(statement)
    except sqlite3.DatabaseError as err:
        db.close()
        if _code(err) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            raise _Corrupt(str(err)) from err
        raise
    if check != "ok":
        db.close()
        raise _Corrupt(check)
    return db


def _salvage(path: Path) -> tuple[dict[str, int], int, dict[str, int]]:
    """Best effort: sequence numbers, the count of messages lost and the counters."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            sequences = {
                str(c): int(v) for c, v in db.execute("SELECT channel, last FROM sequences")
            }
            (lost,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
            counters = {str(n): int(v) for n, v in db.execute("SELECT name, value FROM counters")}
            return sequences, int(lost), counters
        finally:
            db.close()
    except (sqlite3.Error, ValueError, TypeError):
        return {}, 0, {}


def _move_aside(path: Path, clock: Callable[[], float]) -> None:
    stamp = int(clock())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    # The WAL must go with its database: left behind, it would be replayed into the fresh one.
    for suffix in ("", "-wal"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{aside}{suffix}"))
    Path(f"{path}-shm").unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _code(err: sqlite3.Error) -> int:
    return int(getattr(err, "sqlite_errorcode", 0)) & 0xFF


def _translate(err: OSError | sqlite3.Error, doing: str) -> OutboxError:
    if isinstance(err, sqlite3.Error):
        code = _code(err)
        if code == _SQLITE_FULL:
            return OutboxError(f"{doing}: the disk is full", reason="disk_full")
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return OutboxError(f"{doing}: the database is corrupt ({err})", reason="outbox_corrupt")
    return OutboxError(f"{doing}: {err}")
