"""When a retraining policy fires: drift runs, device counts and group shares, samples,
cron slots across consecutive checks, the cool-down, and which reason wins."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.server.retraining.policy import (
    DriftTrigger,
    RetrainingPolicy,
    SampleTrigger,
    ScheduleTrigger,
)
from edgefleet.server.retraining.triggers import (
    MAX_LISTED_DEVICES,
    Observations,
    Trigger,
    drifting_devices,
    evaluate,
    next_schedule,
)

NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC).timestamp()
HIGH = [2.0, 2.0, 2.0]
LOW = [0.1, 0.2, 0.1]


def _seen(
    scores: Mapping[str, Sequence[float | None]] | None = None,
    *,
    members: frozenset[str] | None = None,
    now: float = NOW,
    last_triggered_at: float | None = None,
    last_checked_at: float | None = None,
    new_labelled: int = 0,
) -> Observations:
    return Observations(
        now=now,
        last_triggered_at=last_triggered_at,
        last_checked_at=last_checked_at,
        recent_scores=scores or {},
        group_members=members,
        new_labelled=new_labelled,
    )


def _fleet_drift(min_devices: int) -> RetrainingPolicy:
    return RetrainingPolicy(rollout_group="all", drift=DriftTrigger(min_devices=min_devices))


# --- drifting_devices ---------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "drifts"),
    [
        ([1.0, 1.0, 1.0], True),
        ([0.1, 0.2, 3.0, 1.5, 1.0], True),
        ([5.0, 5.0], False),
        ([], False),
        ([2.0, None, 2.0, 2.0], False),
        ([2.0, 2.0, 2.0, None], False),
        ([2.0, 2.0, 0.99, 2.0], False),
        ([2.0, 2.0, 2.0, 0.99], False),
        ([None, 2.0, 2.0, 2.0], True),
    ],
)
def test_a_device_drifts_when_its_last_n_scores_all_reach_the_threshold(
    scores: list[float | None], drifts: bool
) -> None:
    policy = DriftTrigger(score_threshold=1.0, consecutive_windows=3, min_devices=1)
    assert drifting_devices(policy, {"cam-1": scores}, None) == (["cam-1"] if drifts else [])


def test_one_window_is_enough_when_the_policy_asks_for_one() -> None:
    policy = DriftTrigger(consecutive_windows=1, min_devices=1)
    assert drifting_devices(policy, {"a": [0.0, 1.0], "b": [1.0, 0.5], "c": [None]}, None) == ["a"]


def test_drifting_devices_are_sorted_and_limited_to_members() -> None:
    scores = {"cam-3": HIGH, "cam-1": HIGH, "cam-2": LOW, "door-1": HIGH}
    policy = DriftTrigger(min_devices=1)
    assert drifting_devices(policy, scores, None) == ["cam-1", "cam-3", "door-1"]
    members = frozenset({"cam-1", "cam-2", "cam-3", "cam-4"})
    assert drifting_devices(policy, scores, members) == ["cam-1", "cam-3"]


# --- drift trigger: K devices, X% of the group, both ---------------------------


def test_k_devices_in_the_fleet_fire_when_the_policy_has_no_group() -> None:
    scores = {"a": HIGH, "b": HIGH, "c": LOW}
    assert evaluate(_fleet_drift(3), _seen(scores)) is None
    trigger = evaluate(_fleet_drift(2), _seen(scores))
    assert trigger is not None
    assert trigger.reason == "drift"
    assert trigger.detail["devices"] == ["a", "b"]
    assert trigger.detail["device_count"] == 2
    assert trigger.detail["group"] is None
    assert trigger.detail["group_size"] is None
    assert trigger.detail["group_share_percent"] is None
    assert trigger.message == (
        "drift: 2 devices scored >= 1 for 3 windows in a row (needs 2 devices)"
    )


def test_k_devices_count_only_group_members_when_the_policy_has_a_group() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(min_devices=2))
    scores = {"cam-1": HIGH, "door-1": HIGH, "door-2": HIGH}
    members = frozenset({"cam-1", "cam-2"})
    assert evaluate(policy, _seen(scores, members=members)) is None
    scores["cam-2"] = HIGH
    trigger = evaluate(policy, _seen(scores, members=members))
    assert trigger is not None
    assert trigger.detail["devices"] == ["cam-1", "cam-2"]


def test_x_percent_of_the_group_ignores_drifting_devices_outside_it() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(group_percent=30))
    members = frozenset(f"cam-{i}" for i in range(10))
    outside = {f"door-{i}": HIGH for i in range(20)}
    two = {"cam-0": HIGH, "cam-1": HIGH, "cam-2": LOW, **outside}
    assert evaluate(policy, _seen(two, members=members)) is None
    three = {**two, "cam-2": HIGH}
    trigger = evaluate(policy, _seen(three, members=members))
    assert trigger is not None
    assert trigger.detail["devices"] == ["cam-0", "cam-1", "cam-2"]
    assert trigger.detail["group"] == "cams"
    assert trigger.detail["group_size"] == 10
    assert trigger.detail["group_share_percent"] == 30.0
    assert trigger.detail["group_percent"] == 30.0
    assert trigger.message == (
        "drift: 3 devices in group 'cams' (30% of 10) scored >= 1 "
        "for 3 windows in a row (needs 30% of the group)"
    )


def test_members_without_scores_count_in_the_group_size() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(group_percent=50))
    members = frozenset({"cam-1", "cam-2", "cam-3"})
    assert evaluate(policy, _seen({"cam-1": HIGH}, members=members)) is None
    assert evaluate(policy, _seen({"cam-1": HIGH, "cam-2": HIGH}, members=members)) is not None


def test_an_empty_group_never_drifts() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(min_devices=1, group_percent=1))
    assert evaluate(policy, _seen({"door-1": HIGH}, members=frozenset())) is None


@pytest.mark.parametrize(
    ("drifting", "fires"),
    [
        (0, False),
        (1, False),
        (2, True),  # 20% of the group, below K=3
        (3, True),
    ],
)
def test_with_k_and_x_either_suffices(drifting: int, fires: bool) -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(min_devices=3, group_percent=20))
    members = frozenset(f"cam-{i}" for i in range(10))
    scores = {f"cam-{i}": HIGH if i < drifting else LOW for i in range(10)}
    assert (evaluate(policy, _seen(scores, members=members)) is not None) is fires


def test_with_k_and_x_the_count_alone_can_fire() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(min_devices=2, group_percent=50))
    members = frozenset(f"cam-{i}" for i in range(10))
    trigger = evaluate(policy, _seen({"cam-0": HIGH, "cam-1": HIGH}, members=members))
    assert trigger is not None
    assert trigger.detail["group_share_percent"] == 20.0
    assert trigger.message.endswith("(needs 2 devices or 50% of the group)")


def test_the_detail_lists_at_most_50_devices_but_counts_them_all() -> None:
    scores = {f"cam-{i:03d}": HIGH for i in range(120)}
    trigger = evaluate(_fleet_drift(100), _seen(scores))
    assert trigger is not None
    assert trigger.detail["device_count"] == 120
    assert len(trigger.detail["devices"]) == MAX_LISTED_DEVICES == 50
    assert trigger.detail["devices"] == sorted(scores)[:50]


def test_a_policy_with_a_group_needs_its_members_observed() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(min_devices=1))
    with pytest.raises(ValueError, match="policy on group 'cams' need its group_members"):
        evaluate(policy, _seen({"cam-1": HIGH}, members=None))


# --- samples ----------------------------------------------------------------


def test_samples_fire_from_the_minimum_count_on() -> None:
    policy = RetrainingPolicy(group="cams", samples=SampleTrigger(min_labelled=200))
    assert evaluate(policy, _seen(new_labelled=199)) is None
    trigger = evaluate(policy, _seen(new_labelled=200))
    assert trigger == Trigger(
        reason="samples",
        detail={"labelled": 200, "min_labelled": 200},
        message="samples: 200 new labelled edge samples (needs 200)",
    )


# --- enabled and cool-down --------------------------------------------------


def test_a_disabled_policy_never_fires() -> None:
    policy = RetrainingPolicy(enabled=False, group="cams", samples=SampleTrigger(min_labelled=1))
    assert evaluate(policy, _seen(new_labelled=10**6)) is None


def test_the_cool_down_ends_exactly_cooldown_seconds_after_the_last_trigger() -> None:
    policy = RetrainingPolicy(
        group="cams", samples=SampleTrigger(min_labelled=1), cooldown_seconds=600
    )
    last = NOW - 600
    just_before = _seen(now=NOW - 0.001, last_triggered_at=last, new_labelled=5)
    assert evaluate(policy, just_before) is None
    at_the_end = _seen(now=NOW, last_triggered_at=last, new_labelled=5)
    assert evaluate(policy, at_the_end) is not None


def test_no_cool_down_fires_again_at_once() -> None:
    policy = RetrainingPolicy(
        group="cams", samples=SampleTrigger(min_labelled=1), cooldown_seconds=0
    )
    assert evaluate(policy, _seen(last_triggered_at=NOW, new_labelled=1)) is not None


def test_the_cool_down_silences_drift_and_a_passing_cron_slot() -> None:
    policy = RetrainingPolicy(
        group="cams",
        drift=DriftTrigger(min_devices=1),
        schedule=ScheduleTrigger(cron="0 * * * *"),
        cooldown_seconds=3600,
    )
    seen = _seen(
        {"cam-1": HIGH},
        members=frozenset({"cam-1"}),
        now=NOW,
        last_checked_at=NOW - 60,
        last_triggered_at=NOW - 1800,
    )
    assert evaluate(policy, seen) is None
    later = dataclasses.replace(seen, now=NOW + 1800, last_checked_at=NOW)
    quiet = dataclasses.replace(later, recent_scores={"cam-1": LOW})
    assert evaluate(policy, quiet) is None  # the 12:00 slot passed in the cool-down
    trigger = evaluate(policy, later)
    assert trigger is not None
    assert trigger.reason == "drift"


# --- schedule ---------------------------------------------------------------


def _hourly(timezone: str = "UTC") -> RetrainingPolicy:
    return RetrainingPolicy(group="cams", schedule=ScheduleTrigger("0 * * * *", timezone))


def _fired_slots(policy: RetrainingPolicy, start: float, step: float, checks: int) -> list[float]:
    """Evaluates every ``step`` seconds, each check remembering the previous one."""
    fired = []
    last_checked = None
    for index in range(checks):
        now = start + index * step
        trigger = evaluate(policy, _seen(now=now, last_checked_at=last_checked))
        if trigger is not None:
            assert trigger.reason == "schedule"
            fired.append(trigger.detail["slot"])
        last_checked = now
    return fired


def test_the_schedule_fires_once_per_slot_across_consecutive_checks() -> None:
    start = datetime(2024, 3, 1, 0, 0, 30, tzinfo=UTC).timestamp()
    fired = _fired_slots(_hourly(), start, step=7, checks=3 * 3600 // 7)
    hours = [datetime(2024, 3, 1, h, tzinfo=UTC).timestamp() for h in (1, 2, 3)]
    assert fired == hours


def test_a_check_exactly_on_the_slot_fires_it_and_the_next_check_does_not() -> None:
    slot = datetime(2024, 3, 1, 5, tzinfo=UTC).timestamp()
    fired = _fired_slots(_hourly(), slot - 60, step=60, checks=3)
    assert fired == [slot]


def test_the_first_check_never_fires_the_schedule() -> None:
    slot = datetime(2024, 3, 1, 5, tzinfo=UTC).timestamp()
    assert evaluate(_hourly(), _seen(now=slot, last_checked_at=None)) is None


def test_slots_missed_while_down_fire_once_not_once_each() -> None:
    policy = _hourly()
    down_at = datetime(2024, 3, 1, 5, 30, tzinfo=UTC).timestamp()
    back = down_at + 10 * 3600
    trigger = evaluate(policy, _seen(now=back, last_checked_at=down_at))
    assert trigger is not None
    assert trigger.detail["slot"] == datetime(2024, 3, 1, 6, tzinfo=UTC).timestamp()
    assert evaluate(policy, _seen(now=back + 60, last_checked_at=back)) is None


def test_the_schedule_follows_its_time_zone_across_daylight_saving() -> None:
    policy = RetrainingPolicy(group="cams", schedule=ScheduleTrigger("0 9 * * *", "Europe/Berlin"))
    winter = datetime(2024, 1, 15, 8, 0, tzinfo=UTC).timestamp()  # 09:00 CET
    summer = datetime(2024, 7, 15, 7, 0, tzinfo=UTC).timestamp()  # 09:00 CEST
    for slot in (winter, summer):
        assert evaluate(policy, _seen(now=slot - 1, last_checked_at=slot - 120)) is None
        trigger = evaluate(policy, _seen(now=slot, last_checked_at=slot - 1))
        assert trigger is not None
        assert trigger.detail["slot"] == slot
    trigger = evaluate(policy, _seen(now=summer, last_checked_at=summer - 1))
    assert trigger is not None
    assert trigger.detail == {
        "cron": "0 9 * * *",
        "timezone": "Europe/Berlin",
        "slot": summer,
        "slot_time": "2024-07-15T09:00:00+02:00",
    }
    assert trigger.message == (
        "schedule: cron '0 9 * * *' slot 2024-07-15T09:00:00+02:00 (Europe/Berlin)"
    )


def test_a_daily_schedule_fires_once_a_day_over_a_week_of_ticks() -> None:
    policy = RetrainingPolicy(
        group="cams", schedule=ScheduleTrigger("30 2 * * *", "America/New_York")
    )
    start = datetime(2024, 3, 6, tzinfo=UTC).timestamp()
    fired = _fired_slots(policy, start, step=600, checks=7 * 24 * 6)
    zone = ZoneInfo("America/New_York")
    local = [datetime.fromtimestamp(slot, zone) for slot in fired]
    assert len(fired) == 7
    # 2024-03-10 02:30 does not exist in New York; the window module opens it at 03:30.
    assert [(t.day, t.hour, t.minute) for t in local] == [
        (6, 2, 30),
        (7, 2, 30),
        (8, 2, 30),
        (9, 2, 30),
        (10, 3, 30),
        (11, 2, 30),
        (12, 2, 30),
    ]


def test_next_schedule_gives_the_first_slot_after_the_time_asked() -> None:
    policy = _hourly()
    slot = datetime(2024, 3, 1, 5, tzinfo=UTC).timestamp()
    assert next_schedule(policy, slot - 1800) == slot
    assert next_schedule(policy, slot - 0.5) == slot
    assert next_schedule(policy, slot) == slot + 3600
    berlin = RetrainingPolicy(
        group="cams", schedule=ScheduleTrigger("0 3 * * sun", "Europe/Berlin")
    )
    friday = datetime(2024, 1, 12, tzinfo=UTC).timestamp()
    assert next_schedule(berlin, friday) == datetime(2024, 1, 14, 2, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "policy",
    [
        RetrainingPolicy(group="cams", samples=SampleTrigger(min_labelled=1)),
        dataclasses.replace(_hourly(), enabled=False),
    ],
)
def test_next_schedule_is_none_without_a_schedule_or_when_disabled(
    policy: RetrainingPolicy,
) -> None:
    assert next_schedule(policy, NOW) is None


# --- precedence -------------------------------------------------------------


def _everything() -> RetrainingPolicy:
    return RetrainingPolicy(
        group="cams",
        drift=DriftTrigger(min_devices=1),
        samples=SampleTrigger(min_labelled=10),
        schedule=ScheduleTrigger("0 * * * *"),
    )


def test_drift_wins_over_samples_and_schedule_then_samples_over_schedule() -> None:
    slot = datetime(2024, 3, 1, 5, tzinfo=UTC).timestamp()
    seen = _seen(
        {"cam-1": HIGH},
        members=frozenset({"cam-1"}),
        now=slot,
        last_checked_at=slot - 60,
        new_labelled=10,
    )
    reasons = []
    for scores in ({"cam-1": HIGH}, {"cam-1": LOW}):
        for labelled in (10, 0):
            trigger = evaluate(
                _everything(),
                dataclasses.replace(seen, recent_scores=scores, new_labelled=labelled),
            )
            reasons.append(None if trigger is None else trigger.reason)
    assert reasons == ["drift", "drift", "samples", "schedule"]
    quiet = dataclasses.replace(
        seen, recent_scores={"cam-1": LOW}, new_labelled=0, now=slot + 60, last_checked_at=slot
    )
    assert evaluate(_everything(), quiet) is None


# --- properties -------------------------------------------------------------

_score = st.none() | st.floats(0, 5)
_scores = st.dictionaries(
    st.from_regex(r"cam-[0-9]{1,3}", fullmatch=True), st.lists(_score, max_size=6), max_size=30
)
_drift = st.builds(
    DriftTrigger,
    score_threshold=st.floats(0.1, 4),
    consecutive_windows=st.integers(1, 5),
    min_devices=st.none() | st.integers(1, 10),
    group_percent=st.floats(1, 100),
)


@given(
    _drift,
    _scores,
    st.lists(_score, max_size=6),
    st.booleans(),
    st.frozensets(st.from_regex(r"cam-[0-9]{1,3}", fullmatch=True), max_size=30),
)
def test_adding_a_device_that_does_not_drift_never_creates_a_trigger(
    drift: DriftTrigger,
    scores: dict[str, list[float | None]],
    quiet_scores: list[float | None],
    in_group: bool,
    members: frozenset[str],
) -> None:
    quiet_scores = [*quiet_scores, None]  # its last window breaks any run
    policy = RetrainingPolicy(group="cams", drift=drift)
    newcomer = "new-device"
    before = evaluate(policy, _seen(scores, members=members))
    grown = {**scores, newcomer: quiet_scores}
    after_members = members | {newcomer} if in_group else members
    after = evaluate(policy, _seen(grown, members=after_members))
    if before is None:
        assert after is None
    assert newcomer not in drifting_devices(drift, grown, after_members)


@given(_drift, _scores, st.frozensets(st.from_regex(r"cam-[0-9]{1,3}", fullmatch=True)))
def test_drifting_devices_are_sorted_scored_members(
    drift: DriftTrigger, scores: dict[str, list[float | None]], members: frozenset[str]
) -> None:
    found = drifting_devices(drift, scores, members)
    assert found == sorted(found)
    assert set(found) <= members & set(scores)
    for device in found:
        last = scores[device][-drift.consecutive_windows :]
        assert len(last) == drift.consecutive_windows
        assert all(s is not None and s >= drift.score_threshold for s in last)
