"""A rollout's policy: its waves, health gates, breach handling and window.

The policy travels as a JSON object (the API body, the DB column) and lives in
memory as frozen dataclasses. :func:`policy_from_dict` is the one way in from
JSON: it refuses unknown keys (a typo such as ``soak_secnds`` must not quietly
fall back to a default soak), checks every type, fills in defaults and then
calls :func:`validate`. :func:`policy_to_dict` writes every field, defaults
included, so a stored policy still means the same after a default changes.
Every refusal is an :class:`InvalidInputError` naming the field, such as
``waves[2].percent must be in (0, 100], got 120``.
"""

from __future__ import annotations

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
    show,
    string,
    written,
)

MAX_WAVES = 20
MAX_WINDOW_SECONDS = 7 * 24 * 3600


class BreachAction(StrEnum):
    PAUSE = "pause"
    ABORT = "abort"


class AbortMode(StrEnum):
    """On abort, leave the touched devices as they are or roll them back."""

    LEAVE = "leave"
    ROLLBACK = "rollback"


class OfflinePolicy(StrEnum):
    """A device offline at its wave: wait for it (its timeout runs) or skip it."""

    WAIT = "wait"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """One wave: ``percent`` is cumulative (share of the group reached by its end),
    ``count`` is this wave's own size; exactly one of them is set."""

    percent: float | None = None
    count: int | None = None
    soak_seconds: float = 300.0
    success_threshold: float = 0.95
    error_threshold: float = 0.05
    error_min_finished: int = 1
    device_timeout_seconds: float = 1800.0


@dataclass(frozen=True, slots=True)
class Gates:
    """Health gates comparing the new version with the previous one on the wave's devices.

    ``None`` turns a gate off. ``min_inferences`` keeps a gate from judging a
    version on a handful of inferences.
    """

    max_error_rate_increase: float | None = 0.01
    max_p95_latency_ratio: float | None = 1.5
    max_output_psi: float | None = 0.25
    min_shadow_agreement: float | None = None
    min_inferences: int = 50


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Opens when ``cron`` matches on ``timezone``'s wall clock (see :mod:`.window`)."""

    cron: str
    duration_seconds: int
    timezone: str = "UTC"


DEFAULT_WAVES = (
    WaveSpec(percent=1.0),
    WaveSpec(percent=10.0),
    WaveSpec(percent=50.0),
    WaveSpec(percent=100.0),
)


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    waves: tuple[WaveSpec, ...] = DEFAULT_WAVES
    gates: Gates = Gates()
    breach_action: BreachAction = BreachAction.ABORT
    abort_mode: AbortMode = AbortMode.ROLLBACK
    approval_between_waves: bool = False
    shadow: bool = False
    offline: OfflinePolicy = OfflinePolicy.WAIT
    maintenance: MaintenanceWindow | None = None


_SHARE = Range(0, 1, low_open=True)
_SHARE_BELOW_ONE = Range(0, 1, high_open=True)
_FRACTION = Range(0, 1)
_WINDOW = Range(0, MAX_WINDOW_SECONDS, low_open=True)


def validate(policy: RolloutPolicy) -> RolloutPolicy:
    """The policy itself when it is usable, else an error naming the first bad field."""
    _check_wave_count(len(policy.waves))
    previous: float | None = None
    for index, wave in enumerate(policy.waves):
        path = f"waves[{index}]"
        _check_wave(wave, path)
        if wave.percent is None:
            continue
        if previous is not None and wave.percent <= previous:
            raise InvalidInputError(
                f"{path}.percent must be above the previous wave's {show(previous)}, "
                f"got {show(wave.percent)} (percents are cumulative)"
            )
        previous = wave.percent
    if policy.waves[-1].percent != 100:
        raise InvalidInputError(
            f"waves[{len(policy.waves) - 1}] must be percent=100: the last wave "
            "takes the rest of the group"
        )
    _check_gates(policy.gates)
    if policy.gates.min_shadow_agreement is not None and not policy.shadow:
        raise InvalidInputError(
            "gates.min_shadow_agreement needs shadow=true: without shadow mode "
            "there is no agreement to measure"
        )
    if policy.maintenance is not None:
        _check_window(policy.maintenance)
    return policy


def _check_wave_count(count: int) -> None:
    if not 1 <= count <= MAX_WAVES:
        raise InvalidInputError(f"waves must hold 1 to {MAX_WAVES} waves, got {count}")


def _check_wave(wave: WaveSpec, path: str) -> None:
    if (wave.percent is None) == (wave.count is None):
        raise InvalidInputError(f"{path} needs exactly one of percent and count")
    if wave.percent is not None:
        check(wave.percent, f"{path}.percent", PERCENT)
    if wave.count is not None:
        check(wave.count, f"{path}.count", AT_LEAST_ONE)
    check(wave.soak_seconds, f"{path}.soak_seconds", NON_NEGATIVE)
    check(wave.success_threshold, f"{path}.success_threshold", _SHARE)
    check(wave.error_threshold, f"{path}.error_threshold", _SHARE_BELOW_ONE)
    check(wave.error_min_finished, f"{path}.error_min_finished", AT_LEAST_ONE)
    check(wave.device_timeout_seconds, f"{path}.device_timeout_seconds", POSITIVE)


def _check_gates(gates: Gates) -> None:
    limits = (
        ("max_error_rate_increase", gates.max_error_rate_increase, _FRACTION),
        ("max_p95_latency_ratio", gates.max_p95_latency_ratio, POSITIVE),
        ("max_output_psi", gates.max_output_psi, POSITIVE),
        ("min_shadow_agreement", gates.min_shadow_agreement, _FRACTION),
    )
    for name, value, allowed in limits:
        if value is not None:
            check(value, f"gates.{name}", allowed)
    check(gates.min_inferences, "gates.min_inferences", AT_LEAST_ONE)


def _check_window(maintenance: MaintenanceWindow) -> None:
    check(maintenance.duration_seconds, "maintenance.duration_seconds", _WINDOW)
    check_cron(maintenance.cron, maintenance.timezone, "maintenance")


def _waves(value: object, path: str) -> tuple[WaveSpec, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"{path} must be a list, got {kind(value)}")
    _check_wave_count(len(value))
    return tuple(_wave(item, f"{path}[{index}]") for index, item in enumerate(value))


_wave = record(
    WaveSpec,
    {
        "percent": optional(number),
        "count": optional(integer),
        "soak_seconds": number,
        "success_threshold": number,
        "error_threshold": number,
        "error_min_finished": integer,
        "device_timeout_seconds": number,
    },
)
_gates = record(
    Gates,
    {
        "max_error_rate_increase": optional(number),
        "max_p95_latency_ratio": optional(number),
        "max_output_psi": optional(number),
        "min_shadow_agreement": optional(number),
        "min_inferences": integer,
    },
)
_maintenance = record(
    MaintenanceWindow,
    {"cron": string, "duration_seconds": integer, "timezone": string},
)
_policy = record(
    RolloutPolicy,
    {
        "waves": _waves,
        "gates": _gates,
        "breach_action": choice(BreachAction),
        "abort_mode": choice(AbortMode),
        "approval_between_waves": boolean,
        "shadow": boolean,
        "offline": choice(OfflinePolicy),
        "maintenance": optional(_maintenance),
    },
)


def policy_from_dict(data: Mapping[str, Any]) -> RolloutPolicy:
    """A validated policy from its JSON form; missing keys take their defaults."""
    return validate(_policy(data, ""))


def policy_to_dict(policy: RolloutPolicy) -> dict[str, Any]:
    """What :func:`policy_from_dict` reads back."""
    return written(policy)
