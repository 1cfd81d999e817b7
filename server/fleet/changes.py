"""Change notices for live pages: compare two cheap fingerprints of the database. Pure.

A notice only names what changed (``devices``, ``events``, ``rollouts``...);
the page then reads the API it already reads, so a notice can never show a
number the API would not.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping

Fingerprint = Mapping[str, Hashable]
TOPICS = ("devices", "telemetry", "events", "rollouts", "training", "drift", "retraining", "models")


def changed_topics(before: Fingerprint | None, after: Fingerprint) -> list[str]:
    """Topics whose fingerprint moved; every topic on the first look."""
    if before is None:
        return sorted(after)
    return sorted(topic for topic, value in after.items() if before.get(topic) != value)


def sse_message(event: str, data: Mapping[str, object]) -> str:
    """One server-sent event; JSON keeps the data on one line, as the format requires."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
