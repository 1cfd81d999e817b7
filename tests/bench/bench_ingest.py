"""Telemetry ingest against limits measured in the same run (DESIGN.md, "Performance targets").

    python -m tests.bench.bench_ingest [--devices 20] [--messages 20000] [--windows-per-message 1]

What one run measures, on one Mosquitto broker configured as the fleet's:

* **raw**: a plain paho (v2 API, MQTT v5) client logged in as the server, in
  the server's share group, counting messages and doing nothing else;
* **ingest**: ``MqttTransport -> IngestService -> route() -> BatchWriter`` as
  the app composes them, until the last row is committed (``wait_idle``),
  on SQLite (file, WAL) and on PostgreSQL;
* **writer**: ``BatchWriter.write`` alone against raw ``sqlite3.executemany``
  and psycopg's ``executemany`` with the same statements, transactions and
  rows (:mod:`tests.bench.writer_vs_sqlite3`, :mod:`tests.bench.writer_vs_psycopg`).

How publishing is kept out of the measured rates: each consumer runs in its
own process; once it has subscribed (and digested a warm-up), it is frozen
with SIGSTOP, the whole backlog is published and acknowledged by the broker
(which queues it for the frozen subscriber), and the clock starts at
SIGCONT. A rate is the backlog over the time to drain it, so the publishers'
speed cannot cap either rate, and their CPU is not in either process.
CPU-seconds are the consumer process's own (``os.times()``, user + system,
across all its threads: paho's network thread, the shipper, the loop that
waits for the count) plus the ingest worker process's (decoding, SQLite
itself, the driver), read from /proc; PostgreSQL's server processes are
read separately from /proc, and so is the broker's. The ingest runs with the
service's defaults (batches of 500 messages, flushed after 0.5 s at most),
so the last, partial batch can add up to 0.5 s to a drain. PostgreSQL is the
test harness's cluster: fsync and synchronous_commit off. Results go to
``bench-results/ingest.json`` (:mod:`tests.bench.results`).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgefleet.shared.topics import Channel, device_topic
from tests.bench.consumers import BATCH_MESSAGES, ConsumerSpec, Kind, answer, consumer, freeze
from tests.bench.databases import Databases, stored_windows
from tests.bench.ingest_report import GOAL_RATIO, GOAL_WINDOWS_PER_CPU_SECOND, figures, table
from tests.bench.machine import machine_info, print_machine
from tests.bench.procstat import PostgresCpu, cpu_seconds, mosquitto_pid
from tests.bench.results import write_results
from tests.bench.writer_vs_psycopg import bench_writer_postgres
from tests.bench.writer_vs_sqlite3 import Message, bench_writer, routed_batches
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.postgres import PostgresCluster
from tests.harness.telemetry import payload, window

WARMUP_PER_DEVICE = 10
WARMUP_SEQ = 10**8
"""Warm-up windows start here, far from the measured ones."""
TIMEOUT = 300.0


# --- the devices ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backlog:
    messages: list[Message]
    """Devices interleaved, as a fleet sends."""
    windows: int


def make_backlog(
    rng: random.Random, devices: list[str], messages: int, per_message: int, first_seq: int
) -> Backlog:
    sent: list[Message] = []
    next_seq = dict.fromkeys(devices, first_seq)
    for index in range(messages):
        device_id = devices[index % len(devices)]
        seq = next_seq[device_id]
        next_seq[device_id] = seq + per_message
        body = payload([window(rng, s) for s in range(seq, seq + per_message)])
        sent.append((device_id, device_topic(device_id, Channel.TELEMETRY), body))
    return Backlog(sent, messages * per_message)


class Fleet:
    """One connected paho client per device, publishing at QoS 1 with their own credentials."""

    def __init__(self, broker: MosquittoBroker, credentials: dict[str, Credentials]) -> None:
        self._clients = {device_id: broker.client(c) for device_id, c in credentials.items()}

    def publish(self, backlog: Backlog, timeout: float = TIMEOUT) -> float:
        """Publish everything and wait for every PUBACK; return the seconds it took."""
        started = time.monotonic()
        infos = [
            self._clients[device_id].publish(topic, body, qos=1)
            for device_id, topic, body in backlog.messages
        ]
        for info in infos:
            info.wait_for_publish(max(0.0, started + timeout - time.monotonic()))
            if not info.is_published():
                raise RuntimeError("the broker did not acknowledge the backlog in time")
        return time.monotonic() - started

    def close(self) -> None:
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()


# --- one measured round -------------------------------------------------------------------------


@dataclass
class Round:
    kind: Kind
    messages: int
    windows: int
    drain_seconds: float
    publish_seconds: float
    consumer_user_seconds: float
    consumer_system_seconds: float
    worker_cpu_seconds: float
    """The ingest worker process's user + system time (0 for raw)."""
    broker_cpu_seconds: float | None
    postgres_cpu_seconds: float | None = None

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.drain_seconds

    @property
    def consumer_cpu_seconds(self) -> float:
        return self.consumer_user_seconds + self.consumer_system_seconds + self.worker_cpu_seconds

    @property
    def windows_per_cpu_second(self) -> float:
        return self.windows / self.consumer_cpu_seconds


