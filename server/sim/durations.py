"""Durations as a scenario author writes them: ``30``, ``"500ms"``, ``"90s"``, ``"1m30s"``.

Kept apart from the scenario parser so the simulator's CLI options can read
durations the same way the file does.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = tuple(_UNIT_SECONDS)
# "ms" is tried before "m" so "500ms" is not read as 500 minutes and a stray "s".
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_WHOLE = re.compile(rf"(?:{_PART.pattern})+")
_EXAMPLES = 'seconds as a number, or a string such as "500ms", "90s", "2m", "1h", "1m30s"'


def parse_duration(value: object) -> float:
    """Seconds in ``value``; ``ValueError`` says why it is not a duration.

    Units must go from the largest to the smallest, each at most once, so a
    string has exactly one reading ("1m30s", never "30s1m" or "1m1m").
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # ValueError, not TypeError: to a scenario author a wrong type is a wrong value.
        raise ValueError(f"expected a duration ({_EXAMPLES}), got {value!r}")  # noqa: TRY004
    if isinstance(value, str):
        return _parse_text(value)
    if not math.isfinite(value):
        raise ValueError(f"a duration must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return float(value)


def _parse_text(text: str) -> float:
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    if _WHOLE.fullmatch(text) is None:
        raise ValueError(f"not a duration: {text!r} ({_EXAMPLES})")
    total = 0.0
    last = -1
    for number, unit in _PART.findall(text):
        rank = _UNIT_ORDER.index(unit)
        if rank <= last:
            raise ValueError(f'units out of order or repeated in {text!r} (write e.g. "1m30s")')
        last = rank
        total += float(number) * _UNIT_SECONDS[unit]
    if not math.isfinite(total):
        raise ValueError(f"a duration must be finite, got {text!r}")
    return total
