"""Converters and range checks shared by the policies the server stores as JSON.

Rollout and retraining policies both arrive as JSON objects (an API body, a
DB column) and live in memory as frozen dataclasses. They live in one place so
that both refuse a bad field the same way: unknown keys are refused (a typo
must not quietly fall back to a default), every type is checked, and every
error is an :class:`InvalidInputError` whose message starts with the field's
path, such as ``waves[2].percent must be in (0, 100], got 120``.
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

Convert = Callable[[Any, str], Any]
"""Reads the JSON value at a path (the path is for the error message)."""

_T = TypeVar("_T", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Range:
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
            return f"{'>' if self.low_open else '>='} {show(self.low)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{show(self.low)}, {show(self.high)}{right}"


PERCENT = Range(0, 100, low_open=True)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)


def show(value: float) -> str:
    return f"{value:.15g}"


def check(value: float, path: str, allowed: Range) -> None:
    if not allowed.contains(value):
        raise InvalidInputError(f"{path} must be {allowed}, got {show(value)}")


def check_cron(cron: str, timezone: str, path: str) -> None:
    """A cron and its time zone as :mod:`~edgefleet.server.rollouts.window` reads them."""
    for name, parse, value in (
        ("cron", window.parse_cron, cron),
        ("timezone", window.time_zone, timezone),
    ):
        try:
            parse(value)
        except InvalidInputError as err:
            raise InvalidInputError(f"{path}.{name}: {err}") from err


def kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{path} must be a number, got {kind(value)}")
    return float(value)


def integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{path} must be a whole number, got {kind(value)}")
    return value


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{path} must be true or false, got {kind(value)}")
    return value


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{path} must be a string, got {kind(value)}")
    return value


def optional(convert: Convert) -> Convert:
    return lambda value, path: None if value is None else convert(value, path)


def choice(enum: type[StrEnum]) -> Convert:
    def convert(value: object, path: str) -> StrEnum:
        allowed = tuple(member.value for member in enum)
        if value not in allowed:
            raise InvalidInputError(f"{path} must be one of {', '.join(allowed)}, got {value!r}")
        return enum(value)

    return convert


def record(cls: type[_T], fields: Mapping[str, Convert]) -> Convert:
    """A converter for a JSON object into ``cls``, one converter per field."""

    def convert(value: object, path: str) -> _T:
        where = path or "policy"
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"{where} must be an object, got {kind(value)}")
        for key in value:
            if key not in fields:
                raise InvalidInputError(
                    f"{join(path, key)} is not a policy field (known: {', '.join(fields)})"
                )
        for field in dataclasses.fields(cls):
            required = field.default is dataclasses.MISSING
            if required and field.name not in value:
                raise InvalidInputError(f"{join(path, field.name)} is required")
        return cls(**{name: fields[name](item, join(path, name)) for name, item in value.items()})

    return convert


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def written(policy: DataclassInstance) -> dict[str, Any]:
    """Every field, defaults included: a stored policy keeps its meaning when a default changes."""
    fields: dict[str, Any] = plain(policy)
    return fields


def plain(value: object) -> Any:
    """The JSON form of a policy value: enums as their values, fresh lists and dicts.

    Fresh containers, so a caller editing the JSON cannot reach into a frozen policy.
    """
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
