"""Retraining policies from JSON: defaults, round trips, and every refusal naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.retraining.policy import (
    Approval,
    Comparison,
    DriftTrigger,
    RetrainingPolicy,
    SampleTrigger,
    ScheduleTrigger,
    TrainingData,
    policy_from_dict,
    policy_to_dict,
    rollout_target,
    validate,
)
from edgefleet.server.rollouts.policy import RolloutPolicy
from edgefleet.server.rollouts.policy import policy_to_dict as rollout_policy_to_dict

MINIMAL: dict[str, Any] = {"group": "cams", "samples": {"min_labelled": 100}}

FULL: dict[str, Any] = {
    "enabled": True,
    "group": "cams",
    "drift": {
        "score_threshold": 1.5,
        "consecutive_windows": 4,
        "min_devices": 3,
        "group_percent": 20,
    },
    "samples": {"min_labelled": 500},
    "schedule": {"cron": "0 3 * * sun", "timezone": "Europe/Berlin"},
    "cooldown_seconds": 86400,
    "data": {
        "dataset": "kws-base",
        "include_edge_samples": True,
        "edge_weight": 3,
        "max_edge_samples": 20000,
    },
    "comparison": {"min_gain_points": 0.5, "forget_budget_points": 1, "min_holdout": 50},
    "approval": "manual",
    "rollout_group": "cams-canary",
    "rollout_policy": {"waves": [{"count": 2}, {"percent": 100}], "breach_action": "pause"},
}


def test_missing_keys_take_their_defaults() -> None:
    policy = policy_from_dict(MINIMAL)
    assert policy == RetrainingPolicy(group="cams", samples=SampleTrigger(min_labelled=100))
    assert policy.enabled is True
    assert policy.drift is None
    assert policy.schedule is None
    assert policy.cooldown_seconds == 3600.0
    assert policy.data == TrainingData(
        dataset=None, include_edge_samples=True, edge_weight=1, max_edge_samples=5000
    )
    assert policy.comparison == Comparison(
        min_gain_points=1.0, forget_budget_points=2.0, min_holdout=20
    )
    assert policy.approval is Approval.AUTOMATIC
    assert policy.rollout_group is None
    assert policy.rollout_policy is None


def test_a_drift_trigger_takes_its_defaults() -> None:
    policy = policy_from_dict({"group": "cams", "drift": {"min_devices": 2}})
    assert policy.drift == DriftTrigger(
        score_threshold=1.0, consecutive_windows=3, min_devices=2, group_percent=None
    )


def test_every_field_is_read() -> None:
    policy = policy_from_dict(FULL)
    assert policy.drift == DriftTrigger(
        score_threshold=1.5, consecutive_windows=4, min_devices=3, group_percent=20.0
    )
    assert policy.samples == SampleTrigger(min_labelled=500)
    assert policy.schedule == ScheduleTrigger(cron="0 3 * * sun", timezone="Europe/Berlin")
    assert policy.cooldown_seconds == 86400.0
    assert policy.data == TrainingData(
        dataset="kws-base", include_edge_samples=True, edge_weight=3, max_edge_samples=20000
    )
    assert policy.comparison == Comparison(
        min_gain_points=0.5, forget_budget_points=1.0, min_holdout=50
    )
    assert policy.approval is Approval.MANUAL
    assert policy.rollout_group == "cams-canary"
    assert rollout_target(policy) == "cams-canary"


def test_the_rollout_policy_is_stored_with_every_default_written_out() -> None:
    policy = policy_from_dict(FULL)
    assert policy.rollout_policy is not None
    assert policy.rollout_policy["breach_action"] == "pause"
    assert policy.rollout_policy["waves"][0]["count"] == 2
    assert policy.rollout_policy["waves"][0]["soak_seconds"] == 300.0
    assert policy.rollout_policy["gates"]["min_inferences"] == 50
    assert policy.rollout_policy["maintenance"] is None


def test_an_empty_rollout_policy_is_the_default_one_spelled_out() -> None:
    policy = policy_from_dict({**MINIMAL, "rollout_policy": {}})
    assert policy.rollout_policy == rollout_policy_to_dict(RolloutPolicy())


def test_validate_returns_a_code_built_policy_with_its_rollout_policy_spelled_out() -> None:
    built = RetrainingPolicy(
        group="cams", samples=SampleTrigger(min_labelled=1), rollout_policy={"shadow": True}
    )
    checked = validate(built)
    assert checked.rollout_policy is not None
    assert checked.rollout_policy["shadow"] is True
    assert checked.rollout_policy["offline"] == "wait"
    assert checked == validate(checked)


@pytest.mark.parametrize("data", [MINIMAL, FULL, {"enabled": False, "approval": "manual"}])
def test_the_dict_round_trips_through_json(data: dict[str, Any]) -> None:
    policy = policy_from_dict(data)
    stored = json.loads(json.dumps(policy_to_dict(policy)))
    assert policy_from_dict(stored) == policy
    assert policy_to_dict(policy_from_dict(stored)) == stored


def test_the_dict_spells_out_defaults_and_enum_values() -> None:
    stored = policy_to_dict(policy_from_dict(MINIMAL))
    assert stored == {
        "enabled": True,
        "group": "cams",
        "drift": None,
        "samples": {"min_labelled": 100},
        "schedule": None,
        "cooldown_seconds": 3600.0,
        "data": {
            "dataset": None,
            "include_edge_samples": True,
            "edge_weight": 1,
            "max_edge_samples": 5000,
        },
        "comparison": {"min_gain_points": 1.0, "forget_budget_points": 2.0, "min_holdout": 20},
        "approval": "automatic",
        "rollout_group": None,
        "rollout_policy": None,
    }
    assert type(stored["approval"]) is str


def test_editing_the_written_dict_leaves_the_policy_alone() -> None:
    policy = policy_from_dict(FULL)
    stored = policy_to_dict(policy)
    stored["rollout_policy"]["breach_action"] = "abort"
    stored["rollout_policy"]["waves"].clear()
    assert policy.rollout_policy is not None
    assert policy.rollout_policy["breach_action"] == "pause"
    assert len(policy.rollout_policy["waves"]) == 2


@pytest.mark.parametrize(
    ("policy", "target"),
    [
        (RetrainingPolicy(), None),
        (RetrainingPolicy(group="cams"), "cams"),
        (RetrainingPolicy(rollout_group="canary"), "canary"),
        (RetrainingPolicy(group="cams", rollout_group="canary"), "canary"),
    ],
)
def test_the_rollout_target_is_rollout_group_else_group(
    policy: RetrainingPolicy, target: str | None
) -> None:
    assert rollout_target(policy) == target


def _with(**fields: Any) -> dict[str, Any]:
    return {**MINIMAL, **fields}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "policy must be an object, got list"),
        (_with(cooldown=60), "cooldown is not a policy field (known: enabled, group, drift,"),
        (_with(drift={"min_devices": 1, "windows": 3}), "drift.windows is not a policy field"),
        (_with(samples={}), "samples.min_labelled is required"),
        (_with(schedule={"timezone": "UTC"}), "schedule.cron is required"),
        (_with(enabled="yes"), "enabled must be true or false, got str"),
        (_with(group=5), "group must be a string, got int"),
        (_with(cooldown_seconds="1h"), "cooldown_seconds must be a number, got str"),
        (_with(cooldown_seconds=True), "cooldown_seconds must be a number, got bool"),
        (_with(samples={"min_labelled": 1.5}), "samples.min_labelled must be a whole number"),
        (_with(approval="auto"), "approval must be one of automatic, manual, got 'auto'"),
        (_with(data=[]), "data must be an object, got list"),
        (_with(rollout_policy=[1]), "rollout_policy must be an object, got list"),
        (_with(rollout_policy="{}"), "rollout_policy must be an object, got str"),
        (
            {"approval": "manual"},
            "enabled needs a trigger: set drift, samples or schedule, or enabled=false",
        ),
        ({}, "enabled needs a trigger"),
        (
            {"group": "cams", "drift": {}},
            "drift needs min_devices or group_percent (or both)",
        ),
        (
            {"drift": {"group_percent": 10}, "approval": "manual"},
            "drift.group_percent needs group: it is a share of the group's devices",
        ),
        (
            {"rollout_group": "all", "drift": {"min_devices": 1, "group_percent": 10}},
            "drift.group_percent needs group",
        ),
        (_with(drift={"min_devices": 0}), "drift.min_devices must be >= 1, got 0"),
        (_with(drift={"min_devices": -3}), "drift.min_devices must be >= 1, got -3"),
        (_with(drift={"group_percent": 0}), "drift.group_percent must be in (0, 100], got 0"),
        (_with(drift={"group_percent": 101}), "drift.group_percent must be in (0, 100], got 101"),
        (
            _with(drift={"min_devices": 1, "score_threshold": 0}),
            "drift.score_threshold must be > 0, got 0",
        ),
        (
            _with(drift={"min_devices": 1, "score_threshold": float("nan")}),
            "drift.score_threshold must be > 0, got nan",
        ),
        (
            _with(drift={"min_devices": 1, "consecutive_windows": 0}),
            "drift.consecutive_windows must be in [1, 100], got 0",
        ),
        (
            _with(drift={"min_devices": 1, "consecutive_windows": 101}),
            "drift.consecutive_windows must be in [1, 100], got 101",
        ),
        (
            {"samples": {"min_labelled": 10}},
            "approval=automatic needs rollout_group or group: "
            "a promoted challenger would have nowhere to roll out",
        ),
        (
            {"schedule": {"cron": "0 3 * * *"}, "approval": "automatic"},
            "approval=automatic needs rollout_group or group",
        ),
        ({"enabled": False}, "approval=automatic needs rollout_group or group"),
        (
            _with(data={"include_edge_samples": False}),
            "data.include_edge_samples=false contradicts samples: the trigger waits for new "
            "edge samples that training would then leave out",
        ),
        (
            {
                "group": "cams",
                "schedule": {"cron": "0 3 * * *"},
                "data": {"include_edge_samples": False, "edge_weight": 2},
            },
            "data.edge_weight must be 1 when data.include_edge_samples is false "
            "(there are no edge samples to weigh), got 2",
        ),
        (_with(data={"edge_weight": 0}), "data.edge_weight must be in [1, 10], got 0"),
        (_with(data={"edge_weight": 11}), "data.edge_weight must be in [1, 10], got 11"),
        (_with(data={"max_edge_samples": 0}), "data.max_edge_samples must be in [1, 100000]"),
        (
            _with(data={"max_edge_samples": 100001}),
            "data.max_edge_samples must be in [1, 100000], got 100001",
        ),
        (_with(samples={"min_labelled": 0}), "samples.min_labelled must be >= 1, got 0"),
        (_with(cooldown_seconds=-1), "cooldown_seconds must be >= 0, got -1"),
        (_with(cooldown_seconds=float("inf")), "cooldown_seconds must be >= 0, got inf"),
        (
            _with(comparison={"min_gain_points": -0.5}),
            "comparison.min_gain_points must be in [0, 100], got -0.5",
        ),
        (
            _with(comparison={"forget_budget_points": 101}),
            "comparison.forget_budget_points must be in [0, 100], got 101",
        ),
        (_with(comparison={"min_holdout": 0}), "comparison.min_holdout must be >= 1, got 0"),
        (
            _with(schedule={"cron": "0 3 * *"}),
            "schedule.cron: cron needs 5 fields (minute hour day-of-month month day-of-week), "
            "got 4",
        ),
        (
            _with(schedule={"cron": "0 0 31 2 *"}),
            "schedule.cron: cron '0 0 31 2 *' never matches",
        ),
        (
            _with(schedule={"cron": "0 3 * * *", "timezone": "Mars/Olympus"}),
            "schedule.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            _with(schedule={"cron": "0 3 * * *", "timezone": "localtime"}),
            "schedule.timezone: unknown time zone 'localtime'",
        ),
        (_with(group="Cams"), "group is not a valid name: invalid device id 'Cams'"),
        (_with(group=""), "group is not a valid name"),
        (_with(group="../etc"), "group is not a valid name"),
        (_with(rollout_group="a b"), "rollout_group is not a valid name"),
        (_with(data={"dataset": "x/y"}), "data.dataset is not a valid name"),
        (
            _with(rollout_policy={"waves": [{"percent": 10}, {"percent": 120}]}),
            "rollout_policy.waves[1].percent must be in (0, 100], got 120",
        ),
        (
            _with(rollout_policy={"soak": 1}),
            "rollout_policy.soak is not a policy field (known: waves,",
        ),
        (
            _with(rollout_policy={"gates": {"min_shadow_agreement": 0.9}}),
            "rollout_policy.gates.min_shadow_agreement needs shadow=true",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        policy_from_dict(data)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "data",
    [
        {"enabled": False, "approval": "manual"},
        {"samples": {"min_labelled": 1}, "approval": "manual"},
        {"rollout_group": "all", "drift": {"min_devices": 1}},
        {"group": "cams", "drift": {"group_percent": 100}},
        {"group": "cams", "drift": {"min_devices": 1, "consecutive_windows": 100}},
        {
            "group": "cams",
            "schedule": {"cron": "*/15 * * * *"},
            "data": {"include_edge_samples": False},
            "cooldown_seconds": 0,
        },
        {"group": "cams", "samples": {"min_labelled": 1}, "data": {"edge_weight": 10}},
        {"group": "cams", "samples": {"min_labelled": 1}, "data": {"max_edge_samples": 100000}},
        {
            "group": "cams",
            "samples": {"min_labelled": 1},
            "comparison": {"min_gain_points": 0, "forget_budget_points": 100, "min_holdout": 1},
        },
    ],
)
def test_settings_on_their_bounds_are_accepted(data: dict[str, Any]) -> None:
    assert policy_to_dict(policy_from_dict(data))["approval"] in {"automatic", "manual"}


def test_validate_checks_a_policy_built_in_code() -> None:
    policy = RetrainingPolicy(group="cams", drift=DriftTrigger(min_devices=0))
    with pytest.raises(InvalidInputError, match=r"^drift\.min_devices must be >= 1, got 0$"):
        validate(policy)


_names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
_policies = st.builds(
    RetrainingPolicy,
    enabled=st.booleans(),
    group=_names,
    drift=st.none()
    | st.builds(
        DriftTrigger,
        score_threshold=st.floats(0.01, 50),
        consecutive_windows=st.integers(1, 100),
        min_devices=st.none() | st.integers(1, 10_000),
        group_percent=st.none() | st.floats(0.01, 100),
    ),
    samples=st.none() | st.builds(SampleTrigger, min_labelled=st.integers(1, 10**6)),
    schedule=st.none()
    | st.builds(
        ScheduleTrigger,
        cron=st.sampled_from(["0 3 * * *", "*/5 * * * mon-fri", "30 2 1 * *"]),
        timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    ),
    cooldown_seconds=st.floats(0, 10**7),
    data=st.builds(
        TrainingData,
        dataset=st.none() | _names,
        edge_weight=st.integers(1, 10),
        max_edge_samples=st.integers(1, 100_000),
    ),
    comparison=st.builds(
        Comparison,
        min_gain_points=st.floats(0, 100),
        forget_budget_points=st.floats(0, 100),
        min_holdout=st.integers(1, 10_000),
    ),
    approval=st.sampled_from(Approval),
    rollout_group=st.none() | _names,
    rollout_policy=st.none() | st.just({"shadow": True}),
)


@given(_policies)
def test_any_valid_policy_survives_json(built: RetrainingPolicy) -> None:
    assume(not built.enabled or any((built.drift, built.samples, built.schedule)))
    assume(
        built.drift is None or (built.drift.min_devices, built.drift.group_percent) != (None, None)
    )
    policy = validate(built)
    stored = json.loads(json.dumps(policy_to_dict(policy), allow_nan=False))
    assert policy_from_dict(stored) == policy
