"""Strict JSON parsing and canonical serialization: every refusal names its reason."""

from __future__ import annotations

import json
from array import array
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.shared import jsoncodec
from edgefleet.shared.errors import MessageError, MessageTooLargeError
from edgefleet.shared.jsoncodec import MAX_DEPTH, canonical, parse

LIMIT = 1 << 20


def refuses(payload: Any, reason: str, **kwargs: Any) -> MessageError:
    kwargs.setdefault("max_bytes", LIMIT)
    with pytest.raises(MessageError) as caught:
        parse(payload, **kwargs)
    assert type(caught.value) is MessageError
    assert caught.value.reason == reason
    return caught.value


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- accepted input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b'{"a":1}', {"a": 1}, id="object"),
        pytest.param(
            b" [1, 2.5, -0.0, true, false, null] ",
            [1, 2.5, -0.0, True, False, None],
            id="array-with-whitespace",
        ),
        pytest.param(b'"caf\xc3\xa9"', "café", id="utf8-string"),
        pytest.param(b'"\\u00e9"', "é", id="escaped-bmp"),
        pytest.param(b'"\\ud83d\\ude00"', "\U0001f600", id="surrogate-pair-escape"),
        pytest.param('"\U0001f600"'.encode(), "\U0001f600", id="astral-utf8"),
        pytest.param(b"1e308", 1e308, id="large-finite"),
        pytest.param(b"-1e308", -1e308, id="large-negative"),
        pytest.param(b"1e-400", 0.0, id="underflow-is-zero"),
        pytest.param(
            b"123456789012345678901234567890", 123456789012345678901234567890, id="big-int-exact"
        ),
        pytest.param(b'{"":0}', {"": 0}, id="empty-key"),
        pytest.param(b'{"a":{"a":1}}', {"a": {"a": 1}}, id="same-key-other-level"),
    ],
)
def test_parses(payload: bytes, expected: Any) -> None:
    value = parse(payload, max_bytes=LIMIT)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "payload",
    [bytearray(b'{"a":[1]}'), memoryview(b'{"a":[1]}')],
    ids=["bytearray", "memoryview"],
)
def test_parses_bytes_like(payload: bytes) -> None:
    assert parse(payload, max_bytes=LIMIT) == {"a": [1]}


def test_integers_stay_integers_and_floats_stay_floats() -> None:
    value = parse(b"[1,1.0,1e0]", max_bytes=LIMIT)
    assert [type(v) for v in value] == [int, float, float]


# --- refused input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'"\xff"', id="ff-byte"),
        pytest.param(b'"\xc3"', id="truncated-sequence"),
        pytest.param(b'"\xc0\xae"', id="overlong"),
        pytest.param(b'"\xed\xa0\x80"', id="encoded-surrogate"),
        pytest.param(b'"\xf4\x90\x80\x80"', id="above-u10ffff"),
        pytest.param('"é"'.encode("latin-1"), id="latin-1"),
        pytest.param('{"a":1}'.encode("utf-16"), id="utf-16"),
    ],
)
def test_refuses_bad_utf8(payload: bytes) -> None:
    refuses(payload, "bad_utf8")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'"\\ud800"', id="lone-high"),
        pytest.param(b'"\\udc00"', id="lone-low"),
        pytest.param(b'"\\ude00\\ud83d"', id="swapped-pair"),
        pytest.param(b'{"\\ud800":1}', id="in-key"),
        pytest.param(b'[[{"a":["x\\udfff"]}]]', id="nested"),
    ],
)
def test_refuses_lone_surrogate_escapes(payload: bytes) -> None:
    refuses(payload, "bad_utf8")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"   ", id="blank"),
        pytest.param(b'{"a":1', id="truncated-object"),
        pytest.param(b'{"a":', id="truncated-value"),
        pytest.param(b'{"a', id="truncated-key"),
        pytest.param(b"[1,2", id="truncated-array"),
        pytest.param(b'"abc', id="unterminated-string"),
        pytest.param(b"tru", id="truncated-literal"),
        pytest.param(b'{"a":1}x', id="trailing-garbage"),
        pytest.param(b"{}{}", id="two-values"),
        pytest.param(b"{'a':1}", id="single-quotes"),
        pytest.param(b"[1,]", id="trailing-comma"),
        pytest.param(b"{a:1}", id="bare-key"),
        pytest.param(b"01", id="leading-zero"),
        pytest.param(b".5", id="leading-dot"),
        pytest.param(b"+1", id="plus-sign"),
        pytest.param(b"0x10", id="hex"),
        pytest.param(b'"\\x41"', id="bad-escape"),
        pytest.param(b'"a\nb"', id="raw-newline-in-string"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
        pytest.param(b"// c\n{}", id="comment"),
        pytest.param(b"nan", id="lowercase-nan"),
        pytest.param(b"inf", id="lowercase-inf"),
        pytest.param(b"9" * 4301, id="int-over-4300-digits"),
        pytest.param(b'{"a":-' + b"1" * 5000 + b"}", id="nested-huge-negative-int"),
    ],
)
def test_refuses_bad_json(payload: bytes) -> None:
    refuses(payload, "bad_json")


