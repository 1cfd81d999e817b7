"""An artifact that does not hash to its manifest: fetch it again, a bounded number of times.

The signed manifest carries one sha256 for the whole artifact, not one per
chunk, so a mismatch cannot name the damaged chunk: every chunk is fetched
again (a new subscription makes the broker resend every retained chunk). A
byte flipped on the wire is gone on the next fetch; a damaged copy on the
broker, or a manifest naming other bytes, comes back every time, and once
:data:`MAX_REFETCHES` are spent the update fails with ``download_corrupt``.

Each failed fetch leaves a short fingerprint per chunk, computed only on a
mismatch (a good download pays nothing), so the reasons say which chunks
changed between two failed fetches (damaged in transit) or that none did
(damaged where it came from). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

MAX_REFETCHES = 3
"""Fetches after the first; a transient corruption rarely hits more than one in a row."""
FINGERPRINT_BYTES = 8
"""Enough to tell two copies of a chunk apart; 32 would cost 4x the memory for nothing."""
NAMED_CHUNKS = 8
"""Chunk indices a reason names before it stops listing them."""


def fingerprints(data: bytes | bytearray, chunk_size: int) -> tuple[bytes, ...]:
    """A short digest of each chunk of ``data``, in index order."""
    view = memoryview(data)
    return tuple(
        hashlib.blake2b(view[start : start + chunk_size], digest_size=FINGERPRINT_BYTES).digest()
        for start in range(0, len(data), chunk_size)
    )


def changed_chunks(before: Sequence[bytes], after: Sequence[bytes]) -> list[int]:
    """Indices whose fingerprint differs between two fetches of the same artifact."""
    return [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]


@dataclass(frozen=True, slots=True)
class Refetch:
    """Fetch every chunk again; ``reason`` says why, for the event and the log."""

    reason: str


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Give up: the update fails with ``reason`` (slug ``download_corrupt``)."""

    reason: str


class RefetchBudget:
    """How many whole-artifact fetches one update may still make, and what the last ones brought."""

    def __init__(self) -> None:
        self._used = 0
        self._last: tuple[bytes, ...] | None = None

    @property
    def used(self) -> int:
        """Refetches started so far."""
        return self._used

    def mismatch(self, prints: tuple[bytes, ...], detail: str) -> Refetch | Corrupt:
        """A complete fetch whose bytes did not verify (``detail``); ``prints`` are its chunks'."""
        compared = _compared(self._last, prints)
        self._last = prints
        if self._used >= MAX_REFETCHES:
            return Corrupt(
                f"download_corrupt: the artifact did not match its manifest in "
                f"{self._used + 1} fetches{compared}; last: {detail}"
            )
        self._used += 1
        return Refetch(
            f"refetch {self._used} of {MAX_REFETCHES}: {detail}{compared}; "
            "fetching every chunk again",
        )


def _compared(before: tuple[bytes, ...] | None, after: tuple[bytes, ...]) -> str:
    """The last two failed fetches side by side, in words ('' after the first)."""
    if before is None:
        return ""
    changed = changed_chunks(before, after)
    if not changed:
        return (
            "; the last two fetches brought identical bytes, so the damage is likely at the "
            "source (the broker's copy or the manifest), not in transit"
        )
    more = "" if len(changed) <= NAMED_CHUNKS else f" and {len(changed) - NAMED_CHUNKS} more"
    return f"; chunks {changed[:NAMED_CHUNKS]}{more} changed since the previous fetch"
