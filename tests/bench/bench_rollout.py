"""Rollout delivery against limits measured in the same run (DESIGN.md, "Performance targets").

    python -m tests.bench.bench_rollout [--devices 1000] [--bytes 1048576]

One Mosquitto configured as the fleet's (dynamic security, the broker config
of :mod:`edgefleet.server.mosquitto`), N simulated agents: real paho MQTT v5
connections, each logged in with its own device account (so every delivery
passes the per-device ACL), spread over a few child processes
(:mod:`tests.bench.rollout_agents`), by default one paho loop thread per
connection: on 2 cores that finished deliveries sooner than one selector loop
per process (``--loop select``), which used less CPU but left it idle while
the broker waited on readers. Two measurements, each round run both
ways in alternating order, medians reported:

* **artifact delivery ratio** (goal <= 1.5). *Ours*: from the call of
  :func:`~edgefleet.server.rollouts.delivery.publish_artifact` (the store
  rehashes the file, chunks of the registry's 64 KiB go out retained at QoS 1
  through :class:`~edgefleet.server.mqtt.MqttTransport`) until every agent has
  reassembled the artifact with the agent's ``ChunkAssembler`` and checked its
  sha256. *Ideal*: artifact bytes x devices / the broker's fan-out rate, the
  rate measured with the same subscribers receiving the same number of
  messages of the same sizes, non-retained at QoS 1, published by a bare paho
  client (no edgefleet code); they only count bytes. The ideal time is then
  the time that stream took, and ratio = ours / ideal.
* **desired notifications per minute** (goal >= 10,000). *Ours*: from
  building every device's ``Desired`` (:func:`build_desired`, a real manifest
  of a real int8 TFLite model signed by the real signing service, inline)
  through :func:`publish_desired` until every agent, subscribed to its own
  ``desired`` topic only, holds the exact payload meant for it. *Limit*: the
  same payloads, already encoded, published retained at QoS 1 by a bare paho
  client.

The subscribers exist before each publish (devices online), and every round
uses a fresh artifact and fresh revisions, so nothing retained from an
earlier round counts. Device accounts are provisioned through the server's
own dynamic-security path before anything is timed; how long that takes is
reported. Broker, agents and publishers share the machine's cores, so the
agents' reassembly and hashing (CPU seconds per phase are reported, with the
broker's) compete with the broker's fan-out in *ours* but not in the ideal.
Results go to ``bench-results/rollout.json`` (:mod:`tests.bench.results`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.keys import init_keys
from edgefleet.server.mqtt import MAX_INFLIGHT, MqttTransport
from edgefleet.server.registry import CHUNK_BYTES
from edgefleet.server.rollouts import delivery
from edgefleet.server.signing import SigningService, TrustBundle
from edgefleet.server.tflite_model import build_manifest
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import Deployment, Desired, encode
from edgefleet.shared.topics import Channel, artifact_topic, device_topic
from tests.bench import rollout_agents
from tests.bench.machine import machine_info, print_machine
from tests.bench.procstat import cpu_seconds, mosquitto_pid
from tests.bench.results import Figure, write_results
from tests.bench.rollout_agents import AgentsSpec, Expectation, LoopMode, Subscription
from tests.harness.broker import Credentials, MosquittoBroker
from tests.harness.models import build_tflite_models

GOAL_DELIVERY_RATIO = 1.5
GOAL_DESIRED_PER_MINUTE = 10_000
PHASE_TIMEOUT = 120.0
Message = tuple[str, bytes, bool]


# --- the simulated agents ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Timing:
    seconds: float
    agents_cpu_seconds: float
    """User + system seconds of every agent process from arming to done."""
    broker_cpu_seconds: float | None


class Fleet:
    """The child processes of simulated agents, driven phase by phase."""

    def __init__(
        self, broker: MosquittoBroker, accounts: Sequence[Credentials], processes: int, loop: str
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._broker_pid = mosquitto_pid(broker)
        self._children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for part in range(processes):
            mine = tuple((c.username, c.password) for c in accounts[part::processes])
            ours, theirs = context.Pipe()
            spec = AgentsSpec(broker.host, broker.port, mine, LoopMode(loop))
            process = context.Process(target=rollout_agents.main, args=(theirs, spec), daemon=True)
            process.start()
            self._children.append((process, ours))
        self.connect_seconds = max(
            float(self._answer(conn, "ready")[1]) for _, conn in self._children
        )

    def _broadcast(self, command: tuple[Any, ...], answer: str) -> list[tuple[Any, ...]]:
        for _, conn in self._children:
            conn.send(command)
        return [self._answer(conn, answer) for _, conn in self._children]

    @staticmethod
    def _answer(conn: Connection, expected: str, timeout: float = PHASE_TIMEOUT) -> tuple[Any, ...]:
        if not conn.poll(timeout):
            raise RuntimeError(f"no {expected!r} from an agent process within {timeout} s")
        answer: tuple[Any, ...] = conn.recv()
        if answer[0] != expected:
            raise RuntimeError(f"agent process answered {answer!r}, not {expected!r}")
        return answer

    def subscribe(self, kind: Subscription, arg: str | None = None) -> None:
        self._broadcast(("subscribe", kind.value, arg), "subscribed")

    def unsubscribe(self, sha256: str) -> None:
        self._broadcast(("unsubscribe", sha256), "unsubscribed")

    def timed(self, expect: Expectation, publish: Callable[[], object]) -> Timing:
        """From just before ``publish()`` until the last agent holds what it expects."""
        self._broadcast(("expect", expect), "armed")
        broker_before = cpu_seconds(self._broker_pid) if self._broker_pid else None
        started = time.monotonic()
        publish()
        finished, agents_cpu = 0.0, 0.0
        for _, conn in self._children:
            _, last, incomplete, errors, cpu = self._answer(conn, "done", expect.timeout + 30)
            if incomplete or errors:
                raise RuntimeError(f"{incomplete} agents incomplete; errors: {errors}")
            finished, agents_cpu = max(finished, last), agents_cpu + cpu
        broker_after = cpu_seconds(self._broker_pid) if self._broker_pid else None
        broker_cpu = (
            None if broker_before is None or broker_after is None else broker_after - broker_before
        )
        return Timing(finished - started, agents_cpu, broker_cpu)

    def close(self) -> None:
        for process, conn in self._children:
            try:
                conn.send(("stop",))
                self._answer(conn, "stopped", 10)
            except (OSError, RuntimeError):
                process.kill()
            process.join(10)


class BarePublisher:
    """A plain paho client logged in as the server: the limit's publisher, no edgefleet code."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(*dataclasses.astuple(broker.server_credentials))
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def publish_all(self, messages: Sequence[Message], timeout: float = PHASE_TIMEOUT) -> None:
        infos = [self._client.publish(t, p, qos=1, retain=r) for t, p, r in messages]
        for info in infos:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise RuntimeError("the broker did not acknowledge the bare publish")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# --- the measurements ----------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    fleet: Fleet
    bare: BarePublisher
    server: MqttTransport
    store: ArtifactStore
    devices: list[str]
    artifact_bytes: int
    template: Manifest
    """A real model's manifest: its artifact spec is swapped for each round's artifact."""
    deployment: Deployment
    trust: TrustBundle


