"""Resident memory of the agent against a bare interpreter (see :mod:`tests.bench.bench_agent`).

Each figure is read from ``/proc/<pid>/status`` of a separate process, so
nothing the benchmark itself loaded (TensorFlow, the test harness) counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.shared.manifest import Manifest
from tests.agent.e2e.harness import AgentProcess, Server, agent_config, short_dir, write_config
from tests.harness.broker import MosquittoBroker

MEMORY_SLACK = 20 * 2**20


BARE_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from edgefleet.agent.runtime import load_runtime
    interpreter = load_runtime().create(open(sys.argv[1], "rb").read(), threads=1, xnnpack=True)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    sample = np.zeros(detail["shape"], detail["dtype"])
    for _ in range(2000):
        interpreter.set_tensor(detail["index"], sample)
        interpreter.invoke()
        interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    print(open("/proc/self/status").read())
    """
)

PARTS_CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    import numpy as np
    from edgefleet.agent.inference import InferenceService
    from edgefleet.agent.local_api import LocalApi
    from edgefleet.agent.outbox import Outbox
    from edgefleet.agent.runtime import ModelRunner
    from edgefleet.agent.telemetry import SystemMonitor
    from edgefleet.shared import messages
    from edgefleet.shared.agent_config import InferenceSection
    from edgefleet.shared.manifest import Manifest

    model, manifest_file, workdir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    manifest = Manifest.from_signed(json.loads(manifest_file.read_text()))
    service = InferenceService(rng=np.random.default_rng(0))
    service.activate(ModelRunner.load(model, manifest, threads=1, xnnpack=True))
    api = LocalApi(service, InferenceSection(unix_socket=str(workdir / "api.sock")))
    api.start()
    outbox = Outbox.open(workdir / "outbox.db", max_bytes=64 * 2**20)
    monitor = SystemMonitor()
    inputs = np.random.default_rng(0).uniform(-1, 1, (2000, *service.active.runner.input_shape))
    for sample in inputs:
        service.predict(sample)
    seq = lambda channel: (lambda: outbox.next_seq(channel))
    windows = service.close_telemetry(now=1e9, system=monitor.read(), next_seq=seq("telemetry"))
    report = messages.Telemetry(sent_at=1e9, windows=tuple(windows))
    outbox.put("telemetry", messages.encode(report))
    for drift in service.close_drift(now=1e9, next_seq=seq("drift")):
        outbox.put("drift", messages.encode(drift))
    print(open("/proc/self/status").read())
    api.stop()
    """
)


def status_field(status: str, name: str, unit: int = 1024) -> int:
    """A field of ``/proc/<pid>/status``; sizes there are in kB."""
    for line in status.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * unit
    raise ValueError(f"{name} not in /proc status")


def child_status(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return done.stdout


def agent_process_status(model: bytes, manifest: Manifest, predictions: int) -> str:
    """The real agent: installs ``model`` through a real broker, serves, reports; its status."""
    with MosquittoBroker() as broker, short_dir() as directory:
        credentials = broker.add_device("bench-agent")
        config = agent_config(broker, credentials, directory / "data", directory / "api.sock")
        path = write_config(config, directory / "agent.toml")
        server = Server(broker, broker.client(broker.server_credentials), credentials.username)
        agent = AgentProcess(path, directory / "api.sock").start()
        try:
            agent.wait_api()
            server.install(manifest, model)
            inputs = np.random.default_rng(0).uniform(-1, 1, (predictions, 4))
            for row in inputs:
                status, body = agent.predict(row.tolist())
                if status != 200:
                    raise RuntimeError(f"agent answered {status}: {body}")
            deadline = time.monotonic() + 30
            while len(server.telemetry()) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert agent.process is not None
            return Path(f"/proc/{agent.process.pid}/status").read_text()
        finally:
            agent.stop()
            server.clear()


def memory(model: bytes, manifest: Manifest, model_path: Path, workdir: Path) -> dict[str, Any]:
    manifest_file = workdir / "manifest.json"
    manifest_file.write_text(json.dumps(manifest.to_signed()))
    bare = child_status(BARE_CHILD, str(model_path))
    parts = child_status(PARTS_CHILD, str(model_path), str(manifest_file), str(workdir))
    agent = agent_process_status(model, manifest, predictions=2000)
    bare_rss = status_field(bare, "VmRSS")
    limit = bare_rss + 2 * len(model) + MEMORY_SLACK
    agent_rss = status_field(agent, "VmRSS")
    result = {
        "model_bytes": len(model),
        "bare_interpreter_rss_bytes": bare_rss,
        "limit_bytes": limit,
        "agent_process_rss_bytes": agent_rss,
        "agent_process_peak_rss_bytes": status_field(agent, "VmHWM"),
        "agent_process_threads": status_field(agent, "Threads", unit=1),
        "agent_parts_only_rss_bytes": status_field(parts, "VmRSS"),
        "agent_over_bare_bytes": agent_rss - bare_rss,
        "meets_goal": agent_rss <= limit,
    }
    mib = 2**20
    print(
        f"RSS: bare {bare_rss / mib:.1f} MiB, agent process {agent_rss / mib:.1f} MiB "
        f"(parts only {result['agent_parts_only_rss_bytes'] / mib:.1f} MiB), "
        f"limit {limit / mib:.1f} MiB"
    )
    return result
