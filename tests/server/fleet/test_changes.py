"""Change notices: which topics moved between two fingerprints, and the SSE framing."""

from __future__ import annotations

import json

from edgefleet.server.fleet.changes import changed_topics, sse_message


def test_first_look_names_every_topic_then_only_what_moved() -> None:
    first = {"devices": (("online", 3, 1.0),), "events": 10, "drift": None}
    assert changed_topics(None, first) == ["devices", "drift", "events"]
    assert changed_topics(first, dict(first)) == []
    moved = first | {"events": 11, "drift": 4}
    assert changed_topics(first, moved) == ["drift", "events"]


def test_sse_message_is_one_event_with_one_line_of_json() -> None:
    text = sse_message("change", {"topics": ["a", "b"], "note": "two\nlines"})
    lines = text.split("\n")
    assert lines[0] == "event: change"
    assert lines[1].startswith("data: ")
    assert json.loads(lines[1][len("data: ") :])["note"] == "two\nlines"
    assert text.endswith("\n\n")
    assert lines[2:] == ["", ""]
