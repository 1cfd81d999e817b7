"""The largest simulated fleet this machine holds with telemetry lag under a second.

    python -m tests.bench.bench_fleet [--sizes 1000 2000 5000 7500 10000] [--budget-seconds 1200]

Every agent is the real agent (:mod:`edgefleet.server.sim`: the agent's own
parts, stepped by a host process, thousands per host on one network thread)
with its own broker account and connection, sending one telemetry window
every 10 s (drift sketches off: exactly one message per window) and running
the real TFLite interpreter on the 4 -> 8 -> 3 test classifier at
``--inference-hz``. They talk to a real Mosquitto (the test harness's, as
the fleet's: dynamic security, one ACL role per device) and a real server
in this process (the app under the test client, SQLite on disk, its ingest
worker process); their data directories are on tmpfs (``/dev/shm``), since
each agent's outbox fsyncs every commit and a thousand disks are not here.

The fleet grows by ``--sizes``; at each size the hosts start afresh on the
same data directories, wait for every agent to connect, install the model on
the devices new at this size by a one-wave rollout, warm up, then measure
for ``--measure-seconds``. **Lag** is the server's ``received_at`` minus the
window's ``window_end`` (same machine clock), over every window that ended
in the interval; a size **holds** when its p95 lag is under 1 s, the
windows stored reach 95% of those expected (devices x interval / 10 s) and
the gaps in the devices' sequence numbers stay within that 5%. The ramp
stops at the first size that does not hold or does not come up, or when the
next size would not fit in ``--budget-seconds`` (judged from the last size's
time, scaled). Per size: lag p50/p95/max, windows expected, stored and
missing, CPU seconds of the hosts, the broker and the server over the
interval, resident memory and open files of the hosts, and how well the
simulator itself kept up: its hosts' step lag p95 (how late their timers
ran) and the inferences run against those due. A window's end is stamped
when it closes, so hosts running late do not show in the lag: they show
there, and the telemetry offered is still counted window by window.

Devices are provisioned by the server's own service function; their broker
accounts are written in one go (see :mod:`tests.bench.fleet_setup` for why).
Results go to ``bench-results/fleet.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from edgefleet.server.sim.fleet import HostedFleet, SimulatorError
from edgefleet.server.sim.orders import HostDevice, HostSpec
from tests.bench.machine import machine_info, print_machine
from tests.bench.procstat import cpu_seconds, mosquitto_pid
from tests.bench.results import REPO, Figure, write_results
from tests.harness.broker import MosquittoBroker
from tests.harness.models import build_tflite_models

if TYPE_CHECKING:
    from edgefleet.shared.agent_config import AgentConfig
    from tests.bench.fleet_setup import Reports
    from tests.server.api.conftest import Server

GOAL_AGENTS = 10_000
MAX_P95_LAG_SECONDS = 1.0
MIN_STORED_SHARE = 0.95
WINDOW_SECONDS = 10.0
AGENTS_PER_PROCESS = 2500
"""About 6 descriptors an agent against the hosts' 20,000 hard limit here."""
SHM = Path("/dev/shm")
SETUP = {
    "model": "4 -> 8 -> 3 float32 classifier (tests/harness/models.py)",
    "drift_sketches": "off (bytes_per_hour = 0)",
    "agent_data_dirs": "tmpfs (/dev/shm): each outbox fsyncs every commit",
    "database": "SQLite on disk; the server in this process, ingest in its worker process",
    "broker_accounts": (
        "one dynamic-security client and role per device, written to the plugin's file in one "
        "go, then one broker restart (tests/bench/fleet_setup.py)"
    ),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def nearest_rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Bench:
    """What every size shares: the server, the broker, the provisioned fleet, the model."""

    args: argparse.Namespace
    server: Server
    broker: MosquittoBroker
    configs: list[AgentConfig]
    version: int
    spec: HostSpec
    installed: int = 0
    """Devices (the first N) that got the model from an earlier size's rollout."""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the broker and the server (see :mod:`tests.bench.fleet_setup`)."""
        from tests.bench import fleet_setup

        pid = mosquitto_pid(self.broker)
        broker = (cpu_seconds(pid) or 0.0) if pid is not None else 0.0
        return {"broker": broker, "server": fleet_setup.server_cpu_seconds(self.server)}


def wait_reports(
    sim: HostedFleet, done: Callable[[Reports], bool], timeout: float, every: float = 2.0
) -> tuple[bool, Reports]:
    deadline = time.monotonic() + timeout
    while True:
        reports = sim.report()
        if done(reports) or time.monotonic() > deadline:
            return done(reports), reports
        time.sleep(every)


def run_size(bench: Bench, size: int) -> dict[str, Any]:
    """Start ``size`` agents, bring them up, measure, stop them; the size's row."""
    args = bench.args
    processes = max(args.min_processes, math.ceil(size / AGENTS_PER_PROCESS))
    devices = [
        HostDevice(config, group="fleet", offset=i * 7)
        for i, config in enumerate(bench.configs[:size])
    ]
    row: dict[str, Any] = {"size": size, "processes": processes}
    sim = HostedFleet(devices, bench.spec, processes=processes)
    started = time.monotonic()
    try:
        sim.start()
        row["boot_seconds"] = time.monotonic() - started
        say(f"  {size:,} agents booted in {processes} hosts in {row['boot_seconds']:.0f} s")
        if bring_up(bench, sim, size, row):
            measure(bench, sim, size, row)
    except (SimulatorError, RuntimeError, SQLAlchemyError) as err:
        # The fleet did not come up: the hosts, the API or the database gave up.
        row["failure"] = f"{type(err).__name__}: {str(err)[:500]}"
        sim.kill()
    else:
        stopping = time.monotonic()
        try:
            sim.stop()
        except SimulatorError as err:
            row["stop_failure"] = str(err)
            sim.kill()
        row["stop_seconds"] = time.monotonic() - stopping
    row["seconds"] = time.monotonic() - started
    return row


def bring_up(bench: Bench, sim: HostedFleet, size: int, row: dict[str, Any]) -> bool:
    """Every agent connected and the model on the devices new at this size; False (and the
    failure in ``row``) if not."""
    from tests.bench import fleet_setup

    args = bench.args
    started = time.monotonic()
    timeout = 60 + size * args.connect_seconds_per_agent
    up, reports = wait_reports(sim, lambda r: fleet_setup.connected(r) == size, timeout)
    row["connect_seconds"] = time.monotonic() - started
    if not up:
        connected = fleet_setup.connected(reports)
        row["failure"] = f"{connected:,} of {size:,} agents connected within {timeout:.0f} s"
        return False
    say(f"  all connected in {row['connect_seconds']:.0f} s")
    if bench.installed < size:
        started = time.monotonic()
        new = [c.device.id for c in bench.configs[bench.installed : size]]
        status = fleet_setup.install_model(
            bench.server, bench.version, f"fleet-{size}", new, 120 + len(new) * 0.05
        )
        row["install"] = {
            "devices": len(new),
            "rollout_state": status["state"],
            "status_requests_refused": status["status_requests_refused"],
            "seconds": time.monotonic() - started,
        }
        if status["state"] != "completed":
            row["failure"] = f"the model's rollout to {len(new):,} devices ended {status['state']}"
            return False
        bench.installed = size
        say(f"  model installed on {len(new):,} new devices in {row['install']['seconds']:.0f} s")

    def serving(reports: Reports) -> int:
        return fleet_setup.count(reports, lambda d: d["version"] == bench.version)

    _, reports = wait_reports(sim, lambda r: serving(r) == size, 60)
    row["serving"] = serving(reports)
    time.sleep(args.warmup_seconds)
    return True


def measure(bench: Bench, sim: HostedFleet, size: int, row: dict[str, Any]) -> None:
    from tests.bench import fleet_setup

    args = bench.args
    before, cpu_before = sim.report(), bench.cpu()
    start = time.time()
    end = start + args.measure_seconds
    after, hosts = before, fleet_setup.HostSamples()
    say(f"  measuring for {args.measure_seconds:.0f} s")
    while (left := end - time.time()) > 0:
        time.sleep(min(args.report_seconds, left))
        after = sim.report()
        hosts.take(after)
    end = time.time()
    cpu_after, done = bench.cpu(), fleet_setup.changes(before, after)
    row["cpu_seconds"] = {
        "hosts": done["cpu_seconds"],
        **{name: cpu_after[name] - cpu_before[name] for name in cpu_before},
    }
    row["interval_seconds"] = end - start
    row["connected_at_end"] = fleet_setup.connected(after)
    row["connections_made"] = done["connects"]
    row["inferences"] = {
        "expected": size * args.inference_hz * (end - start),
        "done": done["inferences"],
    }
    row.update(hosts.summary())
    row["load_average"] = list(os.getloadavg())
    time.sleep(args.grace_seconds)
    judge_windows(bench, size, start, end, row)


def judge_windows(bench: Bench, size: int, start: float, end: float, row: dict[str, Any]) -> None:
    """Windows that ended in ``[start, end]``: how many the server stored, how late it got them."""
    from tests.bench import fleet_setup

    row["ingest_idle"] = fleet_setup.wait_ingested(bench.server, 60)
    ids = {c.device.id for c in bench.configs[:size]}
    stored = [
        w for w in fleet_setup.windows_between(bench.server, start, end) if w.device_id in ids
    ]
    sequences: dict[str, list[int]] = {}
    for window in stored:
        sequences.setdefault(window.device_id, []).append(window.seq)
    row["windows"] = {
        "expected": size * (end - start) / WINDOW_SECONDS,
        "stored": len(stored),
        "missing_in_sequence": sum(max(s) - min(s) + 1 - len(s) for s in sequences.values()),
    }
    lags = [w.received_at - w.end for w in stored]
    if lags:
        row["lag_seconds"] = {
            "p50": nearest_rank(lags, 0.50),
            "p95": nearest_rank(lags, 0.95),
            "max": max(lags),
        }


def held(row: dict[str, Any]) -> bool:
    """No failure, p95 lag under the limit, and (almost) every window stored: as many as
    expected, and no more gaps in the devices' sequence numbers than the 5% allowed (a host
    running late closes windows in bunches, which could make up a count on its own)."""
    if "failure" in row or "lag_seconds" not in row:
        return False
    windows = row["windows"]
    allowed = (1 - MIN_STORED_SHARE) * windows["expected"]
    return bool(
        row["lag_seconds"]["p95"] < MAX_P95_LAG_SECONDS
        and windows["stored"] >= windows["expected"] - allowed
        and windows["missing_in_sequence"] <= allowed
    )


def ramp(bench: Bench, sizes: Sequence[int], started: float) -> str:
    """Run the sizes in order; why the ramp stopped."""
    budget = bench.args.budget_seconds
    for size in sizes:
        last = bench.steps[-1] if bench.steps else None
        projected = 0.0 if last is None else last["seconds"] * size / last["size"]
        elapsed = time.monotonic() - started
        if elapsed + projected > budget:
            return (
                f"budget spent: {elapsed:.0f} s used of {budget:.0f} s, and {size:,} agents "
                f"would take about {projected:.0f} s more (the last size's time, scaled)"
            )
        say(f"fleet of {size:,} agents")
        row = run_size(bench, size)
        row["held"] = held(row)
        bench.steps.append(row)
        say(f"  {summary_line(row)}")
        if not row["held"]:
            return f"{size:,} agents did not hold: {row.get('failure') or summary_line(row)}"
    return "every size held"


def summary_line(row: dict[str, Any]) -> str:
    if "lag_seconds" not in row:
        return str(row.get("failure", "no windows stored"))
    lag, windows, cpu = row["lag_seconds"], row["windows"], row["cpu_seconds"]
    inferences = row["inferences"]["done"] / row["inferences"]["expected"]
    return (
        f"lag p95 {lag['p95']:.3f} s (max {lag['max']:.2f} s); windows {windows['stored']:,} "
        f"of {windows['expected']:,.0f} ({windows['missing_in_sequence']:,} gaps); CPU s hosts "
        f"{cpu['hosts']:.0f}, broker {cpu['broker']:.0f}, server {cpu['server']:.0f}; host step "
        f"lag p95 max {row['host_step_lag_p95_seconds']['max']:.2f} s, {inferences:.0%} of the "
        f"inferences due; hosts' RSS {row['host_rss_bytes']['total'] / 2**20:,.0f} MiB"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.bench import fleet_setup

    started = time.monotonic()
    sizes = sorted(set(args.sizes))
    model = build_tflite_models()  # TensorFlow here; the hosts load only the TFLite runtime
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgefleet-fleet-")))
        agents = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="edgefleet-fleet-", dir=SHM))
        )
        np.savez(work / "rows.npz", x=model.representative)
        broker = stack.enter_context(MosquittoBroker(verbose_log=False))
        server = stack.enter_context(fleet_setup.fleet_server(broker, work / "server"))
        provisioning = time.monotonic()
        ids = [f"fleet-{i:05d}" for i in range(sizes[-1])]
        configs = fleet_setup.provision(server, broker, ids, agents)
        provision_seconds = time.monotonic() - provisioning
        say(f"provisioned {len(ids):,} devices in {provision_seconds:.0f} s")
        spec = HostSpec(
            devices=(),
            profile_toml=(REPO / "firmware_configs" / "sim.toml").read_text(),
            inference_hz=args.inference_hz,
            data=str(work / "rows.npz"),
            seed=1,
            step_seconds=args.step_seconds,
            log_level="ERROR",
        )
        version = fleet_setup.register_model(server, model.float32)
        bench = Bench(args, server, broker, configs, version, spec)
        stop_reason = ramp(bench, sizes, started)
    held_sizes = [row["size"] for row in bench.steps if row["held"]]
    return {
        "held": max(held_sizes, default=0),
        "stop_reason": stop_reason,
        "parameters": {
            **vars(args),
            "sizes": sizes,
            "window_seconds": WINDOW_SECONDS,
            "agents_per_process": AGENTS_PER_PROCESS,
        },
        "setup": SETUP,
        "provision_seconds": provision_seconds,
        "steps": bench.steps,
        "total_seconds": time.monotonic() - started,
    }


