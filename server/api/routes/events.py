"""``GET /events/stream``: server-sent "something changed" notices for live pages.

Each connection polls a cheap fingerprint (:mod:`edgefleet.server.fleet.live`)
every :data:`POLL_SECONDS` in a short session on a worker thread, and checks
its caller again each time, so revoking a token ends its streams. A stream
ends by itself after :data:`STREAM_SECONDS` (the browser's EventSource
reconnects at once): uvicorn waits for open responses before it shuts down,
so that bound is what lets the server stop promptly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from edgefleet.server.api.deps import Credentials, ServicesDep, StreamViewer, check_viewer
from edgefleet.server.errors import AuthenticationError, PermissionDeniedError
from edgefleet.server.fleet import live
from edgefleet.server.fleet.changes import changed_topics, sse_message
from edgefleet.server.services import Services

router = APIRouter(prefix="/events", tags=["events"])

POLL_SECONDS = 2.0
STREAM_SECONDS = 15.0
RETRY_MS = 1000


def _look(
    request: Request, services: Services, credentials: HTTPAuthorizationCredentials | None
) -> dict[str, Hashable]:
    check_viewer(request, services, credentials)
    return live.fingerprint(services.sessions)


async def _notices(
    request: Request, services: Services, credentials: HTTPAuthorizationCredentials | None
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    ends = time.monotonic() + STREAM_SECONDS
    before: dict[str, Hashable] | None = None
    while True:
        try:
            after = await run_in_threadpool(_look, request, services, credentials)
        except (AuthenticationError, PermissionDeniedError) as err:
            yield sse_message("signed-out", {"reason": err.reason})
            return
        topics = changed_topics(before, after)
        if before is None or topics:
            yield sse_message("hello" if before is None else "change", {"topics": topics})
        before = after
        if time.monotonic() + POLL_SECONDS > ends:
            return
        await asyncio.sleep(POLL_SECONDS)


@router.get("/stream", response_class=StreamingResponse)
def stream(
    request: Request, services: ServicesDep, credentials: Credentials, _: StreamViewer
) -> StreamingResponse:
    """``text/event-stream``: ``hello`` (all topics) first, then ``change`` with the topics
    that moved (devices, telemetry, events, rollouts, training, drift)."""
    return StreamingResponse(
        _notices(request, services, credentials),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
