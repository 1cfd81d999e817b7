"""Whether a retraining policy fires now: on drift, on new labelled samples or on schedule.

Pure: the scheduler tick gathers :class:`Observations` (its clock, the latest
drift scores per device, the group's members, the count of unused labelled
samples) and asks :func:`evaluate`, which returns at most one
:class:`Trigger`. When several fire at once the most specific reason wins:
drift, then samples, then schedule.

The cool-down silences every trigger, the schedule included: a cron slot that
passes while the policy cools down is skipped, not kept for later, because a
retraining has just run. A slot fires when it lies in ``(last_checked_at,
now]``, so consecutive evaluations fire it exactly once, and the first
evaluation (no ``last_checked_at``) fires none: a restarted server does not
catch up on slots it missed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgefleet.server.policy_fields import show
from edgefleet.server.retraining.policy import DriftTrigger, RetrainingPolicy, ScheduleTrigger
from edgefleet.server.rollouts import window
from edgefleet.server.rollouts.policy import MaintenanceWindow

MAX_LISTED_DEVICES = 50
"""Drifting devices named in a trigger's detail; the count covers them all."""


@dataclass(frozen=True, slots=True)
class Trigger:
    reason: str
    """``drift``, ``samples`` or ``schedule``."""
    detail: dict[str, Any]
    """The numbers behind the decision, for the audit log and the webhook."""
    message: str
    """One line for logs, the audit log and the webhook."""


@dataclass(frozen=True, slots=True)
class Observations:
    now: float
    last_triggered_at: float | None
    """For the cool-down; None when the policy never fired."""
    last_checked_at: float | None
    """The previous evaluation; a cron slot in ``(last_checked_at, now]`` fires."""
    recent_scores: Mapping[str, Sequence[float | None]]
    """Device id to its latest drift scores for the champion, oldest first;
    None is a window too small to judge, which breaks a run."""
    group_members: frozenset[str] | None
    """The policy group's devices; None when the policy has no group."""
    new_labelled: int
    """Labelled edge samples no retraining has used yet."""


def drifting_devices(
    policy: DriftTrigger,
    recent_scores: Mapping[str, Sequence[float | None]],
    members: frozenset[str] | None,
) -> list[str]:
    """Sorted ids of the devices (of ``members`` only, unless None) whose last
    ``consecutive_windows`` scores all reach ``score_threshold``."""
    windows = policy.consecutive_windows

    def drifts(scores: Sequence[float | None]) -> bool:
        if len(scores) < windows:
            return False
        return all(s is not None and s >= policy.score_threshold for s in scores[-windows:])

    return sorted(
        device
        for device, scores in recent_scores.items()
        if (members is None or device in members) and drifts(scores)
    )


def evaluate(policy: RetrainingPolicy, seen: Observations) -> Trigger | None:
    """The trigger that fires now, or None when disabled, cooling down or none fires."""
    if not policy.enabled:
        return None
    if seen.last_triggered_at is not None and seen.now < (
        seen.last_triggered_at + policy.cooldown_seconds
    ):
        return None
    for check in (_drift, _samples, _schedule):
        trigger = check(policy, seen)
        if trigger is not None:
            return trigger
    return None


def next_schedule(policy: RetrainingPolicy, after: float) -> float | None:
    """The first cron slot after ``after``; None when the policy has no schedule or is off."""
    if not policy.enabled or policy.schedule is None:
        return None
    return _next_slot(policy.schedule, after)


def _next_slot(schedule: ScheduleTrigger, after: float) -> float:
    """A zero-length maintenance window opens at exactly the cron's slots, so the
    rollout window module finds them, with its daylight-saving rules, in one place."""
    slots = MaintenanceWindow(cron=schedule.cron, duration_seconds=0, timezone=schedule.timezone)
    return window.next_open(slots, math.nextafter(after, math.inf))


def _drift(policy: RetrainingPolicy, seen: Observations) -> Trigger | None:
    drift = policy.drift
    if drift is None:
        return None
    members = _members(policy, seen)
    devices = drifting_devices(drift, seen.recent_scores, members)
    size = None if members is None else len(members)
    share = 100 * len(devices) / size if size else None
    by_count = drift.min_devices is not None and len(devices) >= drift.min_devices
    by_share = (
        drift.group_percent is not None and share is not None and share >= drift.group_percent
    )
    if not (by_count or by_share):
        return None
    detail: dict[str, Any] = {
        "devices": devices[:MAX_LISTED_DEVICES],
        "device_count": len(devices),
        "score_threshold": drift.score_threshold,
        "consecutive_windows": drift.consecutive_windows,
        "min_devices": drift.min_devices,
        "group_percent": drift.group_percent,
        "group": policy.group,
        "group_size": size,
        "group_share_percent": share,
    }
    scope = "" if share is None else f" in group {policy.group!r} ({share:.3g}% of {size})"
    needs = [f"{drift.min_devices} devices"] if drift.min_devices is not None else []
    if drift.group_percent is not None:
        needs.append(f"{show(drift.group_percent)}% of the group")
    message = (
        f"drift: {len(devices)} devices{scope} scored >= {show(drift.score_threshold)} "
        f"for {drift.consecutive_windows} windows in a row (needs {' or '.join(needs)})"
    )
    return Trigger(reason="drift", detail=detail, message=message)


def _members(policy: RetrainingPolicy, seen: Observations) -> frozenset[str] | None:
    """The group's devices, or None to count the whole fleet."""
    if policy.group is None:
        return None
    if seen.group_members is None:
        msg = f"observations for a policy on group {policy.group!r} need its group_members"
        raise ValueError(msg)
    return seen.group_members


def _samples(policy: RetrainingPolicy, seen: Observations) -> Trigger | None:
    samples = policy.samples
    if samples is None or seen.new_labelled < samples.min_labelled:
        return None
    return Trigger(
        reason="samples",
        detail={"labelled": seen.new_labelled, "min_labelled": samples.min_labelled},
        message=(
            f"samples: {seen.new_labelled} new labelled edge samples (needs {samples.min_labelled})"
        ),
    )


def _schedule(policy: RetrainingPolicy, seen: Observations) -> Trigger | None:
    schedule = policy.schedule
    if schedule is None or seen.last_checked_at is None:
        return None
    slot = _next_slot(schedule, seen.last_checked_at)
    if slot > seen.now:
        return None
    local = datetime.fromtimestamp(slot, window.time_zone(schedule.timezone)).isoformat()
    return Trigger(
        reason="schedule",
        detail={
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "slot": slot,
            "slot_time": local,
        },
        message=f"schedule: cron {schedule.cron!r} slot {local} ({schedule.timezone})",
    )
