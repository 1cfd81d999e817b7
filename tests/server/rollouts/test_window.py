"""Maintenance windows: classic cron on a zone's wall clock, across midnight and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts.policy import MaintenanceWindow
from edgefleet.server.rollouts.window import is_open, next_open, parse_cron, time_zone

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def berlin(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    fold: int = 0,
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN, fold=fold).timestamp()


def test_no_window_is_always_open() -> None:
    assert is_open(None, 0.0)
    assert is_open(None, utc(2024, 3, 31, 2, 30))


@pytest.mark.parametrize(
    ("now", "open_"),
    [
        (utc(2024, 5, 1, 1, 59, 59), False),
        (utc(2024, 5, 1, 2, 0), True),  # opens on the minute
        (utc(2024, 5, 1, 2, 59, 59), True),
        (utc(2024, 5, 1, 3, 0), False),  # closes after exactly duration_seconds
    ],
)
def test_a_window_is_open_from_its_opening_for_its_duration(now: float, open_: bool) -> None:
    assert is_open(MaintenanceWindow("0 2 * * *", 3600), now) is open_


def test_next_open_is_now_while_open_else_the_next_opening() -> None:
    window = MaintenanceWindow("0 2 * * *", 3600)
    assert next_open(window, utc(2024, 5, 1, 1, 0)) == utc(2024, 5, 1, 2, 0)
    assert next_open(window, utc(2024, 5, 1, 2, 30, 0)) == utc(2024, 5, 1, 2, 30, 0)
    assert next_open(window, utc(2024, 5, 1, 3, 0)) == utc(2024, 5, 2, 2, 0)
    assert next_open(window, utc(2024, 12, 31, 23, 0)) == utc(2025, 1, 1, 2, 0)


NIGHT = MaintenanceWindow("0 22 * * *", 4 * 3600, "Europe/Berlin")


@pytest.mark.parametrize(
    ("now", "open_"),
    [
        (berlin(2024, 1, 15, 21, 59), False),
        (berlin(2024, 1, 15, 22, 0), True),
        (berlin(2024, 1, 15, 23, 59, 59), True),
        (berlin(2024, 1, 16, 0, 0), True),  # past midnight, the window of the day before
        (berlin(2024, 1, 16, 1, 59, 59), True),
        (berlin(2024, 1, 16, 2, 0), False),
        (berlin(2024, 1, 16, 12, 0), False),
    ],
)
def test_a_window_crossing_midnight(now: float, open_: bool) -> None:
    assert is_open(NIGHT, now) is open_


def test_next_open_after_a_night_window_is_the_next_evening() -> None:
    assert next_open(NIGHT, berlin(2024, 1, 16, 2, 0)) == berlin(2024, 1, 16, 22, 0)
    assert berlin(2024, 1, 16, 22, 0) == utc(2024, 1, 16, 21, 0)  # CET is UTC+1


def test_the_zone_decides_the_instant_summer_and_winter() -> None:
    window = MaintenanceWindow("0 2 * * *", 3600, "Europe/Berlin")
    assert next_open(window, utc(2024, 1, 10)) == utc(2024, 1, 10, 1, 0)  # CET, UTC+1
    assert next_open(window, utc(2024, 7, 10)) == utc(2024, 7, 10, 0, 0)  # CEST, UTC+2


def test_a_skipped_wall_time_opens_when_the_clock_has_jumped_over_it() -> None:
    """2024-03-31 in Berlin goes from 02:00 CET straight to 03:00 CEST: 02:30 never happens."""
    window = MaintenanceWindow("30 2 * * *", 3600, "Europe/Berlin")
    the_day_before = utc(2024, 3, 30, 1, 30)  # 02:30 CET
    jumped = utc(2024, 3, 31, 1, 30)  # 03:30 CEST, the 02:30 pushed by the hour skipped
    the_day_after = utc(2024, 4, 1, 0, 30)  # 02:30 CEST
    assert next_open(window, utc(2024, 3, 30, 0, 0)) == the_day_before
    assert next_open(window, the_day_before + 3600) == jumped
    assert not is_open(window, jumped - 1)
    assert is_open(window, jumped)
    assert is_open(window, jumped + 3599)
    assert not is_open(window, jumped + 3600)
    assert next_open(window, jumped + 3600) == the_day_after


def test_a_repeated_wall_time_opens_once_at_its_first_occurrence() -> None:
    """2024-10-27 in Berlin runs 02:00-03:00 twice, first in CEST, then in CET."""
    window = MaintenanceWindow("30 2 * * *", 1800, "Europe/Berlin")
    first = berlin(2024, 10, 27, 2, 30, fold=0)
    second = berlin(2024, 10, 27, 2, 30, fold=1)
    assert (first, second) == (utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1, 30))
    assert next_open(window, utc(2024, 10, 26, 23, 0)) == first
    assert is_open(window, first + 1799)
    assert not is_open(window, second)
    assert next_open(window, first + 1800) == berlin(2024, 10, 28, 2, 30)


def test_a_pushed_wall_time_does_not_hide_an_earlier_real_one() -> None:
    """Lord Howe Island springs forward by 30 minutes, 02:00 -> 02:30 (2024-10-06)."""
    zone = ZoneInfo("Australia/Lord_Howe")
    window = MaintenanceWindow("15,40 2 * * *", 60, "Australia/Lord_Howe")
    real = datetime(2024, 10, 6, 2, 40, tzinfo=zone).timestamp()
    pushed = datetime(2024, 10, 6, 2, 15, tzinfo=zone).timestamp()  # the clock reads 02:45
    assert pushed - real == 300
    assert next_open(window, datetime(2024, 10, 6, 0, 0, tzinfo=zone).timestamp()) == real
    assert next_open(window, real + 60) == pushed


def test_a_wall_time_pushed_past_midnight_opens_on_the_next_day() -> None:
    """Nuuk springs forward at 23:00 -> 00:00 (2024-03-30): 23:30 becomes 00:30 of the 31st."""
    window = MaintenanceWindow("30 23 * * *", 3600, "America/Nuuk")
    pushed = utc(2024, 3, 31, 1, 30)  # 00:30 at UTC-1
    assert next_open(window, utc(2024, 3, 31, 1, 10)) == pushed  # 00:10 on the 31st
    assert is_open(window, pushed + 3599)
    assert not is_open(window, pushed - 1)


def test_the_duration_is_elapsed_time_across_a_clock_change() -> None:
    window = MaintenanceWindow("0 1 * * *", 3 * 3600, "Europe/Berlin")
    opening = utc(2024, 3, 31, 0, 0)  # 01:00 CET
    assert is_open(window, opening + 3 * 3600 - 1)  # 04:59:59 CEST on the wall
    assert not is_open(window, opening + 3 * 3600)


def test_a_long_window_spans_several_days() -> None:
    weekend = MaintenanceWindow("0 18 * * fri", 60 * 3600)  # Friday 18:00 to Monday 06:00
    assert is_open(weekend, utc(2024, 5, 5, 12, 0))  # Sunday
    assert not is_open(weekend, utc(2024, 5, 6, 6, 0))  # Monday 06:00
    assert next_open(weekend, utc(2024, 5, 6, 6, 0)) == utc(2024, 5, 10, 18, 0)


@pytest.mark.parametrize(
    ("cron", "now", "expected"),
    [
        ("0 0 * * 0", utc(2024, 5, 1), utc(2024, 5, 5)),  # 0 is Sunday (2024-05-05)
        ("0 0 * * 7", utc(2024, 5, 1), utc(2024, 5, 5)),  # and so is 7
        ("0 0 * * SUN", utc(2024, 5, 1), utc(2024, 5, 5)),
        ("0 0 * * mon-fri", utc(2024, 5, 4), utc(2024, 5, 6)),  # Saturday -> Monday
        ("0 0 13 * fri", utc(2024, 5, 1), utc(2024, 5, 3)),  # both restricted: 13th OR Friday
        ("0 0 1 * mon", utc(2024, 5, 7, 1), utc(2024, 5, 13)),
        ("0 0 */10 * mon", utc(2024, 5, 1, 1), utc(2024, 7, 1)),  # "*..." day: AND, like cron
        ("*/15 * * * *", utc(2024, 5, 1, 10, 1), utc(2024, 5, 1, 10, 15)),
        ("5/20 3 * * *", utc(2024, 5, 1, 3, 6), utc(2024, 5, 1, 3, 25)),
        ("10-50/20 1,13 * * *", utc(2024, 5, 1, 1, 51), utc(2024, 5, 1, 13, 10)),
        ("0 0 1 jan,JUL *", utc(2024, 5, 1), utc(2024, 7, 1)),
        ("0 0 29 2 *", utc(2025, 3, 1), utc(2028, 2, 29)),
        ("0 0 31 2,3 *", utc(2024, 1, 1), utc(2024, 3, 31)),
        ("0 0 29 2 mon", utc(2024, 3, 1), utc(2025, 2, 3)),  # OR: February's Mondays too
        ("0 0 29 2 */7", utc(2024, 3, 1), utc(2032, 2, 29)),  # AND: Feb 29 on a Sunday
    ],
)
def test_cron_fields_mean_what_crontab_says(cron: str, now: float, expected: float) -> None:
    assert next_open(MaintenanceWindow(cron, 1), now + 0.5) == expected


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 2 * *", "cron needs 5 fields"),
        ("0 2 * * * *", "cron needs 5 fields"),
        ("@daily", "cron needs 5 fields"),
        ("60 * * * *", "cron minute '60': 60 is outside 0-59"),
        ("* 24 * * *", "cron hour '24': 24 is outside 0-23"),
        ("* * 0 * *", "cron day-of-month '0': 0 is outside 1-31"),
        ("* * * 13 *", "cron month '13': 13 is outside 1-12"),
        ("* * * * 8", "cron day-of-week '8': 8 is outside 0-7"),
        ("* * * * tue-mon", "cron day-of-week 'tue-mon': the range runs backwards"),
        ("*/0 * * * *", "cron minute '*/0': the step must be a number >= 1"),
        ("*/x * * * *", "cron minute '*/x': the step must be a number >= 1"),
        ("5-1 * * * *", "cron minute '5-1': the range runs backwards"),
        ("1,,2 * * * *", "cron minute '': '' is not a number"),
        ("a * * * *", "cron minute 'a': 'a' is not a number"),
        ("-1 * * * *", "cron minute '-1': '' is not a number"),
        ("0 0 31 2 *", "cron '0 0 31 2 *' never matches: no day 31 in its months"),
        ("0 0 30,31 2 *", "never matches: no day 30 in its months"),
        ("0 0 31 4,6,9,11 *", "never matches"),
    ],
)
def test_cron_refusals_say_which_field(cron: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_cron(cron)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ("sun-sat", {0, 1, 2, 3, 4, 5, 6}),
        ("mon-sun", {0, 1, 2, 3, 4, 5, 6}),  # Sunday may close the week
        ("5-0", {5, 6, 0}),
        ("1-7", {0, 1, 2, 3, 4, 5, 6}),
        ("sat,7", {6, 0}),
        ("Mon-Wed/2", {1, 3}),
    ],
)
def test_weekdays_are_numbered_from_sunday(weekdays: str, expected: set[int]) -> None:
    assert parse_cron(f"0 0 * * {weekdays}").weekdays == expected


@pytest.mark.parametrize("name", ["Mars/Base", "", "../etc/passwd", "/etc/localtime", "localtime"])
def test_only_iana_time_zones_are_accepted(name: str) -> None:
    with pytest.raises(InvalidInputError, match="unknown time zone"):
        time_zone(name)


def test_iana_time_zones_are_accepted() -> None:
    assert time_zone("Europe/Berlin") == BERLIN
    assert time_zone("UTC") == ZoneInfo("UTC")


def _field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Field syntax APScheduler reads the same way as crontab (names, not numbers, for weekdays)."""
    value = st.sampled_from(names) if names else st.integers(low, high).map(str)
    pair = st.tuples(st.integers(low, high), st.integers(low, high)).map(sorted)
    ranged = pair.map(lambda p: f"{names[p[0]]}-{names[p[1]]}" if names else f"{p[0]}-{p[1]}")
    listed = st.lists(value, min_size=2, max_size=3).map(",".join)
    if names:  # APScheduler has no steps over names, and its */2 counts from Monday
        return st.one_of(st.just("*"), value, ranged, listed)
    # APScheduler refuses a step longer than its range; crontab would not care.
    stepped = st.one_of(
        st.integers(1, 9).map("*/{}".format),
        pair.filter(lambda p: p[0] < p[1]).flatmap(
            lambda p: st.integers(1, p[1] - p[0]).map(lambda n: f"{p[0]}-{p[1]}/{n}")
        ),
    )
    return st.one_of(st.just("*"), value, ranged, stepped, listed)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@st.composite
def crons(draw: st.DrawFn) -> str:
    minute = draw(_field(0, 59))
    hour = draw(_field(0, 23))
    month = draw(_field(1, 12))
    if draw(st.booleans()):  # day-of-month only: AND and OR agree when one side is "*"
        return f"{minute} {hour} {draw(_field(1, 28))} {month} *"
    return f"{minute} {hour} * {month} {draw(_field(0, 6, WEEKDAYS))}"


@given(crons(), st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1)))
def test_openings_agree_with_apscheduler_where_the_dialects_agree(
    cron: str, start: datetime
) -> None:
    """An independent implementation as the oracle: APScheduler's cron in UTC, weekdays by name."""
    now = start.replace(second=30, microsecond=0, tzinfo=UTC).timestamp()
    minute, hour, day, month, weekday = cron.split()
    trigger = CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone="UTC"
    )
    expected = trigger.get_next_fire_time(None, datetime.fromtimestamp(now, UTC))
    assert next_open(MaintenanceWindow(cron, 1), now) == expected.timestamp()