def measure(
    spec: ConsumerSpec,
    fleet: Fleet,
    warmup: Backlog,
    backlog: Backlog,
    broker_pid: int | None,
    postgres: PostgresCpu | None,
) -> Round:
    with consumer(spec) as (process, conn):
        assert process.pid is not None
        conn.send(("expect", len(warmup.messages), 60.0))
        answer(conn, "armed", 10)
        fleet.publish(warmup)
        _, ok, *_ = answer(conn, "done", 90)
        if not ok:
            raise RuntimeError(f"{spec.kind}: the warm-up did not arrive")

        conn.send(("expect", len(backlog.messages), TIMEOUT))
        answer(conn, "armed", 10)
        freeze(process.pid, stop=True)
        try:
            publish_seconds = fleet.publish(backlog)
            broker_cpu = None if broker_pid is None else cpu_seconds(broker_pid)
            pg_before = postgres.sample() if postgres is not None else {}
            started = time.monotonic()
        finally:
            freeze(process.pid, stop=False)
        _, ok, finished, user, system, worker, rejected = answer(conn, "done", TIMEOUT + 10)
        broker_after = None if broker_pid is None else cpu_seconds(broker_pid)
        pg_after = postgres.sample() if postgres is not None else {}
    if not ok or rejected:
        raise RuntimeError(f"{spec.kind}: drain incomplete (ok={ok}, rejected={rejected})")
    return Round(
        kind=spec.kind,
        messages=len(backlog.messages),
        windows=backlog.windows,
        drain_seconds=finished - started,
        publish_seconds=publish_seconds,
        consumer_user_seconds=user,
        consumer_system_seconds=system,
        worker_cpu_seconds=worker,
        broker_cpu_seconds=(
            None if broker_cpu is None or broker_after is None else broker_after - broker_cpu
        ),
        postgres_cpu_seconds=None if postgres is None else PostgresCpu.used(pg_before, pg_after),
    )


# --- report ---------------------------------------------------------------------------------------


