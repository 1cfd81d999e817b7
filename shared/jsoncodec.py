"""Strict JSON in, canonical JSON out.

Python's ``json`` module is lenient where an attacker-facing parser must not
be: it accepts ``NaN``/``Infinity``, silently keeps the last of duplicate
keys, turns ``1e400`` into ``inf`` and recurses until ``RecursionError``.
Everything that crosses the wire is parsed here instead, and everything that
is signed is serialized here, so signer and verifier agree byte for byte.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from edgefleet.shared.errors import MessageError, MessageTooLargeError

MAX_DEPTH = 32
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _reject_constant(name: str) -> NoReturn:
    raise MessageError(f"{name} is not allowed in JSON", reason="non_finite")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MessageError(f"duplicate key {key!r}", reason="duplicate_key")
        obj[key] = value
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MessageError(f"number {text[:32]!r} overflows a double", reason="non_finite")
    return value


def _check_string(text: str) -> None:
    # JSON may escape lone UTF-16 surrogates ("\\ud800") that no UTF-8 encoder
    # accepts; letting one through would make canonical() fail much later.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise MessageError("string holds a lone surrogate", reason="bad_utf8") from err


def _check_tree(value: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict | list):
            if depth > limit:
                raise MessageError(f"nested deeper than {limit} levels", reason="too_deep")
            if isinstance(item, dict):
                for key in item:
                    _check_string(key)
                children: Any = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)


def parse(payload: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted bytes into plain JSON values, or raise :class:`MessageError`."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise MessageError(f"payload must be bytes, got {type(payload).__name__}")
    size = memoryview(payload).nbytes  # len() of a memoryview counts items, not bytes
    if size > max_bytes:
        raise MessageTooLargeError(f"payload is {size} bytes, limit is {max_bytes}")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as err:
        raise MessageError(
            f"payload is not UTF-8: {err.reason} at byte {err.start}", reason="bad_utf8"
        ) from err
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as err:
        raise MessageError(
            f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}", reason="bad_json"
        ) from err
    except RecursionError as err:
        raise MessageError("JSON nested too deep to parse", reason="too_deep") from err
    except ValueError as err:
        # int() refuses literals over sys.get_int_max_str_digits() (4300) digits.
        raise MessageError(f"invalid JSON number: {err}", reason="bad_json") from err
    # Both walks are skipped when the text rules them out (the common case): a
    # lone surrogate needs a \\uD800-\\uDFFF escape, depth needs that many brackets.
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if surrogates or text.count("[") + text.count("{") > max_depth:
        _check_tree(value, max_depth)
    return value


def canonical(value: Any) -> bytes:
    """Canonical form: sorted keys, no whitespace, UTF-8, finite numbers only.

    This is what signatures are computed over, so it must never change for a
    given value; floats use Python's shortest round-trip repr.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise MessageError("string holds a lone surrogate", reason="bad_utf8") from err
    except (ValueError, TypeError) as err:
        reason = "non_finite" if isinstance(err, ValueError) else "unserializable"
        raise MessageError(f"cannot serialize: {err}", reason=reason) from err