def artifact_round(setup: Setup, ours_first: bool) -> dict[str, float]:
    size = setup.artifact_bytes

    def bare() -> Timing:
        stream = os.urandom(32).hex()  # a topic no artifact has: nothing retained there
        data = os.urandom(size)
        messages = [
            (artifact_topic(stream, i), data[start : start + CHUNK_BYTES], False)
            for i, start in enumerate(range(0, size, CHUNK_BYTES))
        ]
        setup.fleet.subscribe(Subscription.ARTIFACT, stream)
        expect = Expectation(stream_sha256=stream, stream_bytes=size, timeout=PHASE_TIMEOUT)
        timing = setup.fleet.timed(expect, lambda: setup.bare.publish_all(messages))
        setup.fleet.unsubscribe(stream)
        return timing

    def ours() -> Timing:
        sha256 = setup.store.put(os.urandom(size)).sha256
        spec = setup.store.artifact_spec(sha256, CHUNK_BYTES)
        manifest = dataclasses.replace(setup.template, artifact=spec)
        setup.fleet.subscribe(Subscription.ARTIFACT, sha256)
        expect = Expectation(artifact=manifest, timeout=PHASE_TIMEOUT)
        timing = setup.fleet.timed(
            expect,
            lambda: delivery.publish_artifact(
                setup.server, setup.store, sha256, CHUNK_BYTES, timeout=PHASE_TIMEOUT
            ),
        )
        delivery.clear_artifact(setup.server, sha256, spec.chunk_count)
        setup.fleet.unsubscribe(sha256)
        setup.store.delete(sha256)
        return timing

    timings = both(ours, bare, ours_first)
    delivered = size * len(setup.devices)
    fanout = delivered / timings["bare"].seconds
    ideal = delivered / fanout  # the stream's own time: same bytes, same subscribers
    return {
        "ours_seconds": timings["ours"].seconds,
        "ideal_seconds": ideal,
        "fanout_bytes_per_second": fanout,
        "ratio": timings["ours"].seconds / ideal,
        **cpu_columns(timings),
    }


