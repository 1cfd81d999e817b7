"""The README's demo, shortened (four devices, three epochs), as a user runs it: a process.

It starts its own Mosquitto, server and simulated fleet, so nothing of the
test session's broker or servers is shared; only the ports are chosen free.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness._system import free_loopback_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgefleet.server.cli import main; raise SystemExit(main())",
            "demo",
            "--data-dir",
            str(tmp_path / "demo"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


def test_the_demo_runs_the_whole_loop_unattended(tmp_path: Path) -> None:
    api, broker = free_loopback_port(), free_loopback_port()
    done = run_demo(
        tmp_path,
        "--devices",
        "4",
        "--epochs",
        "3",
        "--port",
        str(api),
        "--broker-port",
        str(broker),
        "--json",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("\n{") :])
    versions = report["versions"]
    assert versions["challenger"] == versions["champion"] + 1
    assert report["retraining"]["state"] == "promoted"
    # Site B (two of the four devices) runs the challenger, site A still the champion.
    assert report["devices"]["by_version"] == {
        f"v{versions['champion']}": 2,
        f"v{versions['challenger']}": 2,
    }, report["devices"]
    assert report["devices"]["connected"] == 4
    assert [r["state"] for r in report["rollouts"]] == ["completed", "completed"]
    for step in range(1, 12):
        assert f"[{step}/11]" in done.stdout


def test_a_busy_port_is_reported_with_its_fix_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_demo(tmp_path, "--port", str(port), "--broker-port", str(free_loopback_port()))
    assert done.returncode != 0
    assert f"port {port}" in done.stderr
    assert "--port" in done.stderr
    assert not (tmp_path / "demo").exists()
