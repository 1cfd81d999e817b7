"""Log lines are JSON objects a shipper can parse, extras and tracebacks included."""

from __future__ import annotations

import io
import json
import logging

from edgefleet.agent.logs import JsonFormatter, configure


def test_each_record_is_one_json_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    kept, level = root.handlers[:], root.level
    configure("debug", stream)
    log = logging.getLogger("edgefleet.agent.test")
    try:
        log.info("installed %s v%d", "vibration", 3, extra={"slot": "b", "obj": object()})
        try:
            int("boom")
        except ValueError:
            log.exception("failed")
    finally:
        root.handlers[:] = kept  # pytest's own capture handlers
        root.setLevel(level)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "installed vibration v3"
    assert (first["level"], first["logger"], first["slot"]) == ("info", "edgefleet.agent.test", "b")
    assert first["obj"].startswith("<object")
    assert first["ts"].endswith("Z")
    assert second["level"] == "error"
    assert "ValueError: invalid literal" in second["exc"]


def test_formatter_keeps_non_ascii_text() -> None:
    record = logging.makeLogRecord({"msg": "température %s", "args": ("élevée",)})
    assert json.loads(JsonFormatter().format(record))["msg"] == "température élevée"
