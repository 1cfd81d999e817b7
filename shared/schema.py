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


Decoder = Callable[[Any, _Path], Any]
"""``decoder(value, path)``: the decoded value, or a :class:`MessageError` naming ``path``."""

_DECODERS: dict[Any, Decoder] = {}


def _compile(tp: Any) -> Decoder:
    """The decoder for ``tp``, built once: type introspection is far slower than decoding.

    A forward reference is cached before building, so self-referencing
    types terminate.
    """
    found = _DECODERS.get(tp)
    if found is not None:
        return found
    built: list[Decoder] = []
    _DECODERS[tp] = lambda value, path: built[0](value, path)
    built.append(_build(tp))
    _DECODERS[tp] = built[0]
    return built[0]


def _build(tp: Any) -> Decoder:
    meta: tuple[Any, ...] = ()
    if get_origin(tp) is Annotated:
        tp, *rest = get_args(tp)
        meta = tuple(rest)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _union(get_args(tp))
    if tp is bool:
        return _boolean
    if tp is int:
        return _integer(_ranges(meta))
    if tp is float:
        return _number(_ranges(meta))
    if tp is str:
        return _string(meta)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _enum(tp)
    if origin is tuple:
        return _array(get_args(tp), meta)
    if origin is dict:
        return _object(get_args(tp), meta)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp)
    raise TypeError(f"unsupported schema type {tp!r}")


def _ranges(meta: tuple[Any, ...]) -> tuple[Range, ...]:
    return tuple(m for m in meta if isinstance(m, Range))


def _bounds(meta: tuple[Any, ...], default_max: int) -> tuple[int, int]:
    length = next((m for m in meta if isinstance(m, Length)), None)
    return (0, default_max) if length is None else (length.min, length.max)


def _check_ranges(value: float, ranges: tuple[Range, ...], path: _Path) -> None:
    for constraint in ranges:
        if constraint.lo is not None and value < constraint.lo:
            _fail(path, f"{value!r} is below the minimum {constraint.lo!r}", "out_of_range")
        if constraint.hi is not None and value > constraint.hi:
            _fail(path, f"{value!r} is above the maximum {constraint.hi!r}", "out_of_range")


def _check_size(size: int, low: int, high: int, path: _Path) -> None:
    if not low <= size <= high:
        _fail(path, f"length {size} is outside {low}..{high}", "bad_length")


def _union(members: tuple[Any, ...]) -> Decoder:
    nullable = type(None) in members
    choices = [_compile(m) for m in members if m is not type(None)]

    def decode(value: Any, path: _Path) -> Any:
        if value is None:
            if nullable:
                return None
            _fail(path, "must not be null")
        if len(choices) == 1:
            # Plain ``X | None``: keep X's own error and reason slug.
            return choices[0](value, path)
        errors: list[str] = []
        for choice in choices:
            try:
                return choice(value, path)
            except MessageError as err:
                errors.append(str(err))
        _fail(path, f"matches none of the allowed types ({'; '.join(errors)})")

    return decode


def _boolean(value: Any, path: _Path) -> bool:
    if value is True or value is False:
        return value
    _fail(path, f"expected boolean, got {_type_name(value)}")


def _integer(ranges: tuple[Range, ...]) -> Decoder:
    def decode(value: Any, path: _Path) -> int:
        if type(value) is not int:
            _fail(path, f"expected integer, got {_type_name(value)}")
        _check_ranges(value, ranges, path)
        return value

    return decode


def _number(ranges: tuple[Range, ...]) -> Decoder:
    def decode(value: Any, path: _Path) -> float:
        if type(value) is float:
            number = value
        elif type(value) is int:
            try:
                number = float(value)
            except OverflowError:
                _fail(path, "integer too large for a double", "out_of_range")
        else:
            _fail(path, f"expected number, got {_type_name(value)}")
        _check_ranges(number, ranges, path)
        return number

    return decode


def _string(meta: tuple[Any, ...]) -> Decoder:
    low, high = _bounds(meta, DEFAULT_MAX_STRING)
    patterns = tuple((m.regex, re.compile(m.regex)) for m in meta if isinstance(m, Pattern))

    def decode(value: Any, path: _Path) -> str:
        if type(value) is not str:
            _fail(path, f"expected string, got {_type_name(value)}")
        _check_size(len(value), low, high, path)
        for text, compiled in patterns:
            if compiled.fullmatch(value) is None:
                _fail(path, f"{value[:80]!r} does not match {text}", "bad_format")
        return value

    return decode


