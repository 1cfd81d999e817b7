"""Strict mapping between frozen dataclasses and plain JSON values.

Messages and manifests are declared once, as dataclasses whose field types
carry their constraints (``Annotated[int, Range(0)]``), and this module is the
single place that turns untrusted JSON into them and back. Rules: unknown
keys are refused, ``bool`` is never an ``int``, ``int`` fields refuse floats,
float fields accept integers, strings and arrays have length caps, and every
error names the path of the offending value.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from edgefleet.shared.errors import MessageError

T = TypeVar("T")

JsonObject = dict[str, Any]
"""A JSON object kept as parsed (for example the signed part of an envelope)."""

DEFAULT_MAX_STRING = 4096
DEFAULT_MAX_ITEMS = 4096


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds for a number."""

    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True, slots=True)
class Length:
    """Bounds on the length of a string or an array."""

    max: int
    min: int = 0


@dataclass(frozen=True, slots=True)
class Pattern:
    """A string must match ``regex`` completely."""

    regex: str


class _Path:
    """Lazy path rendering: most values are valid, so build strings only on error."""

    __slots__ = ("parent", "part")

    def __init__(self, parent: _Path | None, part: str) -> None:
        self.parent = parent
        self.part = part

    def __str__(self) -> str:
        parts: list[str] = []
        node: _Path | None = self
        while node is not None:
            parts.append(node.part)
            node = node.parent
        return "".join(reversed(parts)) or "$"


def _fail(path: _Path, message: str, reason: str = "bad_field") -> typing.NoReturn:
    raise MessageError(f"{path}: {message}", reason=reason)


def _type_name(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _check_range(value: float, constraint: Range, path: _Path) -> None:
    if constraint.lo is not None and value < constraint.lo:
        _fail(path, f"{value!r} is below the minimum {constraint.lo!r}", "out_of_range")
    if constraint.hi is not None and value > constraint.hi:
        _fail(path, f"{value!r} is above the maximum {constraint.hi!r}", "out_of_range")


def _check_length(size: int, constraint: Length | None, default_max: int, path: _Path) -> None:
    low = constraint.min if constraint else 0
    high = constraint.max if constraint else default_max
    if not low <= size <= high:
        _fail(path, f"length {size} is outside {low}..{high}", "bad_length")


def _decode(tp: Any, value: Any, path: _Path) -> Any:
    meta: tuple[Any, ...] = ()
    if get_origin(tp) is Annotated:
        tp, *rest = get_args(tp)
        meta = tuple(rest)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _decode_union(get_args(tp), value, path)
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return scalar(value, meta, path)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _decode_enum(tp, value, path)
    if origin is tuple:
        return _decode_tuple(get_args(tp), value, meta, path)
    if origin is dict:
        return _decode_dict(get_args(tp), value, meta, path)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _decode_dataclass(tp, value, path)
    raise TypeError(f"unsupported schema type {tp!r} at {path}")


def _decode_union(members: tuple[Any, ...], value: Any, path: _Path) -> Any:
    if value is None:
        if type(None) in members:
            return None
        _fail(path, "must not be null")
    choices = [member for member in members if member is not type(None)]
    if len(choices) == 1:
        # Plain ``X | None``: keep X's own error and reason slug.
        return _decode(choices[0], value, path)
    errors: list[str] = []
    for member in choices:
        try:
            return _decode(member, value, path)
        except MessageError as err:
            errors.append(str(err))
    _fail(path, f"matches none of the allowed types ({'; '.join(errors)})")


def _decode_bool(value: Any, meta: tuple[Any, ...], path: _Path) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"expected boolean, got {_type_name(value)}")
    return value


def _decode_int(value: Any, meta: tuple[Any, ...], path: _Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"expected integer, got {_type_name(value)}")
    for m in meta:
        if isinstance(m, Range):
            _check_range(value, m, path)
    return value


