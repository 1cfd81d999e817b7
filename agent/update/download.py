"""One artifact download over time: progress, stalls, resume and the deadline. Pure.

Chunks are retained on the broker, so fetching is subscribing. A download
that stops making progress (a chunk lost in a reconnect, a subscription the
broker dropped) asks again for exactly the chunks it lacks, by subscribing to
their own topics: the broker answers a new subscription with the retained
message. The deadline (``UpdateSection.download_timeout_seconds``) bounds
each fetch of the artifact; past it the update fails and names what is missing.

Once every chunk is in, :meth:`Download.verify` checks the artifact against
the manifest's sha256. A mismatch starts a new fetch of every chunk (with its
own deadline) until the :class:`~.refetch.RefetchBudget` is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.agent.update.chunks import ChunkAssembler, ChunkOutcome
from edgefleet.agent.update.refetch import Corrupt, Refetch, RefetchBudget
from edgefleet.agent.update.state import reason_of
from edgefleet.shared.errors import ArtifactError
from edgefleet.shared.manifest import Manifest

PROGRESS_STEPS = 4
"""Progress events at 25 %, 50 %, 75 %: enough to see a download move, few enough to not flood."""
MAX_RESUME_TOPICS = 64
"""Chunks asked for one by one per resume; the rest wait for the next round."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Subscribe to these chunk indices (their retained messages come back)."""

    chunks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TimedOut:
    reason: str


@dataclass(frozen=True, slots=True)
class Verified:
    """The artifact is the manifest's; :attr:`Download.artifact` holds it."""


class Download:
    def __init__(self, manifest: Manifest, *, now: float, timeout: float, stall: float) -> None:
        self.assembler = ChunkAssembler(manifest)
        self._timeout = timeout
        self._deadline = now + timeout
        self._stall = stall
        self._last_news = now
        self._step = 0
        self._asked: set[int] = set()
        self._refetches = RefetchBudget()
        self._artifact: bytearray | None = None

    @property
    def sha256(self) -> str:
        return self.assembler.spec.sha256

    @property
    def refetches(self) -> int:
        """Whole-artifact fetches made after the first."""
        return self._refetches.used

    @property
    def artifact(self) -> bytearray | None:
        """The verified artifact (``None`` until :meth:`verify` said :class:`Verified`)."""
        return self._artifact

    def accept(self, index: int, data: bytes, *, now: float) -> float | None:
        """Take a chunk (:class:`ArtifactError` if the manifest rules it out).

        Returns the progress fraction to report when the download crosses
        the next step, else ``None``.
        """
        if self.assembler.accept(index, data) is ChunkOutcome.DUPLICATE:
            return None
        self._last_news = now
        step = int(self.assembler.progress * PROGRESS_STEPS)
        if step > self._step and not self.assembler.complete:
            self._step = step
            return step / PROGRESS_STEPS
        return None

    def verify(self, *, now: float) -> Verified | Refetch | Corrupt:
        """Check a complete download against the manifest; on a mismatch, fetch again or give up.

        A :class:`Refetch` has already restarted the download (progress, stall
        clock and deadline); the caller subscribes to the artifact again.
        """
        try:
            self._artifact = self.assembler.finish()
        except ArtifactError as err:
            if err.reason != "sha256_mismatch":
                raise
            outcome = self._refetches.mismatch(self.assembler.fingerprints(), reason_of(err))
            if isinstance(outcome, Refetch):
                self.assembler.restart()
                self._deadline = now + self._timeout
                self._last_news = now
                self._step = 0
            return outcome
        return Verified()

    def due(self, *, now: float) -> Resume | TimedOut | None:
        """What the passage of time asks for: nothing, a resume, or giving up."""
        if self.assembler.complete:
            return None
        if now >= self._deadline:
            missing = self.assembler.missing()
            return TimedOut(
                f"download_timeout: {len(missing)} of {self.assembler.spec.chunk_count} chunks "
                f"missing after the deadline (first: {missing[:8]})"
            )
        if now - self._last_news < self._stall:
            return None
        self._last_news = now
        # Subscribing again to a topic already asked for re-sends its retained message too.
        chosen = tuple(self.assembler.missing()[:MAX_RESUME_TOPICS])
        self._asked.update(chosen)
        return Resume(chosen)

    def asked(self) -> frozenset[int]:
        """Chunk topics subscribed one by one, to unsubscribe when the download ends."""
        return frozenset(self._asked)
