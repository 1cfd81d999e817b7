"""Drift and retraining alerts: the audit log, a counter on ``/metrics``, an optional webhook.

The audit record is written in the caller's transaction, so an alert is on
record exactly when the change it reports is. The webhook is best effort
and must never hold the loop up: payloads go to a bounded queue that one
thread POSTs as JSON, retrying with backoff; what it cannot deliver (the
receiver stays down, the queue is full) is counted and logged, not retried
forever, because the audit log already has it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from edgefleet.server import audit
from edgefleet.server.metrics import Metrics

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "edgefleet"
RETRY_SECONDS = (1.0, 5.0, 15.0)


class Alerts:
    def __init__(
        self,
        metrics: Metrics,
        webhook_url: str | None = None,
        *,
        timeout: float = 5.0,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
        queue_size: int = 1000,
    ) -> None:
        self._metrics = metrics
        self._url = webhook_url
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._url is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._post_all, name="edgefleet-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout``), then stop."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._stop.set()
        self._thread = None

    def raise_alert(
        self,
        session: Session,
        *,
        kind: str,
        model: str,
        message: str,
        detail: Mapping[str, Any],
        now: float,
    ) -> None:
        """Record ``kind`` (``drift.detected``, ``retraining.promoted``...) and send it on."""
        payload = {"kind": kind, "model": model, "at": now, "message": message, **detail}
        audit.record(
            session=session,
            actor=SYSTEM_ACTOR,
            action=f"alert.{kind}",
            target_type="model",
            target_id=model,
            now=now,
            after=payload,
        )
        self._metrics.alerts.labels(kind).inc()
        logger.warning("alert %s for %s: %s", kind, model, message)
        if self._url is None:
            return
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._metrics.alert_webhook_failures.labels("queue_full").inc()

    def _post_all(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            self._post(payload)

    def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        for attempt, pause in enumerate((*self._retry_seconds, None), 1):
            request = urllib.request.Request(  # noqa: S310 (an operator-configured http(s) URL)
                self._url or "",
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": "edgefleet-alerts"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError) as err:
                logger.warning("alert webhook: attempt %d failed: %s", attempt, err)
                if pause is None or self._stop.wait(pause):
                    break
        self._metrics.alert_webhook_failures.labels("undelivered").inc()
