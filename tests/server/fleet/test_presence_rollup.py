"""The presence roll-up and chart on SQLite and PostgreSQL, against a brute-force count.

Random windows (short, long, overlapping, duplicated, replayed late) are written
straight into ``telemetry``; every series must equal a distinct count done the
slow way over the same rows, whether the roll-up is caught up, partway or absent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import Device, PresenceMinute, RollupMark, TelemetryRecord
from edgefleet.server.fleet import presence_rollup
from edgefleet.server.fleet.overview import presence
from edgefleet.server.fleet.rollup_plan import Window

T = 1_767_225_600.0
SPAN = 3 * 3600.0
DEVICES = [f"dev-{i}" for i in range(12)]
LENGTHS = (1.0, 45.5, 60.0, 60.0, 300.0, 900.0, 3600.0)
LATER = T + 10 * SPAN
"""A clock long after every row was received, so all of them have settled."""
RANGES = [
    (T, T + SPAN, 300),
    (T + 17.5, T + SPAN - 31.0, 100),
    (T + 3600, T + 5400, 30),
    (T - 3600, T + SPAN + 3600, 7),
]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(Device),
            [
                {
                    "id": d,
                    "profile": "sim",
                    "state": "online",
                    "tags": [],
                    "labels": {},
                    "running": [],
                    "created_at": T - 86_400,
                    "updated_at": T,
                }
                for d in DEVICES
            ],
        )
    yield engine
    engine.dispose()


class Telemetry:
    """Rows written so far, with their next sequence number per device."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.windows: list[Window] = []
        self.seq = dict.fromkeys(DEVICES, 0)

    def write(self, windows: Sequence[Window], received_at: float = T) -> None:
        rows = []
        for device_id, start, end in windows:
            self.seq[device_id] += 1
            rows.append(
                {
                    "device_id": device_id,
                    "seq": self.seq[device_id],
                    "window_start": start,
                    "window_end": end,
                    "inferences": 1,
                    "errors": 0,
                    "histograms": {},
                    "received_at": received_at,
                }
            )
        with self.engine.begin() as connection:
            connection.execute(insert(TelemetryRecord), rows)
        self.windows.extend(windows)


def random_windows(rng: np.random.Generator, n: int, since: float, until: float) -> list[Window]:
    windows: list[Window] = []
    for _ in range(n):
        length = float(rng.choice(LENGTHS))
        start = float(rng.uniform(since, until - length))
        windows.append((str(rng.choice(DEVICES)), start, start + length))
    return windows


