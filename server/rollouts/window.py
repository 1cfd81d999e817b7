"""Maintenance windows: when a rollout may touch devices.

A window opens at each time its 5-field cron expression matches, on the wall
clock of its IANA time zone, and stays open for ``duration_seconds`` of elapsed
time. The cron dialect is the classic one operators know from crontab(5), not
APScheduler 3's (whose weekday 0 is Monday and whose day-of-month and
day-of-week are ANDed): ``minute hour day-of-month month day-of-week`` with
``*``, lists, ranges, ``/step``, month and weekday names, weekday 0 or 7 for
Sunday, and day-of-month OR day-of-week when both are restricted (neither
starts with ``*``). A cron that can never match (``0 0 31 2 *``) is refused.

Daylight saving time, decided once here so the executor never has to:

* a wall time that does not exist (skipped by a spring-forward change) opens
  the window when the clock has jumped over it: ``02:30`` on a day that goes
  from 02:00 to 03:00 opens at 03:30, so the window is not lost for a day;
* a wall time that happens twice (autumn) opens only at its first occurrence.

Both are what ``datetime`` does with ``fold=0``. Everything is pure: ``now``
is passed in as epoch seconds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from edgefleet.server.errors import InvalidInputError

if TYPE_CHECKING:
    from edgefleet.server.rollouts.policy import MaintenanceWindow

# The Gregorian calendar repeats every 400 years, so a cron that passes
# parse_cron's check opens within that; a rare one (Feb 29 on a Monday) needs
# decades, a common one a day or two.
_SEARCH_DAYS = 400 * 366
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUMBER = re.compile(r"[0-9]{1,4}")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    _WEEKDAY := _Field("day-of-week", 0, 7, {name: i for i, name in enumerate(_WEEKDAYS)}),
)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression; weekdays run 0 (Sunday) to 6."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday


@functools.cache
def parse_cron(text: str) -> Cron:
    """The executor asks on every tick, hence the cache; a refusal is never cached."""
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise InvalidInputError(
            f"cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    cron = Cron(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=frozenset(day % 7 for day in weekdays),
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
    only_by_day = cron.days_restricted and not cron.weekdays_restricted
    if only_by_day and not any(min(days) <= _DAYS_IN_MONTH[m - 1] for m in months):
        raise InvalidInputError(f"cron {text!r} never matches: no day {min(days)} in its months")
    return cron


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, slash, step_text = item.partition("/")
        step = _parse_step(step_text, spec, item) if slash else 1
        if body == "*":
            low, high = spec.low, spec.high
        elif "-" in body:
            first, last = body.split("-", 1)
            low = _parse_value(first, spec, item)
            high = _parse_value(last, spec, item)
            if spec is _WEEKDAY and high == 0 < low:
                high = 7  # "mon-sun", "5-0": Sunday closes the week
            if low > high:
                raise InvalidInputError(f"cron {spec.name} {item!r}: the range runs backwards")
        else:
            low = _parse_value(body, spec, item)
            high = spec.high if slash else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


def _parse_step(text: str, spec: _Field, item: str) -> int:
    if not _NUMBER.fullmatch(text) or int(text) < 1:
        raise InvalidInputError(f"cron {spec.name} {item!r}: the step must be a number >= 1")
    return int(text)


def _parse_value(text: str, spec: _Field, item: str) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names[lowered]
    if not _NUMBER.fullmatch(text):
        raise InvalidInputError(f"cron {spec.name} {item!r}: {text!r} is not a number")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise InvalidInputError(
            f"cron {spec.name} {item!r}: {value} is outside {spec.low}-{spec.high}"
        )
    return value


def time_zone(name: str) -> ZoneInfo:
    """An IANA zone; ``localtime`` is refused, as a window must not move with the server."""
    if name == "localtime" or name not in _zone_names():
        raise InvalidInputError(
            f"unknown time zone {name!r}, want an IANA name such as Europe/Berlin"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidInputError(f"unknown time zone {name!r}") from err


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def is_open(window: MaintenanceWindow | None, now: float) -> bool:
    """Whether an opening lies in ``(now - duration, now]``; no window means always open."""
    if window is None:
        return True
    start = now - window.duration_seconds
    return _first_opening(window, start, inclusive=False) <= now


def next_open(window: MaintenanceWindow, now: float) -> float:
    """``now`` while the window is open, else the epoch second it next opens."""
    if is_open(window, now):
        return now
    return _first_opening(window, now, inclusive=True)


def _first_opening(window: MaintenanceWindow, start: float, *, inclusive: bool) -> float:
    """The earliest opening at (or after) ``start``.

    Openings are searched day by day from the day before ``start``'s local date
    and the day after the first hit is looked at too: a skipped wall time is
    pushed later, possibly past a later wall time or into the next day.
    """
    cron = parse_cron(window.cron)
    zone = time_zone(window.timezone)
    first_day = datetime.fromtimestamp(start, zone).date() - timedelta(days=1)
    best: float | None = None
    for offset in range(_SEARCH_DAYS):
        openings = [
            t
            for t in _day_openings(cron, zone, first_day + timedelta(days=offset))
            if t > start or (inclusive and t == start)
        ]
        if best is not None:
            return min([best, *openings])
        if openings:
            best = min(openings)
    if best is None:
        raise InvalidInputError(f"cron {window.cron!r} never opens")
    return best


def _day_openings(cron: Cron, zone: ZoneInfo, day: date) -> list[float]:
    if not cron.matches_day(day):
        return []
    return [
        datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).timestamp()
        for hour in cron.hours
        for minute in cron.minutes
    ]