def both(
    ours: Callable[[], Timing], bare: Callable[[], Timing], ours_first: bool
) -> dict[str, Timing]:
    """Run both ways, in the order given, keyed ``ours`` and ``bare``."""
    if ours_first:
        return {"ours": ours(), "bare": bare()}
    return {"bare": bare(), "ours": ours()}


def cpu_columns(timings: dict[str, Timing]) -> dict[str, float]:
    columns: dict[str, float] = {}
    for name, timing in timings.items():
        columns[f"{name}_agents_cpu_seconds"] = timing.agents_cpu_seconds
        if timing.broker_cpu_seconds is not None:
            columns[f"{name}_broker_cpu_seconds"] = timing.broker_cpu_seconds
    return columns


def desired_round(setup: Setup, revision: int, ours_first: bool) -> dict[str, float]:
    def build(rev: int, now: float) -> dict[str, Desired]:
        return {
            d: delivery.build_desired(
                revision=rev, deployments=[setup.deployment], trust=setup.trust, now=now
            )
            for d in setup.devices
        }

    def expected(payloads: dict[str, bytes]) -> Expectation:
        digests = {d: hashlib.sha256(p).hexdigest() for d, p in payloads.items()}
        return Expectation(desired_sha256=digests, timeout=PHASE_TIMEOUT)

    def bare() -> Timing:
        payloads = {d: encode(m) for d, m in build(revision, time.time()).items()}
        messages = [(device_topic(d, Channel.DESIRED), p, True) for d, p in payloads.items()]
        return setup.fleet.timed(expected(payloads), lambda: setup.bare.publish_all(messages))

    def ours() -> Timing:
        now = time.time()
        payloads = {d: encode(m) for d, m in build(revision + 1, now).items()}
        return setup.fleet.timed(
            expected(payloads),  # the same bytes again: encoding is canonical
            lambda: delivery.publish_desired(
                setup.server, build(revision + 1, now), timeout=PHASE_TIMEOUT
            ),
        )

    timings = both(ours, bare, ours_first)
    count = len(setup.devices)
    return {
        "ours_seconds": timings["ours"].seconds,
        "bare_seconds": timings["bare"].seconds,
        "ours_per_minute": count / timings["ours"].seconds * 60,
        "bare_per_minute": count / timings["bare"].seconds * 60,
        **cpu_columns(timings),
    }


# --- setup and report ----------------------------------------------------------------------------


def signed_deployment(keys_dir: Path) -> tuple[Manifest, Deployment, TrustBundle, int]:
    """A real int8 TFLite model's manifest, signed by the server's signing service."""
    now = int(time.time())
    init_keys(root_dir=keys_dir / "root", signing_dir=keys_dir / "signing", now=now - 60)
    signing = SigningService.load(keys_dir / "signing")
    data = build_tflite_models().int8
    store = ArtifactStore(keys_dir / "model")
    body = build_manifest(
        model="vibration",
        version=2,
        hardware_profile="sim",
        data=data,
        artifact=store.artifact_spec(store.put(data).sha256, CHUNK_BYTES),
        now=now,
        validity_days=30,
    )
    envelope = signing.sign_manifest(body)
    deployment = Deployment(model=body.model, manifest=envelope, rollout_id="bench-rollout")
    return body, deployment, signing.trust_bundle(), len(data)


def summarize(artifact: list[dict[str, float]], desired: list[dict[str, float]]) -> dict[str, Any]:
    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ratio = median(artifact, "ratio")
    per_minute = median(desired, "ours_per_minute")
    return {
        "artifact_delivery": {
            "ours_seconds": median(artifact, "ours_seconds"),
            "ideal_seconds": median(artifact, "ideal_seconds"),
            "fanout_megabytes_per_second": median(artifact, "fanout_bytes_per_second") / 1e6,
            "ratio": ratio,
            "meets_goal": ratio <= GOAL_DELIVERY_RATIO,
            **cpu_medians(artifact),
        },
        "desired_notifications": {
            "ours_per_minute": per_minute,
            "bare_per_minute": median(desired, "bare_per_minute"),
            "ratio_to_bare": per_minute / median(desired, "bare_per_minute"),
            "meets_goal": per_minute >= GOAL_DESIRED_PER_MINUTE,
            **cpu_medians(desired),
        },
    }


