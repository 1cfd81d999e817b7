"""The fleet benchmark's parts around its ramp: the server, its devices, their model, and
what the simulator's hosts report.

Imported lazily by :mod:`tests.bench.bench_fleet`: the simulator's host
processes are spawned and re-import that module, and need none of this
(FastAPI, the app, the test client); loaded there, it would only swell the
hosts' resident memory, which the benchmark reports.

Devices are provisioned by the server's own service function
(:func:`edgefleet.server.devices.provision_device`: the row, the audit
record, the agent config bundle with a fresh random password), but their
broker accounts go into the dynamic-security plugin's file in one write,
followed by one broker restart, instead of one control request each:
Mosquitto 2.0 rewrites its whole JSON file after every change, so creating
accounts one by one costs time that grows with the square of the fleet
(tens of minutes for ten thousand). What ends up in the file is what the
control path would create: each device's own role with
:func:`edgefleet.server.dynsec.device_acls`, its client holding that one
role, the password hashed as the plugin hashes it.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from edgefleet.agent.telemetry import parse_rss
from edgefleet.server import devices, dynsec
from edgefleet.server.broker_accounts import PASSWORD_BYTES
from edgefleet.server.db.models import Role, TelemetryRecord
from edgefleet.server.settings import Settings
from edgefleet.shared.agent_config import (
    AgentConfig,
    DriftSection,
    TelemetrySection,
    UpdateSection,
    parse_agent_config,
)
from tests.bench.procstat import cpu_seconds
from tests.harness._system import ServiceAccount, write_private
from tests.harness.broker import MosquittoBroker
from tests.server.api.conftest import Server, running_server, server_settings

MODEL = "vibration"
PROFILE = "sim"
ACTOR = "bench-fleet"
DYNSEC_FILE = "dynamic-security.json"
ROLLOUT_POLL_SECONDS = 2.0

NO_DRIFT_UPLINK = DriftSection(bytes_per_hour=0)
"""No drift sketches: each agent sends exactly one telemetry message per window."""
QUICK_PROBATION = UpdateSection(probation_seconds=2.0, probation_min_inferences=0)
"""A new device says ``healthy`` two seconds after it installs the model, not five minutes."""
HOST_NAME = "edgefleet-sim-"
"""How :class:`~edgefleet.server.sim.fleet.HostedFleet` names its host processes."""
Reports = list[dict[str, Any]]
"""What ``HostedFleet.report()`` answers: one dict per host."""
INSTALL_ONLY: dict[str, Any] = {
    "waves": [{"percent": 100, "soak_seconds": 0}],
    "gates": {
        "max_error_rate_increase": None,
        "max_p95_latency_ratio": None,
        "max_output_psi": None,
    },
}
"""One wave, no soak, no gates: the rollout only installs the model."""


class BulkAccounts:
    """Broker accounts collected while devices are provisioned, written to the broker at once.

    Satisfies :class:`edgefleet.server.devices.DeviceAccounts`.
    """

    def __init__(self) -> None:
        self._passwords: dict[str, str] = {}

    def provision_device(self, device_id: str) -> str:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        self._passwords[device_id] = password
        return password

    def revoke_device(self, device_id: str) -> None:
        self._passwords.pop(device_id, None)

    def install(self, broker: MosquittoBroker) -> None:
        """Add every account to the plugin's file, then restart the broker so it loads them."""
        path = broker.directory / DYNSEC_FILE
        config = json.loads(path.read_text(encoding="utf-8"))
        for device_id, password in self._passwords.items():
            role = dynsec.device_role(device_id)
            stored = dynsec.hash_password(password)
            config["clients"].append(
                {
                    "username": device_id,
                    "password": stored.password,
                    "salt": stored.salt,
                    "iterations": stored.iterations,
                    "roles": [{"rolename": role}],
                }
            )
            created = dynsec.create_role(role, dynsec.device_acls(device_id))
            config["roles"].append({k: v for k, v in created.items() if k != "command"})
        write_private(path, json.dumps(config), ServiceAccount.for_root("mosquitto"))
        broker.restart()


@contextmanager
def fleet_server(broker: MosquittoBroker, data_dir: Path) -> Iterator[Server]:
    """The real server in this process on SQLite, with the production settings for ingest
    batching and the rollout tick (the test harness's are tuned for quick tests)."""
    defaults = Settings.model_fields
    settings = server_settings(
        broker,
        f"sqlite:///{data_dir / 'edgefleet.db'}",
        data_dir,
        ingest_flush_seconds=defaults["ingest_flush_seconds"].default,
    )
    with running_server(settings, names=ACTOR) as server:
        yield server


def provision(
    server: Server, broker: MosquittoBroker, ids: Sequence[str], agents_dir: Path
) -> list[AgentConfig]:
    """Every device in the registry and on the broker; each agent's config from its bundle,
    with its data directory under ``agents_dir``, 10 s windows, no drift uplink and a short
    probation. The broker restarts; this returns once the server is back on it."""
    services = server.services
    accounts = BulkAccounts()
    provisioning = devices.Provisioning(
        accounts=accounts,
        trust=services.signing,
        catalog=services.catalog,
        broker=services.broker_address,
    )
    configs = []
    with services.sessions() as session:
        for device_id in ids:
            made = devices.provision_device(
                session=session,
                spec=devices.DeviceSpec(device_id, PROFILE),
                provisioning=provisioning,
                actor=ACTOR,
                now=services.clock(),
            )
            config = parse_agent_config(made.bundle)
            configs.append(
                dataclasses.replace(
                    config,
                    device=dataclasses.replace(config.device, data_dir=str(agents_dir / device_id)),
                    telemetry=TelemetrySection(window_seconds=10.0),
                    drift=NO_DRIFT_UPLINK,
                    update=QUICK_PROBATION,
                )
            )
    accounts.install(broker)
    if not server.client.app.state.runtime.server.wait_connected(60):  # type: ignore[attr-defined]
        raise RuntimeError("the server did not reconnect after the broker restart")
    return configs