def brute_force(windows: Sequence[Window], since: float, until: float, step: float) -> list[int]:
    """Peak over each bucket's minutes of devices whose window overlaps the minute."""

    def online(minute: float) -> int:
        return len(
            {
                d
                for d, start, end in windows
                if (start < minute + 60 and end > minute)
                or (end <= start and minute <= start < minute + 60)
            }
        )

    peaks = []
    bucket = since
    while bucket < until:
        end = min(bucket + step, until)
        minute = (bucket // 60) * 60
        found = []
        while minute < end:
            found.append(online(minute))
            minute += 60
        peaks.append(max(found))
        bucket += step
    return peaks


def assert_matches_brute_force(engine: Engine, windows: Sequence[Window]) -> None:
    with Session(engine) as session:
        for since, until, points in RANGES:
            series = presence(session, since=since, until=until, max_points=points)
            got = [p.reporting for p in series.points]
            assert got == brute_force(windows, since, until, series.step), (since, until)
            assert any(got)


def roll_up(
    engine: Engine,
    now: float = LATER,
    *,
    batch_rows: int = presence_rollup.BATCH_ROWS,
    budget_seconds: float = presence_rollup.BUDGET_SECONDS,
) -> presence_rollup.RollupPass:
    with Session(engine) as session:
        return presence_rollup.roll_up(
            session, now, batch_rows=batch_rows, budget_seconds=budget_seconds
        )


def mark(engine: Engine) -> tuple[int, float]:
    with Session(engine) as session:
        found = session.execute(select(RollupMark.last_id, RollupMark.longest_window)).one()
        return int(found[0]), float(found[1])


def test_series_equals_brute_force_before_during_and_after_the_roll_up(engine: Engine) -> None:
    rng = np.random.default_rng(7)
    telemetry = Telemetry(engine)
    windows = random_windows(rng, 400, T, T + SPAN)
    windows += windows[:40]  # the same windows again: duplicates
    telemetry.write(sorted(windows, key=lambda w: w[2]))
    assert_matches_brute_force(engine, telemetry.windows)  # nothing rolled up: all live

    partway = roll_up(engine, batch_rows=150, budget_seconds=0.0)
    assert (partway.rows, partway.caught_up) == (150, False)
    assert_matches_brute_force(engine, telemetry.windows)

    rest = roll_up(engine, batch_rows=150)
    assert rest.caught_up
    assert partway.rows + rest.rows == len(telemetry.windows)
    assert mark(engine) == (len(telemetry.windows), 3600.0)
    assert_matches_brute_force(engine, telemetry.windows)


def test_late_replays_are_recounted_not_added(engine: Engine) -> None:
    rng = np.random.default_rng(11)
    telemetry = Telemetry(engine)
    telemetry.write(random_windows(rng, 300, T, T + SPAN))
    roll_up(engine)
    replays = random_windows(rng, 60, T, T + SPAN) + telemetry.windows[:30]
    telemetry.write(replays, received_at=T + SPAN)
    assert roll_up(engine).rows == len(replays)
    assert mark(engine)[0] == len(telemetry.windows)
    assert_matches_brute_force(engine, telemetry.windows)
    with Session(engine) as session:
        rolled = dict(session.execute(select(PresenceMinute.start, PresenceMinute.reporting)).all())
    assert max(rolled.values()) <= len(DEVICES)


def test_unsettled_rows_wait_for_the_next_pass_but_show_at_once(engine: Engine) -> None:
    telemetry = Telemetry(engine)
    telemetry.write([(d, T, T + 60) for d in DEVICES[:3]], received_at=T + 60)
    assert roll_up(engine, now=T + 61).rows == 0
    assert mark(engine)[0] == 0
    with Session(engine) as session:
        series = presence(session, since=T, until=T + 120, max_points=2)
    assert [p.reporting for p in series.points] == [3, 0]
    assert [p.registered for p in series.points] == [len(DEVICES)] * 2
    assert roll_up(engine, now=T + 60 + presence_rollup.SETTLE_SECONDS).rows == 3


def test_a_second_pass_over_nothing_new_changes_nothing(engine: Engine) -> None:
    rng = np.random.default_rng(3)
    telemetry = Telemetry(engine)
    telemetry.write(random_windows(rng, 100, T, T + SPAN))
    first = roll_up(engine)
    assert (first.rows, first.last_id, first.caught_up) == (100, 100, True)
    again = roll_up(engine)
    assert (again.rows, again.minutes, again.last_id, again.caught_up) == (0, 0, 100, True)
    assert_matches_brute_force(engine, telemetry.windows)


def test_two_replicas_rolling_up_at_once_count_each_row_once(engine: Engine) -> None:
    rng = np.random.default_rng(5)
    telemetry = Telemetry(engine)
    telemetry.write(random_windows(rng, 600, T, T + SPAN))
    with ThreadPoolExecutor(2) as pool:
        passes = list(pool.map(lambda _: roll_up(engine, batch_rows=40), range(2)))
    taken = sum(p.rows for p in passes)
    if taken < len(telemetry.windows):  # one stopped when it lost a batch to the other
        taken += roll_up(engine).rows
    assert taken == len(telemetry.windows)
    assert mark(engine)[0] == len(telemetry.windows)
    assert_matches_brute_force(engine, telemetry.windows)