def _decode_float(value: Any, meta: tuple[Any, ...], path: _Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"expected number, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        _fail(path, "integer too large for a double", "out_of_range")
    for m in meta:
        if isinstance(m, Range):
            _check_range(number, m, path)
    return number


def _decode_str(value: Any, meta: tuple[Any, ...], path: _Path) -> str:
    if not isinstance(value, str):
        _fail(path, f"expected string, got {_type_name(value)}")
    _check_length(len(value), _length(meta), DEFAULT_MAX_STRING, path)
    for m in meta:
        if isinstance(m, Pattern) and re.fullmatch(m.regex, value) is None:
            _fail(path, f"{value[:80]!r} does not match {m.regex}", "bad_format")
    return value


_SCALARS: dict[Any, Callable[[Any, tuple[Any, ...], _Path], Any]] = {
    bool: _decode_bool,
    int: _decode_int,
    float: _decode_float,
    str: _decode_str,
}


def _decode_enum(tp: type[Enum], value: Any, path: _Path) -> Enum:
    try:
        return tp(value)
    except (ValueError, TypeError):
        allowed = ", ".join(repr(e.value) for e in tp)
        _fail(path, f"{value!r} is not one of {allowed}", "bad_enum")


def _decode_tuple(
    args: tuple[Any, ...], value: Any, meta: tuple[Any, ...], path: _Path
) -> tuple[Any, ...]:
    item_type, ellipsis = args
    if ellipsis is not Ellipsis:
        raise TypeError(f"only tuple[T, ...] is supported, got tuple{list(args)}")
    if not isinstance(value, list):
        _fail(path, f"expected array, got {_type_name(value)}")
    _check_length(len(value), _length(meta), DEFAULT_MAX_ITEMS, path)
    return tuple(_decode(item_type, item, _Path(path, f"[{i}]")) for i, item in enumerate(value))


def _decode_dict(
    args: tuple[Any, ...], value: Any, meta: tuple[Any, ...], path: _Path
) -> dict[str, Any]:
    key_type, value_type = args
    if key_type is not str:
        raise TypeError(f"only dict[str, T] is supported, got dict{list(args)}")
    if not isinstance(value, dict):
        _fail(path, f"expected object, got {_type_name(value)}")
    _check_length(len(value), _length(meta), DEFAULT_MAX_ITEMS, path)
    if value_type is Any:
        return value
    return {k: _decode(value_type, v, _Path(path, f".{k}")) for k, v in value.items()}


def _length(meta: tuple[Any, ...]) -> Length | None:
    return next((m for m in meta if isinstance(m, Length)), None)


_FIELDS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, annotated type, required) per field, resolved once per class."""
    cached = _FIELDS.get(cls)
    if cached is not None:
        return cached
    hints = get_type_hints(cls, include_extras=True)
    cached = _FIELDS[cls] = tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    )
    return cached


def _decode_dataclass(cls: type[T], value: Any, path: _Path) -> T:
    if not isinstance(value, dict):
        _fail(path, f"expected object, got {_type_name(value)}")
    fields = _fields(cls)
    known = {name for name, _, _ in fields}
    unknown = sorted(set(value) - known)
    if unknown:
        _fail(path, f"unknown field(s) {', '.join(map(repr, unknown[:5]))}", "unknown_field")
    kwargs: dict[str, Any] = {}
    for name, tp, required in fields:
        if name in value:
            kwargs[name] = _decode(tp, value[name], _Path(path, f".{name}"))
        elif required:
            _fail(path, f"missing required field {name!r}", "missing_field")
    try:
        return cls(**kwargs)
    except MessageError as err:
        raise MessageError(f"{path}: {err}", reason=err.reason) from err


def from_json(cls: type[T], value: Any) -> T:
    """Build ``cls`` from parsed JSON, or raise :class:`MessageError` with the path."""
    return _decode_dataclass(cls, value, _Path(None, ""))


def to_json(obj: Any) -> Any:
    """Plain JSON values for a schema dataclass (tuples become arrays, enums their values)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Absent and null decode alike; leaving unset optionals out keeps payloads small.
        return {
            f.name: to_json(value)
            for f in dataclasses.fields(obj)
            if (value := getattr(obj, f.name)) is not None
        }
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [to_json(item) for item in obj]
    if isinstance(obj, Mapping):
        return {key: to_json(item) for key, item in obj.items()}
    return obj


def require(condition: bool, message: str, reason: str = "inconsistent") -> None:
    """Cross-field checks in ``__post_init__``: one line each, one error type."""
    if not condition:
        raise MessageError(message, reason=reason)
