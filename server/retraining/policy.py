"""A model's retraining policy: what triggers a challenger, what it trains on,
how it must beat the champion and where a winner rolls out.

Like the rollout policy it travels as JSON (the API body, the DB column) and
lives in memory as frozen dataclasses; :func:`policy_from_dict` is the one way
in, refusing unknown keys and wrong types through :mod:`..policy_fields`, and
:func:`validate` refuses settings that contradict each other, naming the field:
an enabled policy that nothing can trigger, a group share with no group, an
automatic promotion with nowhere to roll out, a sample-count trigger for a
training run that would not use the samples.

The embedded ``rollout_policy`` stays in the rollout module's JSON form (that
module owns its meaning); :func:`validate` checks it with that module and
returns it with every default written out, so a stored policy still means the
same after a rollout default changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.policy_fields import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    PERCENT,
    POSITIVE,
    Range,
    boolean,
    check,
    check_cron,
    choice,
    integer,
    kind,
    number,
    optional,
    record,
    string,
    written,
)
from edgefleet.server.rollouts import policy as rollouts
from edgefleet.shared.errors import TopicError
from edgefleet.shared.topics import validate_device_id

_WINDOWS = Range(1, 100)
_EDGE_WEIGHT = Range(1, 10)
_EDGE_SAMPLES = Range(1, 100_000)
_POINTS = Range(0, 100)


class Approval(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class DriftTrigger:
    """Fires when enough devices drift: at least ``min_devices`` of them, or
    ``group_percent`` of the policy's group (either suffices when both are set).

    A device drifts when each of its last ``consecutive_windows`` drift scores
    is at least ``score_threshold``. Scores are normalized so that 1.0 is the
    limit calibrated for a 1% false-alarm rate.
    """

    score_threshold: float = 1.0
    consecutive_windows: int = 3
    min_devices: int | None = None
    group_percent: float | None = None


@dataclass(frozen=True, slots=True)
class SampleTrigger:
    """Fires once this many labelled edge samples arrived since the last retraining."""

    min_labelled: int


@dataclass(frozen=True, slots=True)
class ScheduleTrigger:
    """Fires at each slot of a classic 5-field crontab, read on ``timezone``'s wall clock."""

    cron: str
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class TrainingData:
    """``dataset`` None trains on the champion's dataset; edge samples go newest first,
    each counted ``edge_weight`` times."""

    dataset: str | None = None
    include_edge_samples: bool = True
    edge_weight: int = 1
    max_edge_samples: int = 5000


@dataclass(frozen=True, slots=True)
class Comparison:
    """The challenger must gain ``min_gain_points`` (percentage points) over the champion
    on fresh edge data, lose at most ``forget_budget_points`` on the original test split,
    and the fresh holdout needs ``min_holdout`` labelled samples to judge at all."""

    min_gain_points: float = 1.0
    forget_budget_points: float = 2.0
    min_holdout: int = 20


@dataclass(frozen=True, slots=True)
class RetrainingPolicy:
    """``group`` scopes the policy: the devices counted for ``drift.group_percent``,
    whose samples are trained on, and the default rollout target. ``rollout_policy``
    is a rollout policy in its JSON form; None means the default rollout policy."""

    enabled: bool = True
    group: str | None = None
    drift: DriftTrigger | None = None
    samples: SampleTrigger | None = None
    schedule: ScheduleTrigger | None = None
    cooldown_seconds: float = 3600.0
    data: TrainingData = TrainingData()
    comparison: Comparison = Comparison()
    approval: Approval = Approval.AUTOMATIC
    rollout_group: str | None = None
    rollout_policy: dict[str, Any] | None = None


def rollout_target(policy: RetrainingPolicy) -> str | None:
    """The group a promoted challenger rolls out to."""
    return policy.rollout_group if policy.rollout_group is not None else policy.group


def validate(policy: RetrainingPolicy) -> RetrainingPolicy:
    """The policy with its rollout policy written out in full when it is usable,
    else an error naming the first bad field."""
    for path, name in (("group", policy.group), ("rollout_group", policy.rollout_group)):
        if name is not None:
            _check_name(path, name)
    if policy.drift is not None:
        _check_drift(policy.drift, policy.group)
    if policy.samples is not None:
        check(policy.samples.min_labelled, "samples.min_labelled", AT_LEAST_ONE)
    if policy.schedule is not None:
        check_cron(policy.schedule.cron, policy.schedule.timezone, "schedule")
    check(policy.cooldown_seconds, "cooldown_seconds", NON_NEGATIVE)
    _check_data(policy.data, has_samples_trigger=policy.samples is not None)
    _check_comparison(policy.comparison)
    if policy.enabled and not (policy.drift or policy.samples or policy.schedule):
        raise InvalidInputError(
            "enabled needs a trigger: set drift, samples or schedule, or enabled=false"
        )
    if policy.approval is Approval.AUTOMATIC and rollout_target(policy) is None:
        raise InvalidInputError(
            "approval=automatic needs rollout_group or group: "
            "a promoted challenger would have nowhere to roll out"
        )
    return dataclasses.replace(policy, rollout_policy=_full_rollout_policy(policy.rollout_policy))


