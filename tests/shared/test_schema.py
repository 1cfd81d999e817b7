"""The dataclass <-> JSON mapping: types, bounds at their exact edges, paths in errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import pytest

from edgefleet.shared import messages
from edgefleet.shared.errors import MessageError
from edgefleet.shared.schema import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_STRING,
    JsonObject,
    Length,
    Pattern,
    Range,
    from_json,
    require,
    to_json,
)


class Color(StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True, slots=True)
class Flag:
    value: bool


@dataclass(frozen=True, slots=True)
class Int:
    value: int


@dataclass(frozen=True, slots=True)
class Float:
    value: float


@dataclass(frozen=True, slots=True)
class Str:
    value: str


@dataclass(frozen=True, slots=True)
class Paint:
    value: Color


@dataclass(frozen=True, slots=True)
class Small:
    value: Annotated[int, Range(1, 10)]


@dataclass(frozen=True, slots=True)
class Unit:
    value: Annotated[float, Range(0.0, 1.0)]


@dataclass(frozen=True, slots=True)
class NonNegative:
    value: Annotated[float, Range(lo=0)]


@dataclass(frozen=True, slots=True)
class AtMost:
    value: Annotated[int, Range(hi=-1)]


@dataclass(frozen=True, slots=True)
class Seq:
    value: messages.Seq


@dataclass(frozen=True, slots=True)
class Code:
    value: Annotated[str, Length(min=2, max=4)]


@dataclass(frozen=True, slots=True)
class Slug:
    value: Annotated[str, Pattern(r"[a-z]+")]


@dataclass(frozen=True, slots=True)
class Few:
    value: Annotated[tuple[int, ...], Length(min=1, max=3)]


@dataclass(frozen=True, slots=True)
class Many:
    value: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Maybe:
    value: Annotated[int, Range(0, 5)] | None = None


@dataclass(frozen=True, slots=True)
class MaybeSlug:
    value: Annotated[str, Pattern(r"[a-z]+")] | None = None


@dataclass(frozen=True, slots=True)
class Either:
    value: str | int


@dataclass(frozen=True, slots=True)
class Counts:
    value: Annotated[dict[str, int], Length(max=2)]


@dataclass(frozen=True, slots=True)
class Raw:
    value: JsonObject


@dataclass(frozen=True, slots=True)
class Histogram:
    counts: Annotated[tuple[Annotated[int, Range(0)], ...], Length(min=2, max=4)]
    bounds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        require(len(self.counts) == len(self.bounds) + 1, "counts and bounds disagree")


@dataclass(frozen=True, slots=True)
class Window:
    seq: int
    latency_ms: Histogram | None = None
    tags: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    windows: tuple[Window, ...]
    color: Color = Color.RED
    enabled: bool = False
    meta: dict[str, str] = field(default_factory=dict)


def refused(cls: type, value: Any, reason: str) -> MessageError:
    with pytest.raises(MessageError) as caught:
        from_json(cls, value)
    assert type(caught.value) is MessageError
    assert caught.value.reason == reason
    return caught.value


def refused_value(cls: type, value: Any, reason: str) -> MessageError:
    err = refused(cls, {"value": value}, reason)
    assert str(err).startswith(".value")
    return err


# --- scalar types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "value", "expected"),
    [
        pytest.param(Flag, True, True, id="bool-true"),
        pytest.param(Flag, False, False, id="bool-false"),
        pytest.param(Int, 0, 0, id="int-zero"),
        pytest.param(Int, -7, -7, id="int-negative"),
        pytest.param(Int, 2**80, 2**80, id="int-big"),
        pytest.param(Float, 1.5, 1.5, id="float"),
        pytest.param(Float, 2, 2.0, id="float-from-int"),
        pytest.param(Float, -0.0, -0.0, id="float-negative-zero"),
        pytest.param(Float, 2**1023, float(2**1023), id="float-from-large-int"),
        pytest.param(Str, "", "", id="str-empty"),
        pytest.param(Str, "日本", "日本", id="str-unicode"),
        pytest.param(Paint, "green", Color.GREEN, id="enum"),
    ],
)
def test_accepts(cls: type, value: Any, expected: Any) -> None:
    decoded: Any = from_json(cls, {"value": value}).value
    assert decoded == expected
    assert type(decoded) is type(expected)


@pytest.mark.parametrize(
    ("cls", "value", "reason"),
    [
        pytest.param(Int, True, "bad_field", id="int-refuses-true"),
        pytest.param(Int, False, "bad_field", id="int-refuses-false"),
        pytest.param(Int, 1.0, "bad_field", id="int-refuses-float"),
        pytest.param(Int, 1.5, "bad_field", id="int-refuses-fraction"),
        pytest.param(Int, "1", "bad_field", id="int-refuses-string"),
        pytest.param(Int, None, "bad_field", id="int-refuses-null"),
        pytest.param(Int, [1], "bad_field", id="int-refuses-array"),
        pytest.param(Float, True, "bad_field", id="float-refuses-bool"),
        pytest.param(Float, "1.5", "bad_field", id="float-refuses-string"),
        pytest.param(Float, None, "bad_field", id="float-refuses-null"),
        pytest.param(Float, 10**400, "out_of_range", id="float-refuses-int-over-double"),
        pytest.param(Float, -(10**400), "out_of_range", id="float-refuses-int-under-double"),
        pytest.param(Flag, 1, "bad_field", id="bool-refuses-one"),
        pytest.param(Flag, 0, "bad_field", id="bool-refuses-zero"),
        pytest.param(Flag, "true", "bad_field", id="bool-refuses-string"),
        pytest.param(Flag, None, "bad_field", id="bool-refuses-null"),
        pytest.param(Str, 1, "bad_field", id="str-refuses-int"),
        pytest.param(Str, None, "bad_field", id="str-refuses-null"),
        pytest.param(Str, ["a"], "bad_field", id="str-refuses-array"),
        pytest.param(Str, {"a": "b"}, "bad_field", id="str-refuses-object"),
        pytest.param(Paint, "RED", "bad_enum", id="enum-is-case-sensitive"),
        pytest.param(Paint, "Color.RED", "bad_enum", id="enum-refuses-name"),
        pytest.param(Paint, "blue", "bad_enum", id="enum-unknown"),
        pytest.param(Paint, 1, "bad_enum", id="enum-refuses-int"),
        pytest.param(Paint, None, "bad_enum", id="enum-refuses-null"),
        pytest.param(Paint, ["red"], "bad_enum", id="enum-refuses-unhashable"),
    ],
)
def test_refuses(cls: type, value: Any, reason: str) -> None:
    refused_value(cls, value, reason)


def test_type_errors_name_what_they_got() -> None:
    assert "expected integer, got boolean" in str(refused_value(Int, True, "bad_field"))
    assert "expected number, got string" in str(refused_value(Float, "1", "bad_field"))
    assert "expected string, got null" in str(refused_value(Str, None, "bad_field"))
    assert "expected boolean, got integer" in str(refused_value(Flag, 1, "bad_field"))


def test_enum_error_lists_the_allowed_values() -> None:
    err = refused_value(Paint, "blue", "bad_enum")
    assert "'red', 'green'" in str(err)


# --- bounds at their exact edges --------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "value"),
    [
        pytest.param(Small, 1, id="int-at-lo"),
        pytest.param(Small, 10, id="int-at-hi"),
        pytest.param(Unit, 0.0, id="float-at-lo"),
        pytest.param(Unit, 1.0, id="float-at-hi"),
        pytest.param(Unit, 1, id="int-for-float-at-hi"),
        pytest.param(Unit, -0.0, id="negative-zero-at-lo"),
        pytest.param(NonNegative, 1e300, id="lo-only"),
        pytest.param(AtMost, -(2**100), id="hi-only"),
        pytest.param(Seq, 2**63 - 1, id="seq-max-exact"),
        pytest.param(Code, "ab", id="str-at-min-length"),
        pytest.param(Code, "abcd", id="str-at-max-length"),
        pytest.param(Code, "日本", id="length-counts-code-points"),
        pytest.param(Str, "x" * DEFAULT_MAX_STRING, id="str-at-default-max"),
        pytest.param(Few, [1], id="array-at-min-length"),
        pytest.param(Few, [1, 2, 3], id="array-at-max-length"),
        pytest.param(Many, [0] * DEFAULT_MAX_ITEMS, id="array-at-default-max"),
        pytest.param(Slug, "abc", id="pattern"),
        pytest.param(Counts, {"a": 1, "b": 2}, id="object-at-max-length"),
    ],
)
def test_accepts_at_the_edge(cls: type, value: Any) -> None:
    decoded: Any = from_json(cls, {"value": value}).value
    assert decoded == (tuple(value) if isinstance(value, list) else value)


@pytest.mark.parametrize(
    ("cls", "value", "reason"),
    [
        pytest.param(Small, 0, "out_of_range", id="int-below-lo"),
        pytest.param(Small, 11, "out_of_range", id="int-above-hi"),
        pytest.param(Unit, -5e-324, "out_of_range", id="float-just-below-lo"),
        pytest.param(Unit, 1.0000000000000002, "out_of_range", id="float-just-above-hi"),
        pytest.param(Unit, 2, "out_of_range", id="int-for-float-above-hi"),
        pytest.param(NonNegative, -1e-300, "out_of_range", id="lo-only"),
        pytest.param(AtMost, 0, "out_of_range", id="hi-only"),
        pytest.param(Seq, 2**63, "out_of_range", id="seq-max-plus-one-exact"),
        pytest.param(Code, "a", "bad_length", id="str-below-min-length"),
        pytest.param(Code, "abcde", "bad_length", id="str-above-max-length"),
        pytest.param(Code, "", "bad_length", id="str-empty"),
        pytest.param(Str, "x" * (DEFAULT_MAX_STRING + 1), "bad_length", id="str-over-default-max"),
        pytest.param(Few, [], "bad_length", id="array-below-min-length"),
        pytest.param(Few, [1, 2, 3, 4], "bad_length", id="array-above-max-length"),
        pytest.param(
            Many, [0] * (DEFAULT_MAX_ITEMS + 1), "bad_length", id="array-over-default-max"
        ),
        pytest.param(Counts, {"a": 1, "b": 2, "c": 3}, "bad_length", id="object-over-max"),
        pytest.param(Slug, "Abc", "bad_format", id="pattern-case"),
        pytest.param(Slug, "abc\n", "bad_format", id="pattern-trailing-newline"),
        pytest.param(Slug, "", "bad_format", id="pattern-empty"),
        pytest.param(Slug, "ab c", "bad_format", id="pattern-partial-match"),
    ],
)
def test_refuses_past_the_edge(cls: type, value: Any, reason: str) -> None:
    refused_value(cls, value, reason)


def test_range_error_names_value_and_bound() -> None:
    assert "11 is above the maximum 10" in str(refused_value(Small, 11, "out_of_range"))
    assert "0 is below the minimum 1" in str(refused_value(Small, 0, "out_of_range"))


def test_length_error_names_length_and_bounds() -> None:
    assert "length 5 is outside 2..4" in str(refused_value(Code, "abcde", "bad_length"))


# --- optionals and unions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"value": None}, None, id="null"),
        pytest.param({"value": 5}, 5, id="at-hi"),
    ],
)
def test_optional_accepts(body: dict[str, Any], expected: Any) -> None:
    assert from_json(Maybe, body).value == expected


@pytest.mark.parametrize(
    ("cls", "value", "reason"),
    [
        pytest.param(Maybe, 6, "out_of_range", id="range"),
        pytest.param(Maybe, True, "bad_field", id="bool"),
        pytest.param(Maybe, "1", "bad_field", id="string"),
        pytest.param(MaybeSlug, "ABC", "bad_format", id="pattern"),
    ],
)
def test_optional_keeps_the_inner_reason(cls: type, value: Any, reason: str) -> None:
    err = refused_value(cls, value, reason)
    assert "matches none" not in str(err)


@pytest.mark.parametrize("value", ["a", 0, -3], ids=["str", "zero", "negative"])
def test_union_accepts_each_member(value: Any) -> None:
    assert from_json(Either, {"value": value}).value == value


@pytest.mark.parametrize(
    "value", [True, 1.5, None, [1], {"a": 1}], ids=["bool", "float", "null", "array", "object"]
)
def test_union_refuses_everything_else(value: Any) -> None:
    refused_value(Either, value, "bad_field")


def test_union_error_lists_each_member_failure() -> None:
    err = refused_value(Either, 1.5, "bad_field")
    assert "matches none of the allowed types" in str(err)
    assert "expected string" in str(err)
    assert "expected integer" in str(err)


# --- objects ----------------------------------------------------------------------------


def test_dict_values_are_decoded_with_their_path() -> None:
    assert from_json(Counts, {"value": {"a": 1}}).value == {"a": 1}
    err = refused_value(Counts, {"a": 1, "b": "x"}, "bad_field")
    assert str(err).startswith(".value.b: ")


@pytest.mark.parametrize("value", [[], "x", None], ids=["array", "string", "null"])
def test_dict_refuses_non_objects(value: Any) -> None:
    refused_value(Counts, value, "bad_field")


def test_json_object_is_kept_as_parsed() -> None:
    raw = {"z": [1, 2.5, {"nested": None}], "a": True}
    assert from_json(Raw, {"value": raw}).value is raw


@pytest.mark.parametrize("value", [None, [], 1], ids=["null", "array", "number"])
def test_root_must_be_an_object(value: Any) -> None:
    err = refused(Batch, value, "bad_field")
    assert str(err).startswith("$: expected object")


def test_unknown_fields_are_refused_and_named() -> None:
    err = refused(Batch, {"windows": [], "zeta": 1, "alpha": 2}, "unknown_field")
    assert str(err) == "$: unknown field(s) 'alpha', 'zeta'"


def test_unknown_field_error_names_at_most_five() -> None:
    body = {"windows": [], **{f"x{i}": i for i in range(9)}}
    err = refused(Batch, body, "unknown_field")
    assert "'x4'" in str(err)
    assert "'x5'" not in str(err)


def test_unknown_nested_field_has_its_path() -> None:
    body = {"windows": [{"seq": 1}, {"seq": 2, "extra": 1}]}
    err = refused(Batch, body, "unknown_field")
    assert str(err).startswith(".windows[1]: ")


def test_missing_required_field() -> None:
    err = refused(Batch, {}, "missing_field")
    assert str(err) == "$: missing required field 'windows'"
    err = refused(Batch, {"windows": [{}]}, "missing_field")
    assert str(err) == ".windows[0]: missing required field 'seq'"


def test_null_for_a_defaulted_field_is_refused() -> None:
    err = refused(Batch, {"windows": [], "enabled": None}, "bad_field")
    assert str(err).startswith(".enabled: ")


def test_defaults_fill_absent_fields() -> None:
    batch = from_json(Batch, {"windows": [{"seq": 0}]})
    assert batch == Batch(windows=(Window(seq=0),))
    assert batch.meta == {}


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        pytest.param(
            {"windows": [{"seq": 0}, {"seq": 1, "latency_ms": {"counts": [1, 2, 3, 4, 5]}}]},
            ".windows[1].latency_ms.counts",
            "bad_length",
            id="array-length",
        ),
        pytest.param(
            {"windows": [{"seq": 0}, {"seq": 1, "latency_ms": {"counts": [1, -2]}}]},
            ".windows[1].latency_ms.counts[1]",
            "out_of_range",
            id="array-item",
        ),
        pytest.param(
            {"windows": [{"seq": 0}, {"seq": 1, "latency_ms": {"counts": [1, 2, 3]}}]},
            ".windows[1].latency_ms",
            "inconsistent",
            id="post-init",
        ),
        pytest.param(
            {"windows": [{"seq": 0, "tags": ["a", 7]}]},
            ".windows[0].tags[1]",
            "bad_field",
            id="tag",
        ),
        pytest.param({"windows": [], "meta": {"k": 1}}, ".meta.k", "bad_field", id="dict-value"),
        pytest.param({"windows": [], "color": "blue"}, ".color", "bad_enum", id="enum"),
    ],
)
def test_errors_start_with_the_json_path(body: dict[str, Any], path: str, reason: str) -> None:
    err = refused(Batch, body, reason)
    assert str(err).startswith(f"{path}: ")


def test_post_init_error_at_the_root_keeps_its_reason() -> None:
    err = refused(Histogram, {"counts": [1, 2, 3], "bounds": [1.0]}, "inconsistent")
    assert str(err) == "$: counts and bounds disagree"
    assert isinstance(err.__cause__, MessageError)


def test_telemetry_error_path() -> None:
    window = {"seq": 0, "start": 0.0, "end": 1.0, "inferences": 1, "errors": 0}
    bad = {**window, "latency_ms": {"bounds": [1.0, 2.0], "counts": [1]}}
    err = refused(messages.Telemetry, {"sent_at": 1.0, "windows": [window, bad]}, "bad_length")
    assert str(err).startswith(".windows[1].latency_ms.counts: ")


def test_reserved_path_characters_in_keys_are_not_escaped() -> None:
    err = refused_value(Counts, {"a.b[0]": "x"}, "bad_field")
    assert str(err).startswith(".value.a.b[0]: ")


# --- to_json ----------------------------------------------------------------------------


def test_to_json_omits_unset_optionals_and_keeps_defaults() -> None:
    batch = Batch(windows=(Window(seq=3, tags=("x",)),), meta={"k": "v"})
    assert to_json(batch) == {
        "windows": [{"seq": 3, "tags": ["x"]}],
        "color": "red",
        "enabled": False,
        "meta": {"k": "v"},
    }


def test_to_json_round_trips_through_from_json() -> None:
    batch = Batch(
        windows=(Window(seq=1, latency_ms=Histogram(counts=(1, 2), bounds=(5.0,)), note="n"),),
        color=Color.GREEN,
        enabled=True,
    )
    assert from_json(Batch, to_json(batch)) == batch


def test_to_json_passes_plain_values_through() -> None:
    assert to_json({"a": (1, [Color.RED])}) == {"a": [1, ["red"]]}
    assert to_json(2.5) == 2.5


def test_to_json_turns_enums_among_numbers_into_values() -> None:
    # Color is a str subclass: an exact-type shortcut for plain values must not keep it.
    encoded = to_json((1, True, None, "x", Color.RED, (2.5, Color.RED)))
    assert encoded == [1, True, None, "x", "red", [2.5, "red"]]
    assert [type(v) for v in encoded[:4]] == [int, bool, type(None), str]
    assert type(encoded[4]) is str


# --- require and unsupported declarations -----------------------------------------------


def test_require() -> None:
    require(True, "never raised")
    with pytest.raises(MessageError) as caught:
        require(False, "it broke")
    assert (str(caught.value), caught.value.reason) == ("it broke", "inconsistent")
    with pytest.raises(MessageError) as caught:
        require(False, "it broke", "custom")
    assert caught.value.reason == "custom"


@dataclass(frozen=True, slots=True)
class Pair:
    value: tuple[int, int]


@dataclass(frozen=True, slots=True)
class IntKeys:
    value: dict[int, str]


@dataclass(frozen=True, slots=True)
class AList:
    value: list[int]


@dataclass(frozen=True, slots=True)
class ASet:
    value: set[int]


@pytest.mark.parametrize(
    ("cls", "value"),
    [
        pytest.param(Pair, [1, 2], id="fixed-tuple"),
        pytest.param(IntKeys, {"1": "a"}, id="int-keys"),
        pytest.param(AList, [1], id="list"),
        pytest.param(ASet, [1], id="set"),
    ],
)
def test_unsupported_declarations_are_programming_errors(cls: type, value: Any) -> None:
    with pytest.raises(TypeError):
        from_json(cls, {"value": value})