def summarize(rounds: list[Round]) -> dict[str, Any]:
    by_kind: dict[Kind, list[Round]] = {}
    for r in rounds:
        by_kind.setdefault(r.kind, []).append(r)
    summary: dict[str, Any] = {}
    for kind, runs in by_kind.items():
        entry: dict[str, Any] = {
            "messages_per_second": statistics.median(r.messages_per_second for r in runs),
            "windows_per_second": statistics.median(r.windows / r.drain_seconds for r in runs),
            "windows_per_consumer_cpu_second": statistics.median(
                r.windows_per_cpu_second for r in runs
            ),
            "consumer_cpu_us_per_message": statistics.median(
                1e6 * r.consumer_cpu_seconds / r.messages for r in runs
            ),
            "consumer_system_cpu_share": statistics.median(
                r.consumer_system_seconds / r.consumer_cpu_seconds for r in runs
            ),
            "publish_messages_per_second": statistics.median(
                r.messages / r.publish_seconds for r in runs
            ),
        }
        pg = [r for r in runs if r.postgres_cpu_seconds is not None]
        if pg:
            entry["windows_per_cpu_second_with_postgres"] = statistics.median(
                r.windows / (r.consumer_cpu_seconds + (r.postgres_cpu_seconds or 0.0)) for r in pg
            )
        summary[kind] = entry
    raw = summary["raw"]["messages_per_second"]
    for kind in ("sqlite", "postgresql"):
        if kind in summary:
            summary[kind]["ratio_to_raw"] = summary[kind]["messages_per_second"] / raw
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--messages", type=int, default=20_000, help="backlog per round")
    parser.add_argument("--windows-per-message", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per path; medians reported")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)  # noqa: S311  # reproducible payloads, not secrets
    devices = [f"bench-{i:03d}" for i in range(args.devices)]
    kinds = ["raw", "sqlite"] + ([] if args.no_postgres else ["postgresql"])
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        broker = stack.enter_context(MosquittoBroker(verbose_log=False))
        cluster = None if args.no_postgres else stack.enter_context(PostgresCluster())
        credentials = {device_id: broker.add_device(device_id) for device_id in devices}
        backlog = make_backlog(rng, devices, args.messages, args.windows_per_message, 0)
        warmup = make_backlog(
            rng, devices, WARMUP_PER_DEVICE * len(devices), args.windows_per_message, WARMUP_SEQ
        )
        fleet = Fleet(broker, credentials)
        stack.callback(fleet.close)
        databases = Databases(Path(tmp), devices, cluster)
        server = broker.server_credentials
        broker_pid = mosquitto_pid(broker)
        rounds: list[Round] = []
        for repeat in range(args.repeat):
            for kind in kinds:
                with ExitStack() as round_stack:
                    url = (
                        None if kind == "raw" else round_stack.enter_context(databases.fresh(kind))
                    )
                    postgres = None
                    if kind == "postgresql":
                        assert url is not None
                        postgres = PostgresCpu(url)
                        round_stack.callback(postgres.close)
                    spec = ConsumerSpec(
                        kind, broker.host, broker.port, server.username, server.password, url
                    )
                    result = measure(spec, fleet, warmup, backlog, broker_pid, postgres)
                    if url is not None:
                        stored = stored_windows(url)
                        expected = backlog.windows + warmup.windows
                        if stored != expected:
                            raise RuntimeError(f"{kind}: {stored} rows stored, not {expected}")
                    rounds.append(result)
                    print(
                        f"round {repeat + 1}/{args.repeat} {kind:>10}: "
                        f"{result.messages_per_second:>8,.0f} msg/s, "
                        f"{result.windows_per_cpu_second:>8,.0f} windows/CPU-s, "
                        f"published at {result.messages / result.publish_seconds:,.0f} msg/s",
                        flush=True,
                    )
        batches = routed_batches(backlog.messages, set(devices))
        writer = bench_writer(databases, batches, args.repeat)
        writer_postgres = (
            None if cluster is None else bench_writer_postgres(databases, batches, args.repeat)
        )
    summary = summarize(rounds)
    return {
        "goals": {
            "ingest_ratio_to_raw": GOAL_RATIO,
            "windows_per_cpu_second": GOAL_WINDOWS_PER_CPU_SECOND,
            "writer_ratio_to_executemany": GOAL_RATIO,
        },
        "parameters": {
            "devices": args.devices,
            "messages": args.messages,
            "windows_per_message": args.windows_per_message,
            "payload_bytes_mean": statistics.mean(len(m[2]) for m in backlog.messages),
            "repeat": args.repeat,
            "batch_messages": BATCH_MESSAGES,
        },
        "summary": summary,
        "writer": writer,
        "writer_postgresql": writer_postgres,
        "rounds": [asdict(r) for r in rounds],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print_machine(machine)
    results = run(args)
    written = write_results("ingest", figures(results), results, machine=machine)
    print()
    print(table(results["summary"], results["writer"], results["writer_postgresql"]))
    print(f"\nwritten to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
