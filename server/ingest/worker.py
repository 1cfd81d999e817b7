"""The half of ingest that decodes and writes, in its own process.

Receiving a message costs paho about as much CPU as validating and storing
it costs us; in one process both share one GIL, and ingest could never
reach more than half of what the broker delivers. So the server process only
receives (see :mod:`edgefleet.server.ingest.service`) and ships raw
payloads here in batches over a pipe; this side routes them, writes each
batch in one transaction and answers with a :class:`Report` the server
turns into metrics and log lines. It owns no metrics and no logging policy
of its own, so everything an operator sees still comes from one place.

The same loop also runs on a thread (``run`` with a pipe end), which tests
and single-core boxes use.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from sqlalchemy.exc import SQLAlchemyError

from edgefleet.server.db.engine import make_engine
from edgefleet.server.drift.statistics import Calibration
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.ingest.directory import DeviceDirectory
from edgefleet.server.ingest.drift_rows import drift_rows
from edgefleet.server.ingest.pipeline import Rejection, Routed, route
from edgefleet.server.ingest.references import ReferenceDirectory
from edgefleet.server.ingest.writer import Batch, BatchWriter, WriteResult

logger = logging.getLogger(__name__)

RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)

Received = tuple[str, bytes, float]
"""(topic, payload, arrival time)"""


@dataclass(frozen=True, slots=True)
class Shipment:
    messages: list[Received]
    final: bool = False
    """The last one: write it, answer, and exit."""


@dataclass(slots=True)
class Report:
    """What one shipment became; the server process turns it into metrics and logs."""

    messages: int
    received: Counter[str] = field(default_factory=Counter)
    """Accepted messages by channel."""
    rejections: list[Rejection] = field(default_factory=list)
    written: WriteResult | None = None
    telemetry_folded: int = 0
    events_folded: int = 0
    drift_folded: int = 0
    oldest: float | None = None
    write_attempts: int = 0


@dataclass(slots=True)
class Context:
    """What routing reads besides the message: who may send, what drift is judged against."""

    known: DeviceDirectory
    references: ReferenceDirectory
    calibration: Calibration = field(default_factory=Calibration)


def _judge(
    routed: Routed, device_id: str, context: Context, received_at: float
) -> Rejection | None:
    """Fill in a drift message's rows, or say why it cannot be stored."""
    message = routed.drift
    if message is None:
        return None
    reference = context.references.get(message.model, message.version)
    if reference is None:
        return Rejection(
            "unknown_model_version",
            device_id,
            f"drift window {message.seq} is for {message.model} v{message.version}, "
            "which the registry does not have",
        )
    try:
        window, samples = drift_rows(
            device_id, message, reference, context.calibration, received_at=received_at
        )
    except InvalidInputError as err:
        return Rejection(err.reason, device_id, str(err))
    routed.drift_rows, routed.samples = [window], samples
    return None


def _collect(shipment: Shipment, context: Context) -> tuple[Batch, Report]:
    batch = Batch()
    report = Report(messages=len(shipment.messages))
    for topic, payload, received_at in shipment.messages:
        routed = route(topic, payload, received_at=received_at, known_devices=context.known)
        if not isinstance(routed, Rejection) and routed.drift is not None:
            device_id = topic.split("/")[3]
            routed = _judge(routed, device_id, context, received_at) or routed
        if isinstance(routed, Rejection):
            report.rejections.append(routed)
            continue
        report.received[topic.rsplit("/", 1)[-1]] += 1
        batch.add(routed, received_at)
    report.telemetry_folded = batch.telemetry_folded
    report.events_folded = batch.events_folded
    report.drift_folded = batch.drift_folded
    report.oldest = batch.oldest
    return batch, report


def _write(writer: BatchWriter, batch: Batch, report: Report, *, final: bool) -> None:
    """Retry until the batch lands: the broker already has our acknowledgement for it.

    At shutdown (``final``) there is no later; after three tries the batch is
    given up and the report says so (``written`` stays ``None``).
    """
    while True:
        report.write_attempts += 1
        try:
            report.written = writer.write(batch)
        except SQLAlchemyError:
            if final and report.write_attempts >= 3:
                logger.exception("ingest worker: giving up on %d messages", batch.messages)
                return
            pause = RETRY_SECONDS[min(report.write_attempts, len(RETRY_SECONDS)) - 1]
            logger.warning(
                "ingest worker: write failed (attempt %d), retrying in %.1fs",
                report.write_attempts,
                pause,
                exc_info=True,
            )
            time.sleep(pause)
        else:
            return


def run(connection: Connection, database_url: str) -> None:
    """Serve shipments from ``connection`` until the final one (or the pipe closes)."""
    engine = make_engine(database_url)
    try:
        context = Context(DeviceDirectory(engine, time.time), ReferenceDirectory(engine, time.time))
        writer = BatchWriter(engine)
        connection.send("ready")
        while True:
            try:
                shipment: Shipment = connection.recv()
            except EOFError:
                return
            batch, report = _collect(shipment, context)
            if batch.messages:
                _write(writer, batch, report, final=shipment.final)
            connection.send(report)
            if shipment.final:
                return
    finally:
        engine.dispose()