def figures(results: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"fleet: largest simulated fleet held with p95 telemetry lag < 1 s "
            f"÷ {GOAL_AGENTS:,} agents (1 window per 10 s each)",
            results["held"] / GOAL_AGENTS,
            goal=">= 1.0",
        ),
        Figure("fleet: largest simulated fleet held with p95 telemetry lag < 1 s", results["held"]),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 7500, 10_000])
    parser.add_argument("--budget-seconds", type=float, default=1200.0)
    parser.add_argument("--measure-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=20.0)
    parser.add_argument("--grace-seconds", type=float, default=10.0)
    parser.add_argument("--report-seconds", type=float, default=10.0)
    parser.add_argument("--inference-hz", type=float, default=0.2)
    parser.add_argument("--step-seconds", type=float, default=1.0, help="each agent's loop")
    parser.add_argument("--min-processes", type=int, default=2, help="simulator hosts")
    parser.add_argument("--connect-seconds-per-agent", type=float, default=0.02)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print_machine(machine)
    results = run(args)
    written = write_results("fleet", figures(results), results, machine=machine)
    for row in results["steps"]:
        verdict = "held" if row["held"] else "NOT held"
        print(f"{row['size']:>6,} agents: {verdict}; {summary_line(row)}")
    print(f"held: {results['held']:,} agents ({results['stop_reason']})")
    print(f"written to {written} in {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
