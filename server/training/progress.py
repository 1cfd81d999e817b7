"""How a running pipeline reports progress and learns it was cancelled.

The pipeline only sees this protocol; the worker's implementation writes to
the job's row and log in the database, tests pass a recorder.
"""

from __future__ import annotations

from typing import Any, Protocol


class Cancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside the pipeline when its job was cancelled; unwinds to the worker."""


class Progress(Protocol):
    def update(self, phase: str, **fields: Any) -> None:
        """The current phase (``training``, ``quantizing``...) and its numbers; may raise
        :class:`Cancelled`."""

    def log(self, message: str) -> None: ...


class SilentProgress:
    """For callers that do not watch (benchmarks, scripts)."""

    def update(self, phase: str, **fields: Any) -> None:
        pass

    def log(self, message: str) -> None:
        pass
