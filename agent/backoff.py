"""Jittered exponential backoff for reconnecting to the broker.

A fleet that lost its broker all at once must not come back all at once:
each delay is drawn from the upper half of an exponentially growing window,
so devices spread out while each still backs off. Pure: the random draw is
passed in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

Uniform = Callable[[float, float], float]


class Backoff:
    def __init__(
        self,
        *,
        initial: float = 1.0,
        maximum: float = 60.0,
        uniform: Uniform | None = None,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"want 0 < initial ({initial}) <= maximum ({maximum})")
        self._initial = initial
        self._maximum = maximum
        self._uniform = uniform or secrets.SystemRandom().uniform
        self._failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        window = min(self._maximum, self._initial * 2.0 ** min(self._failures, 32))
        self._failures += 1
        return self._uniform(window / 2, window)

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``initial`` again."""
        self._failures = 0
