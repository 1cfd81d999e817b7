"""The download's edge: chunk topics subscribed and dropped, and what a download tells the machine.

:class:`~.download.Download` decides (progress, resume, deadline, refetch);
:class:`Fetcher` carries it out on the broker subscriptions and turns it
into the machine's signals, for :class:`~.updater.Updater` to drive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from edgefleet.agent.update.download import Download, Resume, TimedOut, Verified
from edgefleet.agent.update.machine import Downloaded, Fail, Progress, Signal
from edgefleet.agent.update.refetch import Corrupt
from edgefleet.agent.update.state import reason_of
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.topics import artifact_filter, artifact_topic

log = logging.getLogger(__name__)

STALL_SECONDS = 10.0
"""No new chunk for this long: ask again for the missing ones."""


class Subscriptions(Protocol):
    def subscribe(self, topic_filter: str) -> None: ...
    def unsubscribe(self, topic_filter: str) -> None: ...


class Fetcher:
    """At most one download at a time, on the artifact's chunk topics."""

    def __init__(
        self, subscriptions: Subscriptions, *, monotonic: Callable[[], float], timeout: float
    ) -> None:
        self._subs = subscriptions
        self._monotonic = monotonic
        self._timeout = timeout
        self._download: Download | None = None

    @property
    def active(self) -> bool:
        return self._download is not None

    def start(self, manifest: Manifest) -> None:
        """Subscribe to every chunk of ``manifest``'s artifact: the retained ones arrive at once."""
        self._download = Download(
            manifest,
            now=self._monotonic(),
            timeout=self._timeout,
            stall=min(STALL_SECONDS, self._timeout / 4),
        )
        self._subs.subscribe(artifact_filter(manifest.artifact.sha256))

    def stop(self) -> bytearray | None:
        """Drop the chunk subscriptions; the verified artifact, if the download got that far."""
        download, self._download = self._download, None
        if download is None:
            return None
        self._subs.unsubscribe(artifact_filter(download.sha256))
        for index in download.asked():
            self._subs.unsubscribe(artifact_topic(download.sha256, index))
        return download.artifact

    def on_chunk(self, sha256: str, index: int, data: bytes) -> Signal | None:
        download = self._download
        if download is None or download.sha256 != sha256:
            return None  # a retained chunk of an artifact we no longer want
        now = self._monotonic()
        try:
            fraction = download.accept(index, data, now=now)
            if download.assembler.complete:
                return self._verified(download, now)
        except EdgefleetError as err:
            return Fail(reason_of(err))
        return None if fraction is None else Progress(fraction)

    def due(self) -> Signal | None:
        """Time-driven: ask again for stalled chunks, or fail past the deadline."""
        download = self._download
        if download is None:
            return None
        due = download.due(now=self._monotonic())
        if isinstance(due, TimedOut):
            return Fail(due.reason)
        if isinstance(due, Resume):
            log.info("download stalled; asking again for %d chunks", len(due.chunks))
            for index in due.chunks:
                self._subs.subscribe(artifact_topic(download.sha256, index))
        return None

    def _verified(self, download: Download, now: float) -> Signal:
        outcome = download.verify(now=now)
        if isinstance(outcome, Verified):
            return Downloaded()
        if isinstance(outcome, Corrupt):
            return Fail(outcome.reason)
        log.warning("artifact %s... did not verify: %s", download.sha256[:16], outcome.reason)
        # The same filter again: the broker resends every retained chunk to a new subscription.
        self._subs.subscribe(artifact_filter(download.sha256))
        return Progress(0.0, outcome.reason)
