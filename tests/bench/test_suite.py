"""The suite: order of benches, stopping one past its limit, keeping each bench's latest run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.bench.suite import DEFAULT_TIMEOUT, Run, discover, record, stop
from tests.bench.summary import latest_runs


def test_discover_runs_a_new_bench_before_the_heaviest(tmp_path: Path) -> None:
    for name in ("ingest", "rollout", "drift", "tls", "agent", "quantization", "fleet"):
        (tmp_path / f"bench_{name}.py").touch()
    (tmp_path / "rollout_agents.py").touch()  # a helper, not a bench
    benches = discover(tmp_path)
    assert [b.name for b in benches] == [
        "ingest",
        "quantization",
        "agent",
        "drift",
        "fleet",
        "tls",
        "rollout",
    ]
    assert benches[5].timeout == DEFAULT_TIMEOUT
    assert benches[5].module == "tests.bench.bench_tls"


def test_discover_finds_the_benches_in_the_repository() -> None:
    names = [b.name for b in discover()]
    assert {"ingest", "quantization", "agent", "drift", "rollout"} <= set(names)
    assert names[-1] == "rollout"


def test_stop_interrupts_the_whole_session_first(tmp_path: Path) -> None:
    """SIGINT reaches a grandchild too, so a bench's broker or cluster is cleaned up.

    'ready' is printed inside the try: a SIGINT right after it must land in the handler."""
    marker = tmp_path / "interrupted"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    child.wait(5)\n"
        "    sys.exit(3)\n"
    )
    # The with closes the pipe even when an assertion fails: a pipe left for the garbage
    # collector raises its ResourceWarning in whichever later test it happens to run.
    with subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        started = time.monotonic()
        assert stop(process) == 3
    assert marker.exists()
    assert time.monotonic() - started < 10


def test_record_keeps_the_latest_run_of_each_bench(tmp_path: Path) -> None:
    def ran(bench: str, at: str, returncode: int = 0) -> Run:
        return Run(bench, f"tests.bench.bench_{bench}", at, 10.0, returncode, False)

    record(
        tmp_path,
        [ran("ingest", "2026-11-22T10:00:00+00:00"), ran("drift", "2026-11-22T10:01:00+00:00")],
    )
    record(tmp_path, [ran("drift", "2026-11-22T11:00:00+00:00", returncode=1)])
    runs = {r["bench"]: r for r in latest_runs(tmp_path)}
    assert runs["ingest"]["started_at"] == "2026-11-22T10:00:00+00:00"
    assert runs["drift"]["started_at"] == "2026-11-22T11:00:00+00:00"
    assert runs["drift"]["returncode"] == 1