def test_int_at_the_digit_limit_is_accepted() -> None:
    assert parse(b"9" * 4300, max_bytes=LIMIT) == int("9" * 4300)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"Infinity", id="infinity"),
        pytest.param(b"-Infinity", id="minus-infinity"),
        pytest.param(b'{"a":[1,NaN]}', id="nested-nan"),
        pytest.param(b"1e400", id="1e400"),
        pytest.param(b"-1e400", id="minus-1e400"),
        pytest.param(b"1" * 400 + b".0", id="400-digit-float"),
        pytest.param(b'{"a":1.8e308}', id="just-over-max-double"),
    ],
)
def test_refuses_non_finite_numbers(payload: bytes) -> None:
    refuses(payload, "non_finite")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"a":1,"a":1}', id="same-value"),
        pytest.param(b'{"a":1,"b":2,"a":3}', id="apart"),
        pytest.param(b'{"x":[{"k":1,"k":2}]}', id="nested"),
        pytest.param(b'{"\\u0061":1,"a":2}', id="escaped-spelling"),
    ],
)
def test_refuses_duplicate_keys(payload: bytes) -> None:
    err = refuses(payload, "duplicate_key")
    assert "duplicate key" in str(err)


def test_depth_limit_is_exact() -> None:
    assert parse(nested(MAX_DEPTH), max_bytes=LIMIT) == json.loads(nested(MAX_DEPTH))
    refuses(nested(MAX_DEPTH + 1), "too_deep")


def test_depth_counts_objects_and_arrays_alike() -> None:
    deep_objects = b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH
    parse(deep_objects, max_bytes=LIMIT)
    refuses(b"[" + deep_objects + b"]", "too_deep")


def test_scalars_do_not_count_toward_depth() -> None:
    payload = b"[" * MAX_DEPTH + b'"leaf"' + b"]" * MAX_DEPTH
    value = parse(payload, max_bytes=LIMIT)
    for _ in range(MAX_DEPTH):
        value = value[0]
    assert value == "leaf"


@pytest.mark.parametrize("limit", [1, 2, 8], ids=lambda n: f"max-depth-{n}")
def test_max_depth_argument(limit: int) -> None:
    parse(nested(limit), max_bytes=LIMIT, max_depth=limit)
    refuses(nested(limit + 1), "too_deep", max_depth=limit)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[" * 100_000, id="open-arrays"),
        pytest.param(nested(100_000), id="closed-arrays"),
        pytest.param(b'{"a":' * 100_000, id="open-objects"),
    ],
)
def test_recursion_bomb_is_a_message_error(payload: bytes) -> None:
    err = refuses(payload, "too_deep")
    assert isinstance(err.__cause__, RecursionError)


