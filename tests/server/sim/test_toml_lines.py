"""Key lines in TOML text: the paths match what tomllib parses, and values never pass for keys."""

from __future__ import annotations

import tomllib

import pytest

from edgefleet.server.sim.toml_lines import KeyLines

TEXT = '''\
# a comment = not a key
title = "x"                    # line 2
[fleet]
devices = 3
"quoted.key" = 1               # line 5
groups.site-a = 0.5            # line 6: a dotted key
notes = """
[not_a_table]
fake = 1
"""
tags = [                       # line 11
  "a", # comment ] with a bracket
  ["nested", "[x]"],
]
inline = { a = 1, b = 2 }      # line 15

[[event]]                      # line 17
at = "1s"
[[event]]                      # line 19
at = '2s'                      # line 20
[event.extra]                  # line 21: a sub-table of the second event
depth = 1
[ "spaced" . 'keys' ]          # line 23
path = 'C:\\data\\' # line 24: a literal string; its backslashes escape nothing
after = 1
'''


def test_the_fixture_is_valid_toml() -> None:
    assert tomllib.loads(TEXT)["spaced"]["keys"] == {"path": "C:\\data\\", "after": 1}


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("title",), 2),
        (("fleet",), 3),
        (("fleet", "devices"), 4),
        (("fleet", "quoted.key"), 5),
        (("fleet", "groups", "site-a"), 6),
        (("fleet", "groups"), 6),
        (("fleet", "notes"), 7),
        (("fleet", "tags"), 11),
        (("fleet", "inline"), 15),
        (("event",), 17),
        (("event", 0), 17),
        (("event", 0, "at"), 18),
        (("event", 1), 19),
        (("event", 1, "at"), 20),
        (("event", 1, "extra"), 21),
        (("event", 1, "extra", "depth"), 22),
        (("spaced", "keys"), 23),
        (("spaced", "keys", "after"), 25),
    ],
)
def test_line_of_each_key_and_header(path: tuple[str | int, ...], line: int) -> None:
    assert KeyLines(TEXT).find(path) == line


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("fleet", "inline", "a"), 15),
        (("fleet", "tags", 1), 11),
        (("event", 1, "missing"), 19),
        (("fleet", "not_a_table"), 3),
    ],
)
def test_an_unwritten_key_falls_back_to_its_nearest_ancestor(
    path: tuple[str | int, ...], line: int
) -> None:
    assert KeyLines(TEXT).find(path) == line


def test_text_inside_strings_and_arrays_is_not_read_as_keys() -> None:
    lines = KeyLines(TEXT)
    assert lines.find(("not_a_table",)) is None
    assert lines.find(("fake",)) is None
    assert lines.find(("x",)) is None


def test_multiline_basic_string_with_escaped_quotes_and_trailing_quotes() -> None:
    text = 'a = """one \\""" two""""\nb = 1\n'
    assert tomllib.loads(text) == {"a": 'one """ two"', "b": 1}
    assert KeyLines(text).find(("b",)) == 2


def test_multiline_literal_string() -> None:
    text = "a = '''\nb = 2\n'''\n[t]\nc = 3\n"
    assert tomllib.loads(text) == {"a": "b = 2\n", "t": {"c": 3}}
    lines = KeyLines(text)
    assert lines.find(("b",)) is None
    assert lines.find(("t", "c")) == 5


def test_windows_line_endings() -> None:
    text = "[fleet]\r\ndevices = 3\r\n\r\nduration = 1\r\n"
    assert KeyLines(text).find(("fleet", "duration")) == 4


def test_a_table_written_after_its_sub_table_keeps_its_own_line() -> None:
    text = "[fleet.groups]\na = 1\n[fleet]\nb = 2\n"
    tomllib.loads(text)
    lines = KeyLines(text)
    assert lines.find(("fleet",)) == 3
    assert lines.find(("fleet", "groups")) == 1