def _enum(tp: type[Enum]) -> Decoder:
    def decode(value: Any, path: _Path) -> Enum:
        try:
            return tp(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(e.value) for e in tp)
            _fail(path, f"{value!r} is not one of {allowed}", "bad_enum")

    return decode


def _scalar_fast_path(item_type: Any) -> Callable[[list[Any]], bool] | None:
    """For arrays of plain numbers: one C-speed check of the whole list.

    Histograms and tensors are long arrays of numbers, and a call per item
    was most of the cost of decoding telemetry. The check only says "all
    valid"; anything else goes item by item, which names the bad index.
    """
    meta: tuple[Any, ...] = ()
    if get_origin(item_type) is Annotated:
        item_type, *rest = get_args(item_type)
        meta = tuple(rest)
    if item_type not in (int, float):
        return None
    ranges = _ranges(meta)
    lows = [r.lo for r in ranges if r.lo is not None]
    highs = [r.hi for r in ranges if r.hi is not None]
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    exact = {item_type}

    def valid(value: list[Any]) -> bool:
        if not value:
            return True
        if set(map(type, value)) != exact:
            return False
        return (low is None or min(value) >= low) and (high is None or max(value) <= high)

    return valid


def _array(args: tuple[Any, ...], meta: tuple[Any, ...]) -> Decoder:
    item_type, ellipsis = args
    if ellipsis is not Ellipsis:
        raise TypeError(f"only tuple[T, ...] is supported, got tuple{list(args)}")
    item = _compile(item_type)
    fast = _scalar_fast_path(item_type)
    low, high = _bounds(meta, DEFAULT_MAX_ITEMS)

    def decode(value: Any, path: _Path) -> tuple[Any, ...]:
        if type(value) is not list:
            _fail(path, f"expected array, got {_type_name(value)}")
        _check_size(len(value), low, high, path)
        if fast is not None and fast(value):
            return tuple(value)
        return tuple([item(v, _Path(path, f"[{i}]")) for i, v in enumerate(value)])

    return decode


def _object(args: tuple[Any, ...], meta: tuple[Any, ...]) -> Decoder:
    key_type, value_type = args
    if key_type is not str:
        raise TypeError(f"only dict[str, T] is supported, got dict{list(args)}")
    item = None if value_type is Any else _compile(value_type)
    low, high = _bounds(meta, DEFAULT_MAX_ITEMS)

    def decode(value: Any, path: _Path) -> dict[str, Any]:
        if type(value) is not dict:
            _fail(path, f"expected object, got {_type_name(value)}")
        _check_size(len(value), low, high, path)
        if item is None:
            return value
        return {k: item(v, _Path(path, f".{k}")) for k, v in value.items()}

    return decode


def _dataclass(cls: type) -> Decoder:
    hints = get_type_hints(cls, include_extras=True)
    fields = [
        (
            f.name,
            "." + f.name,
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    ]
    known = frozenset(name for name, _, _ in fields)
    # Field decoders are looked up lazily: a dataclass may refer to itself.
    decoders: dict[str, Decoder] = {}

    def decode(value: Any, path: _Path) -> Any:
        if type(value) is not dict:
            _fail(path, f"expected object, got {_type_name(value)}")
        if not known.issuperset(value):
            unknown = sorted(set(value) - known)
            _fail(path, f"unknown field(s) {', '.join(map(repr, unknown[:5]))}", "unknown_field")
        kwargs: dict[str, Any] = {}
        for name, part, required in fields:
            if name in value:
                field_decoder = decoders.get(name)
                if field_decoder is None:
                    field_decoder = decoders[name] = _compile(hints[name])
                kwargs[name] = field_decoder(value[name], _Path(path, part))
            elif required:
                _fail(path, f"missing required field {name!r}", "missing_field")
        try:
            return cls(**kwargs)
        except MessageError as err:
            raise MessageError(f"{path}: {err}", reason=err.reason) from err

    return decode


def from_json(cls: type[T], value: Any) -> T:
    """Build ``cls`` from parsed JSON, or raise :class:`MessageError` with the path."""
    result: T = _compile(cls)(value, _Path(None, ""))
    return result


_SCALARS = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_json(obj: Any) -> Any:
    """Plain JSON values for a schema dataclass (tuples become arrays, enums their values).

    Exact-type checks first and field names cached per class: a telemetry
    window is mostly arrays of numbers, and a board (or a simulator host with
    thousands of agents) encodes one every few seconds.
    """
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if kind is tuple or kind is list:
        return [item if type(item) in _SCALARS else to_json(item) for item in obj]
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        # Absent and null decode alike; leaving unset optionals out keeps payloads small.
        return {name: to_json(value) for name in names if (value := getattr(obj, name)) is not None}
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
