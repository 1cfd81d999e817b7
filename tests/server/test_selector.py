"""The device-group selector language: parsing, errors, evaluation, canonical text.

Table tests pin the exact error messages and columns operators see; hypothesis
checks that printing and parsing agree, that the boolean operators are what
they say on random fleets, and that no text makes the parser raise anything
but SelectorError.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.selector import (
    DEVICE_STATES,
    MAX_DEPTH,
    MAX_LENGTH,
    All,
    And,
    Compare,
    DeviceFacts,
    Not,
    Operator,
    Or,
    Pattern,
    Selector,
    SelectorError,
    Tag,
    parse_selector,
    select,
)

FLEET = [
    DeviceFacts("cam-01", "rpi4", "online", frozenset({"lab", "camera"}), {"site": "berlin"}),
    DeviceFacts("cam-02", "rpi4", "offline", frozenset({"camera"}), {"site": "paris", "zone": ""}),
    DeviceFacts("gw-01", "jetson", "online", frozenset(), {"site": "berlin", "env": "prod"}),
    DeviceFacts("gw-02", "jetson", "revoked", frozenset({"lab"})),
    DeviceFacts(
        "sensor.x",
        "coral",
        "provisioned",
        frozenset({"my tag"}),
        {"site": "new york", "and": 'a"b'},
    ),
]
ALL_IDS = ["cam-01", "cam-02", "gw-01", "gw-02", "sensor.x"]


def lit(text: str) -> Pattern:
    return Pattern((text,))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("all", "all"),
        ("ALL", "all"),
        ("PROFILE = rpi4", "profile=rpi4"),
        ("Site=x", "Site=x"),
        ("site in (paris,berlin , paris)", "site in (berlin, paris)"),
        ("site NOT IN (x)", "site not in (x)"),
        ("id!=cam-01", "id!=cam-01"),
        ("TAG:lab", "tag:lab"),
        ('tag:"my tag"', 'tag:"my tag"'),
        ('tag: "lab"', "tag:lab"),
        ("tag:a:b", "tag:a:b"),
        ("has( site )", "site=*"),
        ("HAS(ID)", "id=*"),
        ('has("a b")', '"a b"=*'),
        ("not not tag:a", "not not tag:a"),
        ("Not tag:a AND b=1 Or c=2", "not tag:a and b=1 or c=2"),
        ("a=1 and (b=2 and c=3)", "a=1 and b=2 and c=3"),
        ("(a=1 or b=2) or c=3", "a=1 or b=2 or c=3"),
        ("(a=1 or b=2) and c=3", "(a=1 or b=2) and c=3"),
        ("a=1 or b=2 and c=3", "a=1 or b=2 and c=3"),
        ("a=1 or (b=2 and c=3)", "a=1 or b=2 and c=3"),
        ("not (a=1 or b=2)", "not (a=1 or b=2)"),
        ("not (a=1)", "not a=1"),
        ("((a=1))", "a=1"),
        ("id=cam-*", "id=cam-*"),
        ("id=cam-**x", "id=cam-*x"),
        ("x=*", "x=*"),
        ('"and"=x', '"and"=x'),
        ('"tag:x"=y', '"tag:x"=y'),
        ('"site"="berlin"', "site=berlin"),
        ('site="new york"', 'site="new york"'),
        ('owner="a\\"b\\\\c"', 'owner="a\\"b\\\\c"'),
        ('x="a\\*b"', 'x="a\\*b"'),
        ('x="a*b c"', 'x="a*b c"'),
        ('x=""', 'x=""'),
        ('site="OR"', 'site="OR"'),
        ("site=all", "site=all"),
        ("state=online", "state=online"),
        ("state in (off*, revoked)", "state in (off*, revoked)"),
        ("k8s.io/arch=arm64", "k8s.io/arch=arm64"),
        ("a=1\n\tand b=2\r\n", "a=1 and b=2"),
    ],
)
def test_parse_gives_canonical_text(text, canonical):
    selector = parse_selector(text)
    assert str(selector) == canonical
    assert parse_selector(canonical) == selector


def test_parse_builds_the_expected_tree():
    selector = parse_selector("profile=rpi4 and site in (berlin, paris) and not tag:lab")
    assert selector == And(
        (
            Compare("profile", "=", (lit("rpi4"),)),
            Compare("site", "in", (lit("paris"), lit("berlin"))),
            Not(Tag(lit("lab"))),
        )
    )


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "empty selector at column 1; write 'all' to select every device", 1),
        ("  \n", "empty selector at column 1; write 'all' to select every device", 1),
        ("*", "'*' is not a selector at column 1; write 'all' for every device", 1),
        ("profile=", "expected a value after '=' at column 9, found end of input", 9),
        ("tag:x and a=", "expected a value after '=' at column 13, found end of input", 13),
        ("site!= )", "expected a value after '!=' at column 8, found ')'", 8),
        ("(a=1 or (b=2)", "unclosed parenthesis opened at column 1", 1),
        ("a=1 and (b=2", "unclosed parenthesis opened at column 9", 9),
        ("a==1", "unknown operator '==' at column 2; write '='", 2),
        ("a=1 && b=2", "unknown operator '&&' at column 5; write 'and'", 5),
        ("a=1 || b=2", "unknown operator '||' at column 5; write 'or'", 5),
        ("!tag:x", "unknown operator '!' at column 1; write 'not'", 1),
        ("a<1", "unknown operator '<' at column 2; operators are '=', '!=', 'in' and 'not in'", 2),
        ("site in ()", "empty list in 'in ()' at column 9; list at least one value", 9),
        ("site in (a,", "expected a value after ',' at column 12, found end of input", 12),
        ("site in (a,)", "expected a value after ',' at column 12, found ')'", 12),
        ("site in (a b)", "expected ',' or ')' in the list at column 12, found 'b'", 12),
        ("site in (a", "unclosed parenthesis opened at column 9", 9),
        ("site in a", "expected '(' after 'in' at column 9, found 'a'", 9),
        ("site not x", "expected 'in' after 'not' at column 10, found 'x'", 10),
        (
            "site",
            "expected an operator after 'site' at column 5, found end of input; "
            "operators are '=', '!=', 'in' and 'not in'",
            5,
        ),
        ("a=1)", "unexpected ')' with no open parenthesis at column 4", 4),
        ("a=1 b=2", "expected 'and', 'or' or the end at column 5, found 'b'", 5),
        ("all=1", "expected 'and', 'or' or the end at column 4, found '='", 4),
        ("a=1 and", "expected a condition at column 8, found end of input", 8),
        ("not", "expected a condition at column 4, found end of input", 4),
        ("()", "expected a condition at column 2, found ')'", 2),
        ("= x", "expected a condition at column 1, found '='", 1),
        (
            "and=x",
            "expected a condition at column 1, found 'and'; quote it to use it as a key: \"and\"",
            1,
        ),
        ("tag=lab", "expected a condition at column 1, found 'tag'; write tag:NAME", 1),
        ("tag:", "expected a tag name after 'tag:' at column 5, found end of input", 5),
        ("has(site", "unclosed parenthesis opened at column 4", 4),
        ("has()", "expected a key after 'has(' at column 5, found ')'", 5),
        ("has(a b)", "expected ')' after the key at column 7, found 'b'", 7),
        ("a*=1", "'*' is not allowed in a key at column 1; in a quoted key a star is \\*", 1),
        ('"a*"=1', "'*' is not allowed in a key at column 1; in a quoted key a star is \\*", 1),
        (
            "site= and x=1",
            "expected a value after '=' at column 7, found 'and'; "
            'quote it to use it as a value: "and"',
            7,
        ),
        ('site="berlin', "unterminated string opened at column 6", 6),
        ('a="x\\', "unterminated string opened at column 3", 3),
        (
            'site="a\\nb"',
            "unknown escape '\\\\n' at column 8; only \\\" \\\\ and \\* are escapes",
            8,
        ),
        ("site=münchen", "unexpected character 'ü' at column 7; quote values that use it", 7),
        ("site='x'", 'unexpected character "\'" at column 6; quote values that use it', 6),
        ("a=1\x00", "control character U+0000 is not allowed at column 4", 4),
        ('a="x\ty"', "control character U+0009 is not allowed at column 5", 5),
        ('a="x\u202ey"', "control character U+202E is not allowed at column 5", 5),
        (
            "state=onlin",
            "unknown device state 'onlin' at column 7; "
            "known states: offline, online, provisioned, revoked",
            7,
        ),
        ("(" * 33 + "all" + ")" * 33, "nesting deeper than 32 levels at column 33", 33),
        ("not " * 33 + "all", "nesting deeper than 32 levels at column 129", 129),
        ("x" * 2001, "selector is 2001 characters long; the limit is 2000", 2001),
    ],
)
def test_invalid_selectors_point_at_the_problem(text, message, position):
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert str(caught.value) == message
    assert caught.value.position == position


def test_selector_error_is_an_invalid_input_with_its_own_reason():
    with pytest.raises(InvalidInputError) as caught:
        parse_selector("a==b")
    assert caught.value.reason == "bad_selector"
    assert caught.value.status_code == 422


def test_limits_are_inclusive():
    assert parse_selector("(" * MAX_DEPTH + "all" + ")" * MAX_DEPTH) == All()
    assert parse_selector("not " * MAX_DEPTH + "all") is not None
    long_and = " and ".join(["a=1"] * 250)
    assert len(long_and) <= MAX_LENGTH
    assert len(parse_selector(long_and).operands) == 250  # type: ignore[attr-defined]
    hostile = "(" * (MAX_LENGTH // 2) + ")" * (MAX_LENGTH // 2)
    with pytest.raises(SelectorError, match="nesting deeper"):
        parse_selector(hostile)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("all", ALL_IDS),
        ("not all", []),
        ("profile=rpi4", ["cam-01", "cam-02"]),
        ("PROFILE=RPI4", []),
        ("id=cam-*", ["cam-01", "cam-02"]),
        ("id=*-0*", ["cam-01", "cam-02", "gw-01", "gw-02"]),
        ("id=*.*", ["sensor.x"]),
        ('id="cam-\\*"', []),
        ("state=online", ["cam-01", "gw-01"]),
        ("state in (online, offline)", ["cam-01", "cam-02", "gw-01"]),
        ("state=*line", ["cam-01", "cam-02", "gw-01"]),
        ("tag:lab", ["cam-01", "gw-02"]),
        ("tag:cam*", ["cam-01", "cam-02"]),
        ("tag:*", ["cam-01", "cam-02", "gw-02", "sensor.x"]),
        ('tag:"my tag"', ["sensor.x"]),
        ("not tag:lab", ["cam-02", "gw-01", "sensor.x"]),
        ("site=berlin", ["cam-01", "gw-01"]),
        ("site!=berlin", ["cam-02", "gw-02", "sensor.x"]),
        ("has(site) and site!=berlin", ["cam-02", "sensor.x"]),
        ("site in (berlin, paris)", ["cam-01", "cam-02", "gw-01"]),
        ("site not in (berlin, paris)", ["gw-02", "sensor.x"]),
        ('site="new york"', ["sensor.x"]),
        ("site=new*", ["sensor.x"]),
        ("site=*", ["cam-01", "cam-02", "gw-01", "sensor.x"]),
        ("site!=*", ["gw-02"]),
        ('zone=""', ["cam-02"]),
        ("has(zone)", ["cam-02"]),
        ("has(id) and has(profile) and has(state)", ALL_IDS),
        ('"and"="a\\"b"', ["sensor.x"]),
        ("profile=rpi4 and site in (berlin, paris) and not tag:lab", ["cam-02"]),
        ("profile=jetson or profile=coral and state=online", ["gw-01", "gw-02"]),
        ("(profile=jetson or profile=coral) and state=online", ["gw-01"]),
        ("not profile=rpi4 and not state=revoked", ["gw-01", "sensor.x"]),
        ("not (profile=rpi4 or state=revoked)", ["gw-01", "sensor.x"]),
    ],
)
def test_evaluation_against_a_small_fleet(text, ids):
    assert select(parse_selector(text), FLEET) == ids


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (("cam",), "cam", True),
        (("cam",), "cam-1", False),
        (("cam", ""), "cam", True),
        (("cam", ""), "ca", False),
        (("", "x"), "x", True),
        (("a", "a"), "a", False),
        (("a", "a"), "aa", True),
        (("a", "b", "c"), "abc", True),
        (("a", "b", "c"), "ac", False),
        (("a", "b", "b"), "abb", True),
        (("a", "bb", "b"), "abbb", True),
        (("a", "bb", "b"), "abb", False),
        (("", ".", ""), "[a-z].*", True),
        (("", ""), "", True),
        (("a.c",), "abc", False),
    ],
)
def test_wildcards_are_star_only_and_never_regexes(pattern, text, expected):
    assert Pattern(pattern).matches(text) is expected


def test_constructors_keep_the_tree_canonical():
    assert Pattern(("a", "", "", "b")) == Pattern(("a", "b"))
    assert Compare("Profile", "=", (lit("x"),)).key == "profile"
    assert Compare("k", "in", (lit("b"), lit("a"), lit("b"))).patterns == (lit("a"), lit("b"))
    assert And((Tag(lit("a")), And((Tag(lit("b")), Tag(lit("c")))))) == And(
        (Tag(lit("a")), Tag(lit("b")), Tag(lit("c")))
    )
    with pytest.raises(ValueError, match="at least two"):
        Or((All(),))
    with pytest.raises(ValueError, match="one value"):
        Compare("k", "=", (lit("a"), lit("b")))
    with pytest.raises(ValueError, match="one value"):
        Compare("k", "in", ())
    with pytest.raises(ValueError, match="at least one part"):
        Pattern(())


def test_device_facts_are_frozen_snapshots():
    labels = {"site": "berlin"}
    device = DeviceFacts("d1", "rpi4", "online", {"lab"}, labels)  # type: ignore[arg-type]
    labels["site"] = "paris"
    assert device.labels == {"site": "berlin"}
    assert device.tags == frozenset({"lab"})
    assert hash(device) == hash(DeviceFacts("d1", "rpi4", "online", frozenset({"lab"}), labels))
    with pytest.raises(TypeError):
        device.labels["site"] = "x"  # type: ignore[index]


def test_select_sorts_ids_and_takes_any_iterable():
    assert select(parse_selector("tag:camera"), reversed(FLEET)) == ["cam-01", "cam-02"]
    assert select(All(), iter([])) == []


# Property tests. The alphabets are small so that random selectors match random devices.
KEYS = st.sampled_from(["id", "profile", "state", "site", "zone", "Site", "and", "tag:x", "a b"])
TEXTS = st.text(alphabet='ab-*\\" é:', max_size=3)
PATTERNS = st.lists(TEXTS, min_size=1, max_size=3).map(lambda parts: Pattern(tuple(parts)))
OPERATORS: tuple[Operator, ...] = ("=", "!=", "in", "not in")
STATE_PATTERNS = st.sampled_from(sorted(DEVICE_STATES)).map(lit) | st.lists(
    TEXTS, min_size=2, max_size=3
).map(lambda parts: Pattern(tuple(parts)))


@st.composite
def comparisons(draw: st.DrawFn) -> Selector:
    key = draw(KEYS)
    values = STATE_PATTERNS if key.lower() == "state" else PATTERNS
    op = draw(st.sampled_from(OPERATORS))
    count = 1 if op in ("=", "!=") else draw(st.integers(1, 3))
    return Compare(key, op, tuple(draw(values) for _ in range(count)))


LEAVES = st.one_of(st.just(All()), PATTERNS.map(Tag), comparisons())
SELECTORS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda ops: And(tuple(ops))),
        st.lists(inner, min_size=2, max_size=3).map(lambda ops: Or(tuple(ops))),
    ),
    max_leaves=8,
)
DEVICES = st.builds(
    DeviceFacts,
    device_id=st.sampled_from(["a", "b", "ab", "a-b", "b:a"]),
    profile=st.sampled_from(["a", "ab", "b*"]),
    state=st.sampled_from(sorted(DEVICE_STATES)),
    tags=st.frozensets(st.sampled_from(["a", "b", "a b", 'a"', ""]), max_size=3),
    labels=st.dictionaries(
        st.sampled_from(["site", "zone", "Site", "and", "tag:x", "a b"]),
        st.sampled_from(["", "a", "b", "ab", "a-b", "é"]),
        max_size=3,
    ),
)
FLEETS = st.lists(DEVICES, max_size=6).map(
    lambda devices: [
        DeviceFacts(f"{d.device_id}-{i}", d.profile, d.state, d.tags, d.labels)
        for i, d in enumerate(devices)
    ]
)


@settings(max_examples=200)
@given(SELECTORS)
def test_canonical_text_parses_back_to_the_same_tree(selector):
    text = str(selector)
    assert parse_selector(text) == selector
    assert str(parse_selector(text)) == text


@settings(max_examples=100)
@given(SELECTORS, SELECTORS, FLEETS)
def test_not_and_or_are_complement_intersection_union(a, b, fleet):
    ids = {device.device_id for device in fleet}
    picked_a = set(select(a, fleet))
    picked_b = set(select(b, fleet))
    assert set(select(parse_selector(f"not ({a})"), fleet)) == ids - picked_a
    assert set(select(parse_selector(f"({a}) and ({b})"), fleet)) == picked_a & picked_b
    assert set(select(parse_selector(f"({a}) or ({b})"), fleet)) == picked_a | picked_b


@settings(max_examples=100)
@given(comparisons(), FLEETS)
def test_negated_operators_select_the_complement(comparison, fleet):
    flipped = OPERATORS[OPERATORS.index(comparison.op) ^ 1]
    opposite = Compare(comparison.key, flipped, comparison.patterns)
    ids = {device.device_id for device in fleet}
    assert set(select(opposite, fleet)) == ids - set(select(comparison, fleet))


FRAGMENTS = st.sampled_from(
    ["a", "b=", "=", "!=", "==", "(", ")", ",", " ", '"', "\\", "*", "é", "\x00", "\t"]
    + ["and ", " or ", "not ", " in ", "tag:", "has(", "all", "state=", "id=", "'"]
)


@settings(max_examples=400)
@given(st.text(max_size=60) | st.lists(FRAGMENTS, max_size=25).map("".join))
def test_arbitrary_text_raises_only_selector_error(text):
    try:
        selector = parse_selector(text)
    except SelectorError as err:
        position = err.position
    else:
        assert parse_selector(str(selector)) == selector
        return
    assert 1 <= position <= len(text) + 1
