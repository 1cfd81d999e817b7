"""Rollout policies from JSON: defaults, round trips, and every refusal naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts.policy import (
    DEFAULT_WAVES,
    AbortMode,
    BreachAction,
    Gates,
    MaintenanceWindow,
    OfflinePolicy,
    RolloutPolicy,
    WaveSpec,
    policy_from_dict,
    policy_to_dict,
    validate,
)

FULL: dict[str, Any] = {
    "waves": [
        {"count": 2, "soak_seconds": 0},
        {"percent": 25.5, "success_threshold": 1, "error_threshold": 0},
        {"percent": 100, "error_min_finished": 3, "device_timeout_seconds": 60},
    ],
    "gates": {
        "max_error_rate_increase": None,
        "max_p95_latency_ratio": 2,
        "max_output_psi": 0.1,
        "min_shadow_agreement": 0.9,
        "min_inferences": 10,
    },
    "breach_action": "pause",
    "abort_mode": "leave",
    "approval_between_waves": True,
    "shadow": True,
    "offline": "skip",
    "maintenance": {
        "cron": "0 22 * * mon-fri",
        "duration_seconds": 14400,
        "timezone": "Europe/Berlin",
    },
}


def test_an_empty_object_is_the_default_policy() -> None:
    policy = policy_from_dict({})
    assert policy == RolloutPolicy()
    assert [wave.percent for wave in policy.waves] == [1, 10, 50, 100]
    assert policy.breach_action is BreachAction.ABORT
    assert policy.abort_mode is AbortMode.ROLLBACK
    assert policy.offline is OfflinePolicy.WAIT
    assert policy.maintenance is None
    assert policy.gates == Gates()


def test_every_field_is_read() -> None:
    policy = policy_from_dict(FULL)
    assert policy.waves[0] == WaveSpec(count=2, soak_seconds=0.0)
    assert policy.waves[1].percent == 25.5
    assert policy.waves[1].success_threshold == 1.0
    assert policy.waves[2].device_timeout_seconds == 60.0
    assert policy.waves[2].error_min_finished == 3
    assert policy.gates == Gates(
        max_error_rate_increase=None,
        max_p95_latency_ratio=2.0,
        max_output_psi=0.1,
        min_shadow_agreement=0.9,
        min_inferences=10,
    )
    assert policy.breach_action is BreachAction.PAUSE
    assert policy.abort_mode is AbortMode.LEAVE
    assert policy.approval_between_waves is True
    assert policy.shadow is True
    assert policy.offline is OfflinePolicy.SKIP
    assert policy.maintenance == MaintenanceWindow("0 22 * * mon-fri", 14400, "Europe/Berlin")


@pytest.mark.parametrize("data", [{}, FULL, {"waves": [{"percent": 100}]}])
def test_the_dict_round_trips_through_json(data: dict[str, Any]) -> None:
    policy = policy_from_dict(data)
    stored = json.loads(json.dumps(policy_to_dict(policy)))
    assert policy_from_dict(stored) == policy
    assert policy_to_dict(policy_from_dict(stored)) == stored


def test_the_dict_spells_out_defaults_and_enum_values() -> None:
    stored = policy_to_dict(RolloutPolicy())
    assert stored["breach_action"] == "abort"
    assert type(stored["breach_action"]) is str
    assert stored["waves"][0] == {
        "percent": 1.0,
        "count": None,
        "soak_seconds": 300.0,
        "success_threshold": 0.95,
        "error_threshold": 0.05,
        "error_min_finished": 1,
        "device_timeout_seconds": 1800.0,
    }
    assert stored["gates"]["min_inferences"] == 50
    assert stored["maintenance"] is None


def test_the_default_waves_are_valid() -> None:
    assert validate(RolloutPolicy(waves=DEFAULT_WAVES)).waves == DEFAULT_WAVES


def _wave(**fields: Any) -> dict[str, Any]:
    return {"waves": [{"percent": 10, **fields}, {"percent": 100}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"soak": 1}, "soak is not a policy field"),
        ({"waves": [{"percent": 100, "soak_secnds": 1}]}, "waves[0].soak_secnds is not a policy"),
        ({"gates": {"max_psi": 1}}, "gates.max_psi is not a policy field"),
        ({"waves": []}, "waves must hold 1 to 20 waves, got 0"),
        (
            {"waves": [{"count": 1}] * 20 + [{"percent": 100}]},
            "waves must hold 1 to 20 waves, got 21",
        ),
        ({"waves": "1,10,100"}, "waves must be a list, got str"),
        ({"waves": [5]}, "waves[0] must be an object, got int"),
        ({"waves": [{}, {"percent": 100}]}, "waves[0] needs exactly one of percent and count"),
        ({"waves": [{"percent": 5, "count": 2}, {"percent": 100}]}, "waves[0] needs exactly one"),
        ({"waves": [{"percent": 120}]}, "waves[0].percent must be in (0, 100], got 120"),
        (
            {"waves": [{"percent": 0}, {"percent": 100}]},
            "waves[0].percent must be in (0, 100], got 0",
        ),
        ({"waves": [{"percent": -1}, {"percent": 100}]}, "waves[0].percent must be in (0, 100]"),
        (
            {"waves": [{"percent": 10}, {"percent": 120}, {"percent": 100}]},
            "waves[1].percent must be in (0, 100], got 120",
        ),
        (
            {"waves": [{"percent": 50}, {"percent": 50}, {"percent": 100}]},
            "waves[1].percent must be above the previous wave's 50, got 50",
        ),
        (
            {"waves": [{"percent": 50}, {"count": 3}, {"percent": 20}, {"percent": 100}]},
            "waves[2].percent must be above the previous wave's 50, got 20",
        ),
        ({"waves": [{"percent": 10}, {"percent": 90}]}, "waves[1] must be percent=100"),
        ({"waves": [{"percent": 10}, {"count": 5}]}, "waves[1] must be percent=100"),
        ({"waves": [{"percent": 100}, {"count": 5}]}, "waves[1] must be percent=100"),
        ({"waves": [{"percent": "10"}]}, "waves[0].percent must be a number, got str"),
        ({"waves": [{"percent": True}]}, "waves[0].percent must be a number, got bool"),
        ({"waves": [{"count": 1.5}, {"percent": 100}]}, "waves[0].count must be a whole number"),
        ({"waves": [{"count": 0}, {"percent": 100}]}, "waves[0].count must be >= 1, got 0"),
        (
            {"waves": [{"count": True}, {"percent": 100}]},
            "waves[0].count must be a whole number, got bool",
        ),
        (_wave(soak_seconds=-1), "waves[0].soak_seconds must be >= 0, got -1"),
        (_wave(soak_seconds=float("inf")), "waves[0].soak_seconds must be >= 0, got inf"),
        (_wave(success_threshold=0), "waves[0].success_threshold must be in (0, 1], got 0"),
        (_wave(success_threshold=1.01), "waves[0].success_threshold must be in (0, 1]"),
        (_wave(error_threshold=1), "waves[0].error_threshold must be in [0, 1), got 1"),
        (_wave(error_threshold=-0.1), "waves[0].error_threshold must be in [0, 1), got -0.1"),
        (_wave(error_min_finished=0), "waves[0].error_min_finished must be >= 1, got 0"),
        (_wave(device_timeout_seconds=0), "waves[0].device_timeout_seconds must be > 0, got 0"),
        (_wave(percent=float("nan")), "waves[0].percent must be in (0, 100], got nan"),
        (
            {"gates": {"max_error_rate_increase": -0.01}},
            "gates.max_error_rate_increase must be in [0, 1]",
        ),
        ({"gates": {"max_p95_latency_ratio": 0}}, "gates.max_p95_latency_ratio must be > 0, got 0"),
        ({"gates": {"max_output_psi": 0}}, "gates.max_output_psi must be > 0, got 0"),
        ({"gates": {"min_inferences": 0}}, "gates.min_inferences must be >= 1, got 0"),
        (
            {"shadow": True, "gates": {"min_shadow_agreement": 1.5}},
            "gates.min_shadow_agreement must be in [0, 1], got 1.5",
        ),
        ({"gates": {"min_shadow_agreement": 0.9}}, "gates.min_shadow_agreement needs shadow=true"),
        ({"gates": []}, "gates must be an object, got list"),
        ({"breach_action": "explode"}, "breach_action must be one of pause, abort, got 'explode'"),
        ({"abort_mode": None}, "abort_mode must be one of leave, rollback, got None"),
        ({"offline": "WAIT"}, "offline must be one of wait, skip, got 'WAIT'"),
        ({"shadow": 1}, "shadow must be true or false, got int"),
        (
            {"approval_between_waves": "yes"},
            "approval_between_waves must be true or false, got str",
        ),
        ({"maintenance": {"duration_seconds": 60}}, "maintenance.cron is required"),
        ({"maintenance": {"cron": "0 2 * * *"}}, "maintenance.duration_seconds is required"),
        ({"maintenance": {"cron": 5, "duration_seconds": 60}}, "maintenance.cron must be a string"),
        (
            {"maintenance": {"cron": "0 2 * *", "duration_seconds": 60}},
            "maintenance.cron: cron needs 5 fields",
        ),
        (
            {"maintenance": {"cron": "61 2 * * *", "duration_seconds": 60}},
            "maintenance.cron: cron minute '61': 61 is outside 0-59",
        ),
        (
            {"maintenance": {"cron": "0 2 * * *", "duration_seconds": 0}},
            "maintenance.duration_seconds must be in (0, 604800], got 0",
        ),
        (
            {"maintenance": {"cron": "0 2 * * *", "duration_seconds": 604801}},
            "maintenance.duration_seconds must be in (0, 604800], got 604801",
        ),
        (
            {"maintenance": {"cron": "0 2 * * *", "duration_seconds": 60, "timezone": "Mars/Base"}},
            "maintenance.timezone: unknown time zone 'Mars/Base'",
        ),
        (
            {"maintenance": {"cron": "0 2 * * *", "duration_seconds": 60, "tz": "UTC"}},
            "maintenance.tz is not a policy field",
        ),
        ([], "policy must be an object, got list"),
    ],
)
def test_bad_input_is_refused_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        policy_from_dict(data)
    assert message in str(caught.value)


def test_validate_checks_a_policy_built_in_code() -> None:
    policy = RolloutPolicy(waves=(WaveSpec(percent=10.0), WaveSpec(count=3)))
    with pytest.raises(InvalidInputError, match=r"waves\[1\] must be percent=100"):
        validate(policy)


@pytest.mark.parametrize(
    "waves",
    [
        [{"percent": 100}],
        [{"count": 1}, {"percent": 100}],
        [{"percent": 0.5}, {"count": 30}, {"percent": 10}, {"count": 1}, {"percent": 100}],
        [{"count": 1}] * 19 + [{"percent": 100}],
    ],
)
def test_wave_lists_that_end_at_100_percent_are_accepted(waves: list[dict[str, Any]]) -> None:
    assert len(policy_from_dict({"waves": waves}).waves) == len(waves)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("success_threshold", 1.0),
        ("error_threshold", 0.0),
        ("soak_seconds", 0.0),
        ("error_min_finished", 1),
    ],
)
def test_inclusive_boundaries_are_accepted(field: str, value: float) -> None:
    policy = policy_from_dict(_wave(**{field: value}))
    assert getattr(policy.waves[0], field) == value


def test_gates_can_be_turned_off_and_limits_sit_on_their_bounds() -> None:
    policy = policy_from_dict(
        {
            "shadow": True,
            "gates": {
                "max_error_rate_increase": 0,
                "max_p95_latency_ratio": None,
                "max_output_psi": None,
                "min_shadow_agreement": 1,
                "min_inferences": 1,
            },
        }
    )
    assert policy.gates.max_error_rate_increase == 0.0
    assert policy.gates.max_p95_latency_ratio is None
    assert policy.gates.min_shadow_agreement == 1.0
