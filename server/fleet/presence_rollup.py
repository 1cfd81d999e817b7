"""The presence roll-up: distinct reporting devices per minute, kept in ``presence_minutes``
so a week's chart reads ten thousand small rows instead of a hundred million telemetry rows.

Each pass reads telemetry past the watermark (``rollup_marks``) in id order, a
bounded batch at a time, and **recounts** every minute those rows touch from
telemetry itself, then writes the counts and moves the watermark in the same
transaction. Recounting instead of adding is what makes replays and duplicates
harmless, and a watermark moved only from where the batch began makes two
replicas take turns instead of writing the same batch twice.

:func:`minutes` answers the chart: rolled-up minutes, plus the newest ones
recounted live, so the chart never waits for the next pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from edgefleet.server.db.models import PresenceMinute, RollupMark, TelemetryRecord
from edgefleet.server.fleet.rollup_plan import (
    MAX_WINDOW,
    Window,
    longest_window,
    minute_after,
    minute_counts,
    minute_of,
    settled,
    touched_ranges,
)

MARK = "presence"
BATCH_ROWS = 50_000
SETTLE_SECONDS = 30.0
"""Rows younger than this wait for the next pass: an ingest transaction still open may
hold a lower id (see :func:`~edgefleet.server.fleet.rollup_plan.settled`)."""
BUDGET_SECONDS = 20.0
"""One pass stops after this; the next (30 s later) goes on where it stopped."""
UPSERT_ROWS = 1000


@dataclass(frozen=True, slots=True)
class RollupPass:
    rows: int
    """Telemetry rows the watermark moved past."""
    minutes: int
    """Minute counts written (a minute touched by two batches counts twice)."""
    last_id: int
    caught_up: bool
    """Nothing settled was left past the watermark (or another replica is rolling it up)."""


def _windows(session: Session, since: float, until: float, longest: float) -> list[Window]:
    """Rows overlapping minutes ``[since, until)``: none starts more than ``longest`` before."""
    t = TelemetryRecord
    rows = session.execute(
        select(t.device_id, t.window_start, t.window_end).where(
            t.window_start >= since - longest, t.window_start < until, t.window_end >= since
        )
    ).all()
    return [(str(d), float(s), float(e)) for d, s, e in rows]


def _upsert(session: Session, counts: dict[float, int]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(PresenceMinute)
    statement = statement.on_conflict_do_update(
        index_elements=[PresenceMinute.start], set_={"reporting": statement.excluded.reporting}
    )
    # Sorted, so two replicas lock minutes in the same order and never deadlock.
    values = [{"start": s, "reporting": n} for s, n in sorted(counts.items())]
    for offset in range(0, len(values), UPSERT_ROWS):
        session.execute(statement, values[offset : offset + UPSERT_ROWS])


def _batch(session: Session, *, now: float, batch_rows: int) -> tuple[int, int, int]:
    """One batch: ``(rows, minutes written, last id)``; no rows when caught up.

    Counted in a read-only transaction, written in a short one that starts by moving
    the watermark only if it is still where the batch began: a replica that took the
    batch first wins, the other writes nothing. Starting with the write also spares
    SQLite the upgrade of a stale read snapshot, which fails instead of waiting.
    """
    mark = session.execute(select(RollupMark).where(RollupMark.name == MARK)).scalar_one()
    began, longest = mark.last_id, mark.longest_window
    t = TelemetryRecord
    rows = session.execute(
        select(t.id, t.device_id, t.window_start, t.window_end, t.received_at)
        .where(t.id > began)
        .order_by(t.id)
        .limit(batch_rows)
    ).all()
    rows = rows[: settled([r.received_at for r in rows], now - SETTLE_SECONDS)]
    if not rows:
        session.rollback()
        return 0, 0, began
    windows = [(str(r.device_id), float(r.window_start), float(r.window_end)) for r in rows]
    longest = max(longest, longest_window(windows))
    counts: dict[float, int] = {}
    for since, until in touched_ranges(windows):
        counts.update(minute_counts(_windows(session, since, until, longest), since, until))
    session.rollback()
    last_id = int(rows[-1].id)
    moved = session.execute(
        update(RollupMark)
        .where(RollupMark.name == MARK, RollupMark.last_id == began)
        .values(last_id=last_id, longest_window=longest)
    )
    if cast("CursorResult[Any]", moved).rowcount != 1:
        session.rollback()
        return 0, 0, began
    _upsert(session, counts)
    session.commit()
    return len(rows), len(counts), last_id


def roll_up(
    session: Session,
    now: float,
    *,
    batch_rows: int = BATCH_ROWS,
    budget_seconds: float = BUDGET_SECONDS,
    timer: Callable[[], float] = time.monotonic,
) -> RollupPass:
    """Roll up batches, each committed on its own, until caught up or out of budget."""
    deadline = timer() + budget_seconds
    rows = minutes = 0
    while True:
        taken, written, last_id = _batch(session, now=now, batch_rows=batch_rows)
        rows, minutes = rows + taken, minutes + written
        if taken == 0 or timer() >= deadline:
            return RollupPass(rows=rows, minutes=minutes, last_id=last_id, caught_up=taken == 0)


def _lookback(session: Session) -> float:
    """The longest window rolled up or waiting: how far back a live recount looks."""
    mark = session.execute(select(RollupMark).where(RollupMark.name == MARK)).scalar_one()
    t = TelemetryRecord
    waiting = session.execute(
        select(func.max(t.window_end - t.window_start)).where(t.id > mark.last_id)
    ).scalar_one()
    return min(max(mark.longest_window, float(waiting or 0.0)), MAX_WINDOW)


def minutes(session: Session, *, since: float, until: float) -> dict[float, int]:
    """Distinct reporting devices per minute overlapping ``[since, until)``; a minute
    missing had none.

    Minutes from one longest window before the newest rolled-up minute on are
    recounted live (rows not rolled up yet land there); older minutes come from the
    roll-up, so an old window replayed late shows after the next pass.
    """
    first, stop = minute_of(since), minute_after(until)
    longest = _lookback(session)
    newest = session.execute(select(func.max(PresenceMinute.start))).scalar_one()
    live_from = first
    if newest is not None:
        live_from = min(max(minute_of(min(float(newest), stop) - longest), first), stop)
    rolled = session.execute(
        select(PresenceMinute.start, PresenceMinute.reporting).where(
            PresenceMinute.start >= first, PresenceMinute.start < live_from
        )
    ).all()
    counts = {float(s): int(n) for s, n in rolled}
    if live_from < stop:
        counts.update(minute_counts(_windows(session, live_from, stop, longest), live_from, stop))
    return counts
