"""The simulated fleet's devices and groups on the server, made through its REST API.

Devices are named ``{prefix}-{n:05d}`` and their groups ``{prefix}-{group}``,
so a simulation never touches an operator's devices or groups. Each
device's agent config (it holds the device's broker password) is kept in
``DATA/devices/{id}.toml``, mode 0600, and a re-run reuses it instead of
provisioning again. The config runs with a few simulator settings laid over
it (:func:`sim_config`) and is never written back with them. ``edgefleet
sim`` and ``edgefleet demo`` both provision their fleets here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgefleet.server.atomic import make_dir, write_atomic
from edgefleet.server.cli.client import ApiClient, segment
from edgefleet.server.cli.errors import CliError
from edgefleet.server.errors import ConflictError, InvalidInputError
from edgefleet.server.sim.scenario import FleetSpec, assign_groups
from edgefleet.shared.agent_config import (
    AgentConfig,
    DriftSection,
    UpdateSection,
    parse_agent_config,
)
from edgefleet.shared.messages import NAME_RE

PROFILE = "sim"
PROGRESS_EVERY = 100
PAGE = 1000
"""Devices per page when listing, and members per group change (the API takes 10,000)."""
KEEPALIVE = 10
DRIFT = DriftSection(bytes_per_hour=256 * 1024 * 1024)
"""Every window's samples get through; the default budget is a metered uplink's."""
UPDATE = UpdateSection(probation_seconds=5.0)
"""A probation of seconds, not minutes: a scenario runs for minutes. The other rules
(error rate, latency ratio, minimum inferences) stay the agent's defaults."""
ATTEMPTS = 3
"""Asks per device when the broker is too busy to answer in time (a loaded machine):
the server rolls a failed provisioning back, so asking again is safe."""
RETRY_SECONDS = 2.0
"""The wait before the second ask; each further ask waits this much longer."""

_NAME = re.compile(NAME_RE)

Say = Callable[[str], None]


@dataclass(frozen=True)
class ProvisionedFleet:
    configs: dict[str, AgentConfig]
    """Each device's config as the server issued it."""
    groups: dict[str, tuple[str, ...]]
    """The scenario's groups and their devices."""
    prefix: str

    def server_group(self, group: str) -> str:
        return server_group(self.prefix, group)


def server_group(prefix: str, group: str) -> str:
    return f"{prefix}-{group}"


def device_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n:05d}" for n in range(1, count + 1)]


def check_names(prefix: str, fleet: FleetSpec) -> None:
    """Refuse a prefix that cannot name every device and group, before anything is made."""
    names = [
        device_ids(prefix, fleet.devices)[-1],
        *(server_group(prefix, g) for g in fleet.group_sizes()),
    ]
    for name in names:
        if _NAME.fullmatch(name) is None:
            raise InvalidInputError(
                f"--prefix {prefix!r} makes the name {name!r}, which the server refuses "
                "(lowercase letters, digits, '_', '.' and '-', up to 63 characters)"
            )


def sim_config(
    config: AgentConfig, *, data_dir: Path, window_seconds: float, update: UpdateSection = UPDATE
) -> AgentConfig:
    """``config`` as the simulator runs it: its own data directory and simulator timings."""
    return replace(
        config,
        device=replace(config.device, data_dir=str(data_dir)),
        broker=replace(config.broker, keepalive=KEEPALIVE),
        telemetry=replace(config.telemetry, window_seconds=window_seconds),
        drift=DRIFT,
        update=update,
    )


def provision(
    api: ApiClient, *, fleet: FleetSpec, prefix: str, data_dir: Path, say: Say
) -> ProvisionedFleet:
    check_names(prefix, fleet)
    ids = device_ids(prefix, fleet.devices)
    known = device_states(api, prefix)
    folder = data_dir / "devices"
    make_dir(folder, mode=0o700)
    configs: dict[str, AgentConfig] = {}
    made = 0
    for count, device_id in enumerate(ids, start=1):
        path = folder / f"{device_id}.toml"
        state = known.get(device_id)
        if path.exists() and state is not None and state["state"] != "revoked":
            configs[device_id] = parse_agent_config(path.read_text(encoding="utf-8"))
        else:
            configs[device_id] = _issue(api, device_id, state, path, say)
            made += 1
        if count % PROGRESS_EVERY == 0 or count == len(ids):
            say(f"devices: {count}/{len(ids)} ready ({made} provisioned or re-keyed)")
    groups = assign_groups(fleet, ids)
    _sync_groups(api, prefix, groups)
    return ProvisionedFleet(configs=configs, groups=groups, prefix=prefix)


def _pages(api: ApiClient, params: Mapping[str, str | int | None]) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        page = api.get("/devices", params={**params, "limit": PAGE, "offset": offset})
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


def device_states(
    api: ApiClient, prefix: str, state: str | None = None
) -> dict[str, dict[str, Any]]:
    """The server's record of every device whose id starts with ``{prefix}-``."""
    search = f"{prefix}-"
    found = _pages(api, {"search": search, "state": state})
    return {d["id"]: d for d in found if d["id"].startswith(search)}


def _issue(
    api: ApiClient, device_id: str, known: Mapping[str, Any] | None, file: Path, say: Say
) -> AgentConfig:
    """A new config from the server: a new device, or new credentials for a known one
    whose config is not here (another machine's run, a deleted data directory)."""
    body: dict[str, str] | None = None
    if known is None:
        path, body = "/devices", {"id": device_id, "profile": PROFILE}
    elif known["profile"] != PROFILE:
        raise ConflictError(
            f"device {device_id} exists on the server with profile {known['profile']!r}: "
            "it is not a simulated device; choose another --prefix"
        )
    else:
        path = f"/devices/{segment(device_id)}/credentials"
    bundle = _post_patiently(api, path, body, device_id=device_id, say=say)
    text = bundle["agent_config"]
    write_atomic(file, text.encode("utf-8"), mode=0o600)
    return parse_agent_config(text)


def _post_patiently(
    api: ApiClient, path: str, body: Mapping[str, str] | None, *, device_id: str, say: Say
) -> Any:
    """The answer to a provisioning POST, asked again while the broker is too busy."""
    for attempt in range(1, ATTEMPTS):
        try:
            return api.post(path, json=body)
        except CliError as err:
            if "broker" not in err.message:
                raise
            say(f"{device_id}: {err.message}; asking again")
            time.sleep(RETRY_SECONDS * attempt)
    return api.post(path, json=body)


def _sync_groups(api: ApiClient, prefix: str, groups: Mapping[str, Sequence[str]]) -> None:
    """Each group holds exactly its devices: this run's split replaces an earlier run's."""
    existing = {g["name"]: g for g in api.get("/groups")}
    ours = f"{prefix}-"
    for group, members in groups.items():
        name = server_group(prefix, group)
        found = existing.get(name)
        if found is None:
            api.post(
                "/groups", json={"name": name, "kind": "static", "members": list(members[:PAGE])}
            )
            have: set[str] = set(members[:PAGE])
        else:
            foreign = [m for m in found["members"] if not m.startswith(ours)]
            if found["kind"] != "static" or foreign:
                raise ConflictError(
                    f"group {name} exists on the server and is not the simulator's "
                    f"({found['kind']}, {len(foreign)} other devices); choose another --prefix"
                )
            have = set(found["members"])
        wanted = set(members)
        _change(api, name, "add", sorted(wanted - have))
        _change(api, name, "remove", sorted(have - wanted))


def _change(api: ApiClient, group: str, how: str, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), PAGE):
        api.post(f"/groups/{segment(group)}/members", json={how: list(ids[start : start + PAGE])})
