"""``make bench``: every benchmark, one after another, each bounded in time, then the summary.

    python -m tests.bench.suite [--quick] [BENCH ...]

Each ``tests/bench/bench_*.py`` runs as its own process (so one bench's
TensorFlow or broker never shares a process with the next) in a session of
its own: at its time limit the whole group gets SIGINT, so context managers
stop brokers and database clusters, then SIGKILL if it is still there. One
bench failing does not stop the others; the suite exits non-zero at the end
if any failed or timed out. A goal that is not met is a result, not a
failure: it shows as **no** in the table. Each bench's latest run (start,
wall time, exit status) is kept in ``suite.json``, whichever benches a run
chose, then :mod:`tests.bench.summary` writes ``summary.md``.

Benches run heaviest last (rollout starts a thousand MQTT clients); a bench
file not listed in :data:`BENCHES` (a new one) runs before it with
:data:`DEFAULT_TIMEOUT` and its own defaults. ``--quick`` runs each with
small parameters, into ``bench-results/quick/`` so its rougher numbers never
replace a full run's: it checks that everything runs, in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.results import ENV_DIRECTORY, REPO, results_dir
from tests.bench.summary import SUITE_FILE, latest_runs, write_summary

DEFAULT_TIMEOUT = 900
STOP_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Bench:
    name: str
    timeout: int
    """Seconds: about three times what a full run took on two busy cores."""
    quick: tuple[str, ...] = ()
    """Arguments for ``--quick``."""

    @property
    def module(self) -> str:
        return f"tests.bench.bench_{self.name}"


@dataclass(frozen=True)
class Run:
    bench: str
    module: str
    started_at: str
    seconds: float
    returncode: int
    timed_out: bool


BENCHES = (
    Bench("ingest", 600, ("--messages", "2000", "--repeat", "1")),
    Bench("quantization", 300, ("--epochs", "5", "--inferences", "500")),
    Bench("agent", 600, ("--calls", "300", "--rounds", "3")),
    Bench("drift", 1800, ("--sizes", "100", "234", "--null-windows", "500", "--trials", "100")),
    Bench("presence", 1200, ("--devices", "1000", "--days", "1")),
    Bench(
        "fleet",
        1800,  # its own --budget-seconds is 1,200
        ("--sizes", "1000", "--warmup-seconds", "10", "--measure-seconds", "20"),
    ),
    Bench("rollout", 900, ("--devices", "200", "--repeat", "1")),
)
"""In running order. Full runs on two cores shared with other work took: ingest 2 min,
quantization 20 s, agent 1.5 min, drift 12 min, presence 5.5 min, rollout 3 min."""


def discover(directory: Path = REPO / "tests" / "bench") -> list[Bench]:
    """The listed benches that exist, with any unlisted ``bench_*.py`` before the last."""
    present = {p.stem.removeprefix("bench_") for p in directory.glob("bench_*.py")}
    listed = [b for b in BENCHES if b.name in present]
    unlisted = [Bench(n, DEFAULT_TIMEOUT) for n in sorted(present - {b.name for b in BENCHES})]
    return [*listed[:-1], *unlisted, *listed[-1:]]


def run_bench(bench: Bench, *, quick: bool, env: dict[str, str]) -> Run:
    arguments = bench.quick if quick else ()
    print(f"\n=== {bench.name}: {bench.module} {' '.join(arguments)} (limit {bench.timeout} s)")
    sys.stdout.flush()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603  # our interpreter, our module
        [sys.executable, "-m", bench.module, *arguments],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        returncode = process.wait(bench.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        returncode = stop(process)
    except KeyboardInterrupt:
        stop(process)
        raise
    seconds = time.monotonic() - started
    verdict = "timed out" if timed_out else f"exit {returncode}"
    print(f"=== {bench.name}: {verdict} after {seconds:.0f} s", flush=True)
    return Run(bench.name, bench.module, started_at, seconds, returncode, timed_out)


def stop(process: subprocess.Popen[Any]) -> int:
    """SIGINT to the bench's whole session (its brokers and clusters clean up), then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            return process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()


def record(directory: Path, runs: list[Run]) -> None:
    """These runs replace their benches' earlier ones in ``suite.json``; the others stay."""
    latest = {r["bench"]: r for r in latest_runs(directory)} | {r.bench: asdict(r) for r in runs}
    document = {"runs": list(latest.values())}
    (directory / SUITE_FILE).write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small parameters, results apart")
    parser.add_argument("benches", nargs="*", help="names (ingest, agent...); default: all")
    args = parser.parse_args(argv)
    available = discover()
    unknown = set(args.benches) - {b.name for b in available}
    if unknown:
        parser.error(f"no such bench: {', '.join(sorted(unknown))}")
    chosen = [b for b in available if not args.benches or b.name in args.benches]
    env = dict(os.environ)
    if args.quick and not env.get(ENV_DIRECTORY):
        env[ENV_DIRECTORY] = str(results_dir() / "quick")
    directory = Path(env.get(ENV_DIRECTORY) or results_dir())
    directory.mkdir(parents=True, exist_ok=True)
    total = sum(b.timeout for b in chosen)
    print(f"{len(chosen)} benches, at most {total // 60} min; results in {directory}")
    runs = [run_bench(b, quick=args.quick, env=env) for b in chosen]
    record(directory, runs)
    print()
    write_summary(directory)
    failed = [r.bench for r in runs if r.returncode != 0 or r.timed_out]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
