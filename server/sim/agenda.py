"""A scenario's clock: actions due at times from zero, played in order as the time comes.

An action may add later ones while it runs (a broker restart schedules the
broker's start ``down_for`` later, so the clock never stops for it), and
one that fails with an expected error is reported and the others still
play. The clock and the sleep are passed in, so tests play an agenda in
no time.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgefleet.shared.errors import EdgefleetError

MAX_SLEEP = 1.0

Action = Callable[[], str]
"""Does its work; a few words on what it did, for the event's line."""


@dataclass(order=True)
class _Entry:
    due: float
    order: int
    label: str = field(compare=False)
    action: Action = field(compare=False)


class Agenda:
    def __init__(
        self,
        *,
        say: Callable[[str], None],
        expected: tuple[type[Exception], ...] = (EdgefleetError,),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._say = say
        self._expected = expected
        self._clock = clock
        self._sleep = sleep
        self._entries: list[_Entry] = []
        self._order = itertools.count()
        self.started = 0.0
        self.failures: list[str] = []

    def at(self, due: float, label: str, action: Action) -> None:
        heapq.heappush(self._entries, _Entry(due, next(self._order), label, action))

    def elapsed(self) -> float:
        return self._clock() - self.started

    def play(self, until: float, *, every: float, tick: Callable[[float], None]) -> None:
        """From zero now until ``until`` and every entry has run; ``tick(elapsed)`` every
        ``every`` seconds in between."""
        self.started = self._clock()
        next_tick = every
        while True:
            now = self.elapsed()
            while self._entries and self._entries[0].due <= now:
                self._run(heapq.heappop(self._entries))
                now = self.elapsed()
            if now >= until and not self._entries:
                return
            if now >= next_tick:
                tick(now)
                next_tick += every
            wakes = [
                next_tick,
                *(e.due for e in self._entries[:1]),
                *([until] if now < until else []),
            ]
            self._sleep(min(MAX_SLEEP, max(0.0, min(wakes) - now)))

    def _run(self, entry: _Entry) -> None:
        try:
            outcome = entry.action()
        except self._expected as err:
            message = getattr(err, "message", None) or str(err)
            self.failures.append(f"{entry.due:g}s {entry.label}: {message}")
            self._say(f"{self.elapsed():6.1f}s  {entry.label}: FAILED: {message}")
        else:
            self._say(f"{self.elapsed():6.1f}s  {entry.label}: {outcome}")
