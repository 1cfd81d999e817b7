"""The ingest loop: broker thread -> bounded queue -> one writer thread -> database.

paho's network thread only enqueues (it must never wait on a database); the
writer thread drains the queue into batches flushed by size or age, so a
busy fleet gets hundreds of rows per transaction and a quiet one sees its
data within ``flush_seconds``. A failed write is retried with the same
batch until it lands (at shutdown, three tries, then it is counted as
``write_failed``; messages are acknowledged to the broker on receipt, so
those are lost). Rejections are counted by reason and logged once per
device and reason per minute, so one broken device cannot flood the log.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Container

from sqlalchemy.exc import SQLAlchemyError

from edgefleet.server.ingest.pipeline import Rejection, route
from edgefleet.server.ingest.writer import Batch, BatchWriter
from edgefleet.server.metrics import Metrics
from edgefleet.server.mqtt import MessageProperties, MqttTransport
from edgefleet.server.services import Clock
from edgefleet.shared.topics import Channel, shared_subscription

logger = logging.getLogger(__name__)

INGESTED = (Channel.STATE, Channel.TELEMETRY, Channel.EVENTS, Channel.DRIFT)
LOG_EVERY_SECONDS = 60.0
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
SHUTDOWN_ATTEMPTS = 3

_Item = tuple[str, bytes, float]


class IngestService:
    def __init__(
        self,
        *,
        transport: MqttTransport,
        writer: BatchWriter,
        known_devices: Container[str],
        clock: Clock,
        metrics: Metrics,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        queue_size: int = 100_000,
    ) -> None:
        self._transport = transport
        self._writer = writer
        self._known = known_devices
        self._clock = clock
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._logged: dict[tuple[str | None, str], float] = {}

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgefleet-ingest", daemon=True)
        self._thread.start()
        self._transport.set_message_handler(self._enqueue)
        for channel in INGESTED:
            # The broker's server role allows exactly this share group (dynsec.server_acls).
            self._transport.subscribe(shared_subscription(channel), qos=1, timeout=None)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, write what is queued, then return."""
        self._transport.set_message_handler(None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """True once everything received so far is committed (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy or not self._queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _enqueue(self, topic: str, payload: bytes, _properties: MessageProperties) -> None:
        try:
            self._queue.put_nowait((topic, payload, self._clock()))
        except queue.Full:
            self._reject(Rejection("queue_full", None, "ingest queue is full"))

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._collect()
            if batch.messages:
                self._write(batch)
            with self._idle:
                self._busy = False
                self._metrics.queue_depth.set(self._queue.qsize())
                self._idle.notify_all()

    def _collect(self) -> Batch:
        batch = Batch()
        deadline: float | None = None
        while batch.messages < self._batch_size:
            wait = 0.1 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                topic, payload, received_at = self._queue.get(timeout=wait)
            except queue.Empty:
                if deadline is None and self._stop.is_set():
                    break
                continue
            with self._idle:
                self._busy = True
            if deadline is None:
                deadline = time.monotonic() + self._flush_seconds
            routed = route(topic, payload, received_at=received_at, known_devices=self._known)
            if isinstance(routed, Rejection):
                self._reject(routed)
                continue
            self._metrics.messages_received.labels(topic.rsplit("/", 1)[-1]).inc()
            batch.add(routed, received_at)
        return batch

    def _write(self, batch: Batch) -> None:
        attempt = 0
        while True:
            try:
                result = self._writer.write(batch)
                break
            except SQLAlchemyError:
                attempt += 1
                if self._stop.is_set() and attempt >= SHUTDOWN_ATTEMPTS:
                    logger.exception(
                        "ingest: shutting down with %d messages unwritten", batch.messages
                    )
                    self._metrics.messages_rejected.labels("write_failed").inc(batch.messages)
                    return
                pause = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS)) - 1]
                logger.warning(
                    "ingest: write failed (attempt %d), retrying in %.1fs",
                    attempt,
                    pause,
                    exc_info=True,
                )
                self._stop.wait(pause)
        if batch.oldest is not None:
            self._metrics.ingest_lag.observe(self._clock() - batch.oldest)
        self._metrics.batch_size.observe(batch.messages)
        self._metrics.rows_written.labels("telemetry").inc(result.telemetry_inserted)
        self._metrics.rows_written.labels("events").inc(result.events_inserted)
        # A replay can land in the same batch as its original: the batch folded
        # those copies before the database could refuse them.
        self._metrics.duplicates.labels("telemetry").inc(
            result.telemetry_duplicates + batch.telemetry_folded
        )
        self._metrics.duplicates.labels("events").inc(
            result.events_duplicates + batch.events_folded
        )

    def _reject(self, rejection: Rejection) -> None:
        self._metrics.messages_rejected.labels(rejection.reason).inc()
        key = (rejection.device_id, rejection.reason)
        now = time.monotonic()
        if now - self._logged.get(key, float("-inf")) >= LOG_EVERY_SECONDS:
            self._logged[key] = now
            logger.warning(
                "ingest: rejected a message from %s (%s): %s",
                rejection.device_id or "?",
                rejection.reason,
                rejection.detail[:300],
            )
