"""Minute buckets of the "online over time" chart: which minutes a telemetry window covers,
how many distinct devices each minute saw, and how chart buckets are drawn from minutes. Pure.

A device counts in every minute its window overlaps (a 300-s window counts in
five minutes), so a fleet sending long windows does not look mostly offline. A
chart bucket wider than a minute shows the **peak** minute in it: a count of
distinct devices cannot be summed across minutes, and the peak is what "how many
were online at once" means. Counting is set-based (distinct ``(minute, device)``
pairs), so duplicates and replays of a window never count twice.

A window longer than :data:`MAX_WINDOW` (the agent's longest configurable window)
is left out: only a stalled agent or a bad clock makes one, and a window spanning
years would otherwise cost memory per minute it claims and widen every recount.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

MINUTE = 60.0
MAX_WINDOW = 3600.0

Window = tuple[str, float, float]
"""``(device_id, window_start, window_end)`` of one telemetry row."""

Indices = npt.NDArray[np.int64]


def minute_of(t: float) -> float:
    return math.floor(t / MINUTE) * MINUTE


def minute_after(t: float) -> float:
    """The first minute boundary at or after ``t``."""
    return math.ceil(t / MINUTE) * MINUTE


def countable(windows: Sequence[Window]) -> list[Window]:
    return [w for w in windows if w[2] - w[1] <= MAX_WINDOW]


def _minute_spans(windows: Sequence[Window]) -> tuple[Indices, Indices]:
    """First and last minute index each window covers; an empty window covers its start's."""
    starts = np.fromiter((w[1] for w in windows), dtype=np.float64, count=len(windows))
    ends = np.fromiter((w[2] for w in windows), dtype=np.float64, count=len(windows))
    first = np.floor(starts / MINUTE).astype(np.int64)
    last = np.maximum(np.ceil(ends / MINUTE).astype(np.int64) - 1, first)
    return first, last


def _expand(first: Indices, last: Indices) -> tuple[Indices, Indices]:
    """Every ``(row, minute index)`` pair with ``first[row] <= minute <= last[row]``."""
    lengths = np.maximum(last - first + 1, 0)
    rows = np.repeat(np.arange(len(first), dtype=np.int64), lengths)
    offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    return rows, np.repeat(first, lengths) + offsets


def touched_ranges(windows: Sequence[Window]) -> list[tuple[float, float]]:
    """The minutes these windows cover as contiguous ``[start, end)`` runs, oldest first:
    each run is recounted with one query."""
    windows = countable(windows)
    if not windows:
        return []
    first, last = _minute_spans(windows)
    _, minutes = _expand(first, last)
    touched = np.unique(minutes)
    breaks = np.flatnonzero(np.diff(touched) > 1)
    run_starts = np.concatenate(([touched[0]], touched[breaks + 1]))
    run_ends = np.concatenate((touched[breaks], [touched[-1]])) + 1
    return [
        (float(a) * MINUTE, float(b) * MINUTE)
        for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True)
    ]


def minute_counts(windows: Sequence[Window], since: float, until: float) -> dict[float, int]:
    """Distinct devices per minute of ``[since, until)`` (minute boundaries), zeros included."""
    windows = countable(windows)
    low, high = round(since / MINUTE), round(until / MINUTE)
    counts = np.zeros(max(high - low, 0), dtype=np.int64)
    if windows and len(counts):
        codes: dict[str, int] = {}
        devices = np.fromiter(
            (codes.setdefault(w[0], len(codes)) for w in windows),
            dtype=np.int64,
            count=len(windows),
        )
        first, last = _minute_spans(windows)
        rows, minutes = _expand(np.maximum(first, low), np.minimum(last, high - 1))
        pairs = np.unique((minutes - low) * len(codes) + devices[rows])
        counts = np.bincount(pairs // len(codes), minlength=len(counts))
    return {(low + i) * MINUTE: int(n) for i, n in enumerate(counts.tolist())}


def longest_window(windows: Sequence[Window]) -> float:
    """How far back a window overlapping a minute may start: bounds each recount's scan."""
    return max((end - start for _, start, end in countable(windows)), default=0.0)


def settled(received: Sequence[float], before: float) -> int:
    """How many rows (in id order) to roll up: those before the first received after
    ``before``. A row received later may have an id below one committed earlier (ids are
    taken before commit), so rows are left to settle before the watermark passes them."""
    return next((i for i, at in enumerate(received) if at > before), len(received))


def peaks(
    minutes: Mapping[float, int], starts: Sequence[float], ends: Sequence[float]
) -> list[int]:
    """Each chart bucket's peak over the minutes overlapping ``[start, end)``; 0 for none."""
    keys = sorted(minutes)
    values = [minutes[k] for k in keys]
    return [
        max(values[bisect_right(keys, start - MINUTE) : bisect_left(keys, end)], default=0)
        for start, end in zip(starts, ends, strict=True)
    ]