@pytest.mark.parametrize("size", [0, 1, 100], ids=lambda n: f"limit-{n}")
def test_size_limit_is_exact(size: int) -> None:
    payload = b'"' + b"x" * (size - 2) + b'"' if size >= 2 else b"1" * size
    if size:
        parse(payload, max_bytes=size)
    with pytest.raises(MessageTooLargeError) as caught:
        parse(payload + b" ", max_bytes=size)
    assert caught.value.reason == "too_large"
    assert isinstance(caught.value, MessageError)


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(MessageTooLargeError):
        parse(b"\xff" * 11, max_bytes=10)


def test_size_limit_counts_bytes_not_memoryview_items() -> None:
    wide = memoryview(array("I", b"[1]     "))
    assert len(wide) == 2
    assert wide.nbytes == 8
    with pytest.raises(MessageTooLargeError):
        parse(wide, max_bytes=4)  # type: ignore[arg-type]  # parse() takes any buffer


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"a":1}', id="str"),
        pytest.param(None, id="none"),
        pytest.param(123, id="int"),
        pytest.param({"a": 1}, id="dict"),
        pytest.param([b"{}"], id="list-of-bytes"),
    ],
)
def test_refuses_non_bytes(payload: object) -> None:
    err = refuses(payload, "bad_message")
    assert type(payload).__name__ in str(err)


def test_errors_chain_their_cause() -> None:
    assert isinstance(refuses(b"\xff", "bad_utf8").__cause__, UnicodeDecodeError)
    assert isinstance(refuses(b"{", "bad_json").__cause__, json.JSONDecodeError)
    assert isinstance(refuses(b"9" * 5000, "bad_json").__cause__, ValueError)


# --- canonical --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"b": 1, "a": 2}, b'{"a":2,"b":1}', id="sorted-keys"),
        pytest.param(
            {"a": [1, {"d": None, "c": True}]},
            b'{"a":[1,{"c":true,"d":null}]}',
            id="nested-sorted-no-spaces",
        ),
        pytest.param({"é": "日本"}, '{"é":"日本"}'.encode(), id="utf8-not-escaped"),
        pytest.param("\U0001f600", '"\U0001f600"'.encode(), id="astral-not-escaped"),
        pytest.param('a"b\\c\n\x01', b'"a\\"b\\\\c\\n\\u0001"', id="json-escapes-kept"),
        pytest.param([1.0, 0.1, -0.0, 1e16, 1e-7], b"[1.0,0.1,-0.0,1e+16,1e-07]", id="float-repr"),
        pytest.param((1, 2), b"[1,2]", id="tuple-as-array"),
        pytest.param({"B": 0, "a": 0, "_": 0}, b'{"B":0,"_":0,"a":0}', id="codepoint-order"),
        pytest.param({}, b"{}", id="empty-object"),
    ],
)
def test_canonical(value: Any, expected: bytes) -> None:
    assert canonical(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(float("nan"), "non_finite", id="nan"),
        pytest.param(float("inf"), "non_finite", id="inf"),
        pytest.param({"a": [float("-inf")]}, "non_finite", id="nested-minus-inf"),
        pytest.param({1, 2}, "unserializable", id="set"),
        pytest.param(b"x", "unserializable", id="bytes"),
        pytest.param({"a": object()}, "unserializable", id="object"),
        pytest.param({1: "a", "b": 2}, "unserializable", id="mixed-key-types"),
    ],
)
def test_canonical_refuses_what_json_cannot_say(value: Any, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        canonical(value)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "value",
    [pytest.param("\ud800", id="value"), pytest.param({"\udc00": 1}, id="key")],
)
def test_canonical_refuses_lone_surrogates(value: Any) -> None:
    with pytest.raises(MessageError) as caught:
        canonical(value)
    assert caught.value.reason == "bad_utf8"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@given(value=json_values)
def test_canonical_round_trips_through_parse(value: Any) -> None:
    data = canonical(value)
    parsed = jsoncodec.parse(data, max_bytes=LIMIT)
    assert parsed == value
    assert canonical(parsed) == data
    assert (
        data
        == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