def _check_name(path: str, name: str) -> None:
    """Group and dataset names use the device-id alphabet, like everywhere in the server."""
    try:
        validate_device_id(name)
    except TopicError as err:
        raise InvalidInputError(f"{path} is not a valid name: {err}") from err


def _check_drift(drift: DriftTrigger, group: str | None) -> None:
    check(drift.score_threshold, "drift.score_threshold", POSITIVE)
    check(drift.consecutive_windows, "drift.consecutive_windows", _WINDOWS)
    if drift.min_devices is None and drift.group_percent is None:
        raise InvalidInputError("drift needs min_devices or group_percent (or both)")
    if drift.min_devices is not None:
        check(drift.min_devices, "drift.min_devices", AT_LEAST_ONE)
    if drift.group_percent is not None:
        check(drift.group_percent, "drift.group_percent", PERCENT)
        if group is None:
            raise InvalidInputError(
                "drift.group_percent needs group: it is a share of the group's devices"
            )


def _check_data(data: TrainingData, *, has_samples_trigger: bool) -> None:
    if data.dataset is not None:
        _check_name("data.dataset", data.dataset)
    check(data.edge_weight, "data.edge_weight", _EDGE_WEIGHT)
    check(data.max_edge_samples, "data.max_edge_samples", _EDGE_SAMPLES)
    if data.include_edge_samples:
        return
    if has_samples_trigger:
        raise InvalidInputError(
            "data.include_edge_samples=false contradicts samples: the trigger waits "
            "for new edge samples that training would then leave out"
        )
    if data.edge_weight != 1:
        raise InvalidInputError(
            f"data.edge_weight must be 1 when data.include_edge_samples is false "
            f"(there are no edge samples to weigh), got {data.edge_weight}"
        )


def _check_comparison(comparison: Comparison) -> None:
    check(comparison.min_gain_points, "comparison.min_gain_points", _POINTS)
    check(comparison.forget_budget_points, "comparison.forget_budget_points", _POINTS)
    check(comparison.min_holdout, "comparison.min_holdout", AT_LEAST_ONE)


def _full_rollout_policy(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        return rollouts.policy_to_dict(rollouts.policy_from_dict(data))
    except InvalidInputError as err:
        raise InvalidInputError(f"rollout_policy.{err}") from err


def _json_object(value: object, path: str) -> dict[str, Any]:
    """Checked for being an object only; :func:`validate` reads it as a rollout policy."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{path} must be an object, got {kind(value)}")
    return dict(value)


_policy = record(
    RetrainingPolicy,
    {
        "enabled": boolean,
        "group": optional(string),
        "drift": optional(
            record(
                DriftTrigger,
                {
                    "score_threshold": number,
                    "consecutive_windows": integer,
                    "min_devices": optional(integer),
                    "group_percent": optional(number),
                },
            )
        ),
        "samples": optional(record(SampleTrigger, {"min_labelled": integer})),
        "schedule": optional(record(ScheduleTrigger, {"cron": string, "timezone": string})),
        "cooldown_seconds": number,
        "data": record(
            TrainingData,
            {
                "dataset": optional(string),
                "include_edge_samples": boolean,
                "edge_weight": integer,
                "max_edge_samples": integer,
            },
        ),
        "comparison": record(
            Comparison,
            {"min_gain_points": number, "forget_budget_points": number, "min_holdout": integer},
        ),
        "approval": choice(Approval),
        "rollout_group": optional(string),
        "rollout_policy": optional(_json_object),
    },
)


def policy_from_dict(data: Mapping[str, Any]) -> RetrainingPolicy:
    """Missing keys take their defaults; unknown keys and contradictions are refused."""
    return validate(_policy(data, ""))


def policy_to_dict(policy: RetrainingPolicy) -> dict[str, Any]:
    """What :func:`policy_from_dict` reads back, the rollout policy as stored."""
    return written(policy)
