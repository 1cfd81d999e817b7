"""The two consumers a round measures, each in a process of its own so it can be frozen.

The parent starts one with :func:`consumer`, then for every backlog sends
``("expect", n, timeout)``; the child answers ``("armed",)`` and, once ``n``
more messages are taken and (for ingest) committed, ``("done", ok,
monotonic_time, user_cpu_seconds, system_cpu_seconds, rejected)``. CPU
time is ``os.times()``'s: every thread of the process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.server.db.engine import make_engine
from edgefleet.server.ingest.service import INGESTED, IngestService
from edgefleet.server.metrics import Metrics
from edgefleet.server.mqtt import MqttTransport
from edgefleet.shared.topics import Channel, channel_filter
from tests.bench.procstat import cpu_seconds

BATCH_MESSAGES = 500
"""The service's default ``batch_size`` (and ``Settings.ingest_batch_size``)."""
POLL_SECONDS = 0.005

Kind = str
"""``raw``, ``sqlite`` or ``postgresql``."""


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    kind: Kind
    host: str
    port: int
    username: str
    password: str
    db_url: str | None = None


class RawConsumer:
    """paho and nothing else: count, let paho acknowledge."""

    def __init__(self, spec: ConsumerSpec) -> None:
        self.count = 0
        self.target = 0
        self._done = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(spec.username, spec.password)
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(spec.host, spec.port, keepalive=30)
        self._client.loop_start()
        self._client.subscribe([(channel_filter(channel), 1) for channel in INGESTED])
        if not subscribed.wait(10):
            raise RuntimeError("raw consumer: no SUBACK")

    def _on_message(self, _c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        self.count += 1
        if self.count >= self.target:
            self._done.set()

    def wait(self, target: int, timeout: float) -> bool:
        self.target = target
        if self.count < target:
            self._done.clear()
        return self.count >= target or self._done.wait(timeout)

    def rejected(self) -> float:
        return 0.0

    def worker_cpu(self) -> float:
        return 0.0

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class IngestConsumer:
    """The server's ingest, composed as ``create_app`` composes it."""

    def __init__(self, spec: ConsumerSpec) -> None:
        assert spec.db_url is not None
        self._engine = make_engine(spec.db_url)
        self._metrics = Metrics()
        self._transport = MqttTransport(
            host=spec.host,
            port=spec.port,
            username=spec.username,
            password=spec.password,
            client_id=f"bench-ingest-{uuid.uuid4().hex[:8]}",
            manual_ack=True,  # as the app's ingest connection
        )
        self._transport.start()
        if not self._transport.wait_connected(10):
            raise RuntimeError("ingest consumer: not connected")
        self._ingest = IngestService(
            transport=self._transport,
            database_url=spec.db_url,
            clock=time.time,
            metrics=self._metrics,
            batch_size=BATCH_MESSAGES,
        )
        self._ingest.start()
        # start() does not wait for its SUBACKs; the broker answers in order, so this one does.
        self._transport.subscribe(channel_filter(Channel.TELEMETRY), qos=1, timeout=10)

    def _taken(self) -> float:
        registry = self._metrics.registry
        received = registry.get_sample_value(
            "edgefleet_ingest_messages_received_total", {"channel": "telemetry"}
        )
        return (received or 0.0) + self.rejected()

    def wait(self, target: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._taken() < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return self._ingest.wait_idle(max(0.0, deadline - time.monotonic()))

    def rejected(self) -> float:
        return sum(
            sample.value
            for family in self._metrics.messages_rejected.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    def worker_cpu(self) -> float:
        """CPU of the ingest worker process, which os.times() here does not see."""
        pid = self._ingest.worker_pid
        return (cpu_seconds(pid) or 0.0) if pid is not None else 0.0

    def close(self) -> None:
        self._ingest.stop()
        self._transport.stop()
        self._engine.dispose()


def consumer_main(spec: ConsumerSpec, conn: Connection) -> None:
    """Child process: set up, then for each ``("expect", n, timeout)`` wait for ``n`` more."""
    consumer = RawConsumer(spec) if spec.kind == "raw" else IngestConsumer(spec)
    conn.send(("ready",))
    target = 0
    while True:
        command = conn.recv()
        if command[0] == "stop":
            break
        _, count, timeout = command
        target += count
        before, worker_before = os.times(), consumer.worker_cpu()
        conn.send(("armed",))
        ok = consumer.wait(target, timeout)
        finished, after = time.monotonic(), os.times()
        user, system = after.user - before.user, after.system - before.system
        worker = consumer.worker_cpu() - worker_before
        conn.send(("done", ok, finished, user, system, worker, consumer.rejected()))
    consumer.close()


def freeze(pid: int, *, stop: bool) -> None:
    """SIGSTOP (and wait until the process is stopped) or SIGCONT."""
    os.kill(pid, signal.SIGSTOP if stop else signal.SIGCONT)
    deadline = time.monotonic() + 5
    while stop and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T":
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumer {pid} did not stop")
        time.sleep(0.001)


def answer(conn: Connection, want: str, timeout: float) -> tuple[Any, ...]:
    if not conn.poll(timeout):
        raise RuntimeError(f"consumer sent no {want!r} within {timeout} s")
    message: tuple[Any, ...] = conn.recv()
    if message[0] != want:
        raise RuntimeError(f"consumer sent {message!r}, expected {want!r}")
    return message


@contextmanager
def consumer(
    spec: ConsumerSpec,
) -> Iterator[tuple[multiprocessing.context.SpawnProcess, Connection]]:
    """A ready consumer process; stopped (killed if need be) on exit."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    # Not a daemon: the ingest consumer starts its worker process.
    process = context.Process(target=consumer_main, args=(spec, theirs))
    process.start()
    try:
        answer(ours, "ready", 60)
        yield process, ours
        ours.send(("stop",))
        process.join(30)
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