def cpu_medians(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rows[0] if k.endswith("_cpu_seconds")]
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=1024 * 1024, help="artifact size")
    parser.add_argument("--processes", type=int, default=4, help="agent processes")
    parser.add_argument(
        "--loop",
        choices=[m.value for m in LoopMode],
        default=LoopMode.THREADS.value,
        help="threads: paho's own loop thread per agent; select: one selector loop per process",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians reported")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    devices = [f"bench-{i:05d}" for i in range(args.devices)]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        template, deployment, trust, model_bytes = signed_deployment(Path(tmp) / "keys")
        broker = stack.enter_context(MosquittoBroker(verbose_log=False))
        started = time.monotonic()
        accounts = [broker.add_device(d) for d in devices]
        provision_seconds = time.monotonic() - started
        print(
            f"provisioned {len(devices)} device accounts in {provision_seconds:.1f} s", flush=True
        )
        fleet = Fleet(broker, accounts, args.processes, args.loop)
        stack.callback(fleet.close)
        print(f"{len(devices)} agents connected in {fleet.connect_seconds:.1f} s", flush=True)
        bare = BarePublisher(broker)
        stack.callback(bare.close)
        server = MqttTransport(
            host=broker.host,
            port=broker.port,
            username=broker.server_credentials.username,
            password=broker.server_credentials.password,
            client_id="edgefleet-bench-server",
        )
        server.start()
        stack.callback(server.stop)
        if not server.wait_connected(10):
            raise RuntimeError("the server transport did not connect")
        setup = Setup(
            fleet=fleet,
            bare=bare,
            server=server,
            store=ArtifactStore(Path(tmp) / "artifacts"),
            devices=devices,
            artifact_bytes=args.bytes,
            template=template,
            deployment=deployment,
            trust=trust,
        )
        artifact_rounds = []
        for index in range(args.repeat):
            result = artifact_round(setup, ours_first=index % 2 == 0)
            artifact_rounds.append(result)
            print(
                f"artifact round {index + 1}: ours {result['ours_seconds']:.2f} s, "
                f"ideal {result['ideal_seconds']:.2f} s "
                f"({result['fanout_bytes_per_second'] / 1e6:.0f} MB/s fan-out), "
                f"ratio {result['ratio']:.2f}; agents' CPU "
                f"{result['ours_agents_cpu_seconds']:.1f} s ours, "
                f"{result['bare_agents_cpu_seconds']:.1f} s bare",
                flush=True,
            )
        fleet.subscribe(Subscription.DESIRED)
        desired_rounds = []
        for index in range(args.repeat):
            result = desired_round(setup, revision=2 * index + 1, ours_first=index % 2 == 0)
            desired_rounds.append(result)
            print(
                f"desired round {index + 1}: ours {result['ours_per_minute']:,.0f}/min "
                f"({result['ours_seconds']:.2f} s), bare {result['bare_per_minute']:,.0f}/min",
                flush=True,
            )
        sample = delivery.build_desired(
            revision=1, deployments=[deployment], trust=trust, now=time.time()
        )
    return {
        "goals": {
            "artifact_delivery_ratio": GOAL_DELIVERY_RATIO,
            "desired_per_minute": GOAL_DESIRED_PER_MINUTE,
        },
        "parameters": {
            "devices": args.devices,
            "artifact_bytes": args.bytes,
            "chunk_bytes": CHUNK_BYTES,
            "agent_processes": args.processes,
            "agent_loop": args.loop,
            "repeat": args.repeat,
            "desired_payload_bytes": len(encode(sample)),
            "desired_model_bytes": model_bytes,
            "server_max_inflight": MAX_INFLIGHT,
        },
        "auth": (
            "one dynamic-security account and role per simulated device, provisioned through "
            "the server's BrokerAccounts; every delivery passes that device's ACL"
        ),
        "setup_seconds": {
            "provision_accounts": provision_seconds,
            "connect_agents": fleet.connect_seconds,
        },
        "summary": summarize(artifact_rounds, desired_rounds),
        "artifact_rounds": artifact_rounds,
        "desired_rounds": desired_rounds,
    }


def figures(results: dict[str, Any]) -> list[Figure]:
    parameters, summary = results["parameters"], results["summary"]
    fleet = f"{parameters['devices']:,} agents"
    desired = summary["desired_notifications"]
    return [
        Figure(
            f"rollout: {parameters['artifact_bytes'] / 2**20:g} MiB artifact to {fleet} "
            "÷ ideal (bytes × devices ÷ broker fan-out rate, bare paho stream)",
            summary["artifact_delivery"]["ratio"],
            goal=f"<= {GOAL_DELIVERY_RATIO}",
        ),
        Figure(
            f"rollout: desired-state notifications per minute, {fleet}",
            desired["ours_per_minute"],
            "/min",
            goal=f">= {GOAL_DESIRED_PER_MINUTE:,}",
        ),
        Figure(
            "rollout: bare paho publish of the same desired payloads, per minute",
            desired["bare_per_minute"],
            "/min",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print_machine(machine)
    started = time.monotonic()
    results = run(args)
    results["total_seconds"] = time.monotonic() - started
    written = write_results("rollout", figures(results), results, machine=machine)
    print(json.dumps(results["summary"], indent=2))
    print(f"written to {written} in {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
