"""What commands print: plain-text tables and fields for people, the API's JSON for scripts.

Every string that came from the API goes through :func:`clean` first: a
device label is chosen by whoever provisioned the device, and must not be
able to send escape sequences to an operator's terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click

NONE = "-"
GAP = "  "


def clean(value: object) -> str:
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return NONE
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def joined(values: Iterable[object]) -> str:
    return ",".join(clean(v) for v in values) or NONE


def pairs(mapping: Mapping[str, object]) -> str:
    return ",".join(f"{clean(k)}={clean(v)}" for k, v in sorted(mapping.items())) or NONE


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [list(headers), *([clean(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        GAP.join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def fields(items: Sequence[tuple[str, object]]) -> str:
    width = max(len(label) for label, _ in items) + 1
    return "\n".join(f"{label + ':':<{width}} {clean(value)}" for label, value in items)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    click.echo(table(headers, rows) if rows else empty)
