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

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts import window

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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


@dataclass(frozen=True, slots=True)
class _Range:
    """A closed or open interval that says itself the way the error messages do."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open or self.high == math.inf else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {_show(self.low)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{_show(self.low)}, {_show(self.high)}{right}"


_PERCENT = _Range(0, 100, low_open=True)
_SECONDS = _Range(0)
_POSITIVE = _Range(0, low_open=True)
_SHARE = _Range(0, 1, low_open=True)
_SHARE_BELOW_ONE = _Range(0, 1, high_open=True)
_FRACTION = _Range(0, 1)
_AT_LEAST_ONE = _Range(1)
_WINDOW = _Range(0, MAX_WINDOW_SECONDS, low_open=True)


def _show(value: float) -> str:
    return f"{value:.15g}"


def _check(value: float, path: str, allowed: _Range) -> None:
    if not allowed.contains(value):
        raise InvalidInputError(f"{path} must be {allowed}, got {_show(value)}")


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
                f"{path}.percent must be above the previous wave's {_show(previous)}, "
                f"got {_show(wave.percent)} (percents are cumulative)"
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
        _check(wave.percent, f"{path}.percent", _PERCENT)
    if wave.count is not None:
        _check(wave.count, f"{path}.count", _AT_LEAST_ONE)
    _check(wave.soak_seconds, f"{path}.soak_seconds", _SECONDS)
    _check(wave.success_threshold, f"{path}.success_threshold", _SHARE)
    _check(wave.error_threshold, f"{path}.error_threshold", _SHARE_BELOW_ONE)
    _check(wave.error_min_finished, f"{path}.error_min_finished", _AT_LEAST_ONE)
    _check(wave.device_timeout_seconds, f"{path}.device_timeout_seconds", _POSITIVE)


def _check_gates(gates: Gates) -> None:
    limits = (
        ("max_error_rate_increase", gates.max_error_rate_increase, _FRACTION),
        ("max_p95_latency_ratio", gates.max_p95_latency_ratio, _POSITIVE),
        ("max_output_psi", gates.max_output_psi, _POSITIVE),
        ("min_shadow_agreement", gates.min_shadow_agreement, _FRACTION),
    )
    for name, value, allowed in limits:
        if value is not None:
            _check(value, f"gates.{name}", allowed)
    _check(gates.min_inferences, "gates.min_inferences", _AT_LEAST_ONE)


def _check_window(maintenance: MaintenanceWindow) -> None:
    _check(maintenance.duration_seconds, "maintenance.duration_seconds", _WINDOW)
    for name, parse, value in (
        ("cron", window.parse_cron, maintenance.cron),
        ("timezone", window.time_zone, maintenance.timezone),
    ):
        try:
            parse(value)
        except InvalidInputError as err:
            raise InvalidInputError(f"maintenance.{name}: {err}") from err


_Convert = Callable[[Any, str], Any]
_T = TypeVar("_T", bound="DataclassInstance")


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{path} must be a number, got {_kind(value)}")
    return float(value)


def _integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{path} must be a whole number, got {_kind(value)}")
    return value


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{path} must be true or false, got {_kind(value)}")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{path} must be a string, got {_kind(value)}")
    return value


def _optional(convert: _Convert) -> _Convert:
    return lambda value, path: None if value is None else convert(value, path)


def _choice(enum: type[StrEnum]) -> _Convert:
    def convert(value: object, path: str) -> StrEnum:
        allowed = tuple(member.value for member in enum)
        if value not in allowed:
            raise InvalidInputError(f"{path} must be one of {', '.join(allowed)}, got {value!r}")
        return enum(value)

    return convert


def _record(cls: type[_T], fields: Mapping[str, _Convert]) -> _Convert:
    """A converter for a JSON object into ``cls``, one converter per field."""

    def convert(value: object, path: str) -> _T:
        where = path or "policy"
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"{where} must be an object, got {_kind(value)}")
        for key in value:
            if key not in fields:
                raise InvalidInputError(
                    f"{_join(path, key)} is not a policy field (known: {', '.join(fields)})"
                )
        for field in dataclasses.fields(cls):
            required = field.default is dataclasses.MISSING
            if required and field.name not in value:
                raise InvalidInputError(f"{_join(path, field.name)} is required")
        return cls(**{name: fields[name](item, _join(path, name)) for name, item in value.items()})

    return convert


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _waves(value: object, path: str) -> tuple[WaveSpec, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"{path} must be a list, got {_kind(value)}")
    _check_wave_count(len(value))
    return tuple(_wave(item, f"{path}[{index}]") for index, item in enumerate(value))


_wave = _record(
    WaveSpec,
    {
        "percent": _optional(_number),
        "count": _optional(_integer),
        "soak_seconds": _number,
        "success_threshold": _number,
        "error_threshold": _number,
        "error_min_finished": _integer,
        "device_timeout_seconds": _number,
    },
)
_gates = _record(
    Gates,
    {
        "max_error_rate_increase": _optional(_number),
        "max_p95_latency_ratio": _optional(_number),
        "max_output_psi": _optional(_number),
        "min_shadow_agreement": _optional(_number),
        "min_inferences": _integer,
    },
)
_maintenance = _record(
    MaintenanceWindow,
    {"cron": _string, "duration_seconds": _integer, "timezone": _string},
)
_policy = _record(
    RolloutPolicy,
    {
        "waves": _waves,
        "gates": _gates,
        "breach_action": _choice(BreachAction),
        "abort_mode": _choice(AbortMode),
        "approval_between_waves": _boolean,
        "shadow": _boolean,
        "offline": _choice(OfflinePolicy),
        "maintenance": _optional(_maintenance),
    },
)


def policy_from_dict(data: Mapping[str, Any]) -> RolloutPolicy:
    """A validated policy from its JSON form; missing keys take their defaults."""
    policy: RolloutPolicy = _policy(data, "")
    return validate(policy)


def policy_to_dict(policy: RolloutPolicy) -> dict[str, Any]:
    """Every field, enums as their values: what :func:`policy_from_dict` reads back."""
    plain: dict[str, Any] = _plain(policy)
    return plain


def _plain(value: object) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