def call(server: Server, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
    response = server.client.request(
        method, f"/api/v1{path}", headers=server.headers(Role.ADMIN), **kw
    )
    if response.status_code != expect:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
    return response.json() if response.content else None


def register_model(server: Server, data: bytes) -> int:
    """Upload ``data`` as the fleet model's next version, approved; its number."""
    version = call(
        server,
        "POST",
        f"/models/{MODEL}/versions",
        expect=201,
        files={"file": ("model.tflite", data, "application/octet-stream")},
        data={"profiles": PROFILE, "variant": "float32"},
    )["version"]
    call(server, "PATCH", f"/models/{MODEL}/versions/{version}", json={"stage": "approved"})
    return int(version)


def install_model(
    server: Server, version: int, group: str, members: Sequence[str], timeout: float
) -> dict[str, Any]:
    """A static group of ``members`` and a one-wave rollout of ``version`` to it, waited on
    until it ends; its last status (``state`` is ``completed`` if it installed)."""
    call(
        server,
        "POST",
        "/groups",
        expect=201,
        json={"name": group, "kind": "static", "members": list(members)},
    )
    rollout = call(
        server,
        "POST",
        "/rollouts",
        expect=201,
        json={"group": group, "model": MODEL, "version": version, "policy": INSTALL_ONLY},
    )
    call(server, "POST", f"/rollouts/{rollout['id']}/start")
    deadline = time.monotonic() + timeout
    refused = 0
    while True:
        try:
            status: dict[str, Any] = call(server, "GET", f"/rollouts/{rollout['id']}")
        except OperationalError:
            # The API's own write (the token's last use) can time out on SQLite's lock
            # while the rollout's first tick writes thousands of rows: counted, asked again.
            refused += 1
            status = {"state": "unknown"}
        if status["state"] in {"completed", "aborted"} or time.monotonic() > deadline:
            return {**status, "status_requests_refused": refused}
        time.sleep(ROLLOUT_POLL_SECONDS)


class Window(NamedTuple):
    device_id: str
    seq: int
    end: float
    received_at: float


def windows_between(server: Server, start: float, end: float) -> list[Window]:
    """Every stored telemetry window that ended in ``[start, end]``."""
    record = TelemetryRecord
    query = select(record.device_id, record.seq, record.window_end, record.received_at).where(
        record.window_end.between(start, end)
    )
    with server.services.sessions() as session:
        return [Window(*row) for row in session.execute(query)]


def wait_ingested(server: Server, timeout: float) -> bool:
    """True once everything the server received is committed."""
    ingest = server.client.app.state.runtime.ingest  # type: ignore[attr-defined]
    return bool(ingest.wait_idle(timeout))


def server_cpu_seconds(server: Server) -> float:
    """This process (the server's threads: the bench's own mostly sleeps) and its ingest
    worker process."""
    own = sum(os.times()[:2])
    pid = server.client.app.state.runtime.ingest.worker_pid  # type: ignore[attr-defined]
    worker = cpu_seconds(pid) if isinstance(pid, int) else None
    return own + (worker or 0.0)


# -- what the hosts report ----------------------------------------------------------------


def rows(reports: Reports) -> list[dict[str, Any]]:
    return [row for report in reports for row in report["devices"]]


def count(reports: Reports, test: Callable[[dict[str, Any]], bool]) -> int:
    return sum(1 for row in rows(reports) if test(row))


def connected(reports: Reports) -> int:
    return count(reports, lambda row: bool(row["connected"]))


def changes(before: Reports, after: Reports) -> dict[str, float]:
    """What the hosts did between two reports: CPU seconds (all hosts), connections made
    (beyond the first would be reconnects), inferences run."""

    def hosts(reports: Reports, key: str) -> float:
        return float(sum(report[key] for report in reports))

    def devices(reports: Reports, key: str) -> float:
        return float(sum(row[key] for row in rows(reports)))

    return {
        "cpu_seconds": hosts(after, "cpu_seconds") - hosts(before, "cpu_seconds"),
        "connects": hosts(after, "connects") - hosts(before, "connects"),
        "inferences": devices(after, "inferences") - devices(before, "inferences"),
    }


@dataclass
class HostSamples:
    """What the hosts showed over the interval: step lag from their reports, memory and open
    files from /proc."""

    step_lags: list[float] = field(default_factory=list)
    rss: dict[int, int] = field(default_factory=dict)
    open_files: int = 0

    def take(self, reports: Reports) -> None:
        self.step_lags += [report["step_lag_p95"] for report in reports]
        for process in multiprocessing.active_children():
            pid = process.pid
            if pid is None or not process.name.startswith(HOST_NAME):
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                files = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue  # ended between the listing and the read
            self.rss[pid] = max(self.rss.get(pid, 0), parse_rss(status) or 0)
            self.open_files = max(self.open_files, files)

    def summary(self) -> dict[str, Any]:
        return {
            "host_step_lag_p95_seconds": {
                "max": max(self.step_lags),
                "median": statistics.median(self.step_lags),
            },
            "host_rss_bytes": {
                "max_per_host": max(self.rss.values()),
                "total": sum(self.rss.values()),
            },
            "host_open_files_max": self.open_files,
        }
