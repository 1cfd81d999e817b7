"""The server side of the fleet benchmark: a real server, its devices, their model.

Imported lazily by :mod:`tests.bench.bench_fleet`: the simulator's host
processes are spawned and re-import that module, and need none of this
(FastAPI, the app, the test client).

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
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

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
    """The real server in this process on SQLite, with production ingest batching; rollouts
    ticked every second, so installing the model takes seconds, not minutes."""
    defaults = Settings.model_fields
    settings = server_settings(
        broker,
        f"sqlite:///{data_dir / 'edgefleet.db'}",
        data_dir,
        ingest_flush_seconds=defaults["ingest_flush_seconds"].default,
        rollout_tick_seconds=1.0,
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
    while True:
        status: dict[str, Any] = call(server, "GET", f"/rollouts/{rollout['id']}")
        if status["state"] in {"completed", "aborted"} or time.monotonic() > deadline:
            return status
        time.sleep(ROLLOUT_POLL_SECONDS)


def windows_between(server: Server, start: float, end: float) -> list[tuple[str, float, float]]:
    """Every stored telemetry window that ended in ``[start, end]``: (device, end, received)."""
    query = select(
        TelemetryRecord.device_id, TelemetryRecord.window_end, TelemetryRecord.received_at
    ).where(TelemetryRecord.window_end.between(start, end))
    with server.services.sessions() as session:
        return [(row[0], row[1], row[2]) for row in session.execute(query)]


def wait_ingested(server: Server, timeout: float) -> bool:
    """True once everything the server received is committed."""
    ingest = server.client.app.state.runtime.ingest  # type: ignore[attr-defined]
    return bool(ingest.wait_idle(timeout))


def ingest_worker_pid(server: Server) -> int | None:
    pid = server.client.app.state.runtime.ingest.worker_pid  # type: ignore[attr-defined]
    return pid if isinstance(pid, int) else None
