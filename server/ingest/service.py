"""Ingest, server side: paho's thread receives, a shipper thread batches, a worker stores.

paho's network thread only appends to a deque (it must never wait on a
database, nor on a lock a slow consumer holds). The shipper thread takes
what has arrived (up to ``batch_size`` messages, or whatever came within
``flush_seconds`` of the oldest) and ships it to the worker (by default a
separate process, see :mod:`edgefleet.server.ingest.worker`), one shipment
in flight at a time: while the worker writes, the next batch fills. Its
:class:`~edgefleet.server.ingest.worker.Report` becomes metrics here, and
rejections are logged once per device and reason per minute, so one broken
device cannot flood the log.

Messages are acknowledged to the broker only once their shipment is
reported written (the transport runs with ``manual_ack``): a worker that
dies is restarted and gets the same shipment again, and messages a crashed
or stopped server took but never secured are delivered again by the broker
to its next session. Either way the database ignores rows it already has.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Protocol

from edgefleet.server.ingest import worker
from edgefleet.server.ingest.pipeline import Rejection
from edgefleet.server.ingest.worker import Received, Report, Shipment
from edgefleet.server.metrics import Metrics
from edgefleet.server.mqtt import MessageProperties, MqttTransport
from edgefleet.server.services import Clock
from edgefleet.shared.topics import Channel, channel_filter, shared_subscription

logger = logging.getLogger(__name__)

INGESTED = (Channel.STATE, Channel.TELEMETRY, Channel.EVENTS, Channel.DRIFT)
LOG_EVERY_SECONDS = 60.0
POLL_SECONDS = 0.005
START_TIMEOUT = 60.0


_Arrival = tuple[str, bytes, float, int, int]
"""(topic, payload, arrival time, mid, QoS): what to ship and what to acknowledge after."""


class _Worker(Protocol):
    def join(self, timeout: float | None = None) -> None: ...


class IngestService:
    def __init__(
        self,
        *,
        transport: MqttTransport,
        database_url: str,
        clock: Clock,
        metrics: Metrics,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        queue_size: int = 100_000,
        in_process: bool = False,
        shared: bool = False,
    ) -> None:
        self._transport = transport
        self._database_url = database_url
        self._clock = clock
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._queue_size = queue_size
        self._in_process = in_process
        self._shared = shared
        self._arrived: collections.deque[_Arrival] = collections.deque()
        self._in_flight = 0
        self._stop = threading.Event()
        self._shipper: threading.Thread | None = None
        self._worker: _Worker | None = None
        self._pipe: Connection | None = None
        self._logged: dict[tuple[str | None, str], float] = {}

    def start(self) -> None:
        self._stop.clear()
        self._start_worker()
        self._shipper = threading.Thread(target=self._ship, name="edgefleet-ingest", daemon=True)
        self._shipper.start()
        self._transport.set_message_handler(self._receive)
        for channel in INGESTED:
            # The broker's server role allows exactly these filters (dynsec.server_acls).
            topic_filter = shared_subscription(channel) if self._shared else channel_filter(channel)
            self._transport.subscribe(topic_filter, qos=1, timeout=None)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, write what has arrived, then return."""
        self._transport.set_message_handler(None)
        self._stop.set()
        if self._shipper is not None:
            self._shipper.join(timeout)
            self._shipper = None
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    @property
    def worker_pid(self) -> int | None:
        """The worker process's pid (None on a thread), for CPU accounting."""
        pid = getattr(self._worker, "pid", None)
        return pid if isinstance(pid, int) else None

    def wait_idle(self, timeout: float) -> bool:
        """True once everything received so far is committed (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._arrived or self._in_flight:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def _receive(self, topic: str, payload: bytes, properties: MessageProperties) -> None:
        if len(self._arrived) >= self._queue_size:
            self._reject(Rejection("queue_full", None, "ingest queue is full"))
            self._transport.ack(properties.mid, properties.qos)
            return
        self._arrived.append((topic, payload, self._clock(), properties.mid, properties.qos))

    def _start_worker(self) -> None:
        if self._in_process:
            ours, theirs = multiprocessing.Pipe()
            thread = threading.Thread(
                target=worker.run,
                args=(theirs, self._database_url),
                name="edgefleet-ingest-worker",
                daemon=True,
            )
            thread.start()
            self._worker = thread
        else:
            # forkserver: no copy of this process's threads and locks, and after
            # the first start (which imports the worker once) restarts are cheap.
            context = multiprocessing.get_context("forkserver")
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker.run,
                args=(theirs, self._database_url),
                name="edgefleet-ingest-worker",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._worker = process
        if not ours.poll(START_TIMEOUT) or ours.recv() != "ready":
            raise RuntimeError("ingest worker did not start")
        self._pipe = ours

    def _take(self) -> list[_Arrival]:
        """Wait for the next batch: full, or as old as ``flush_seconds``, or the last one."""
        while not self._arrived:
            if self._stop.is_set():
                return []
            time.sleep(POLL_SECONDS)
        deadline = time.monotonic() + self._flush_seconds
        while (
            len(self._arrived) < self._batch_size
            and time.monotonic() < deadline
            and not self._stop.is_set()
        ):
            time.sleep(POLL_SECONDS)
        count = min(len(self._arrived), self._batch_size)
        self._in_flight = count  # before taking: wait_idle must never see both empty
        return [self._arrived.popleft() for _ in range(count)]

    def _ship(self) -> None:
        while True:
            taken = self._take()
            final = self._stop.is_set() and not self._arrived
            if taken or final:
                messages: list[Received] = [(t, p, r) for t, p, r, _, _ in taken]
                self._deliver(Shipment(messages, final=final))
                for _, _, _, mid, qos in taken:
                    self._transport.ack(mid, qos)
            self._in_flight = 0
            self._metrics.queue_depth.set(len(self._arrived))
            if final:
                return

    def _deliver(self, shipment: Shipment) -> None:
        while True:
            pipe = self._pipe
            if pipe is None:
                raise RuntimeError("ingest is not started")
            try:
                pipe.send(shipment)
                report: Report = pipe.recv()
            except (EOFError, OSError):
                if shipment.final and not shipment.messages:
                    return
                logger.exception("ingest: the worker died; restarting it and resending")
                pipe.close()
                self._start_worker()
                continue
            self._record(report)
            return

    def _record(self, report: Report) -> None:
        for rejection in report.rejections:
            self._reject(rejection)
        for channel, count in report.received.items():
            self._metrics.messages_received.labels(channel).inc(count)
        result = report.written
        if result is None:
            if report.messages - len(report.rejections):
                self._metrics.messages_rejected.labels("write_failed").inc(
                    report.messages - len(report.rejections)
                )
            return
        if report.oldest is not None:
            self._metrics.ingest_lag.observe(self._clock() - report.oldest)
        self._metrics.batch_size.observe(report.messages - len(report.rejections))
        self._metrics.rows_written.labels("telemetry").inc(result.telemetry_inserted)
        self._metrics.rows_written.labels("events").inc(result.events_inserted)
        # A replay can land in the same batch as its original: the batch folded
        # those copies before the database could refuse them.
        self._metrics.duplicates.labels("telemetry").inc(
            result.telemetry_duplicates + report.telemetry_folded
        )
        self._metrics.duplicates.labels("events").inc(
            result.events_duplicates + report.events_folded
        )
        self._metrics.rows_written.labels("drift_windows").inc(result.drift_inserted)
        self._metrics.rows_written.labels("edge_samples").inc(result.samples_inserted)
        self._metrics.duplicates.labels("drift_windows").inc(
            result.drift_duplicates + report.drift_folded
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
