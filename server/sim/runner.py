"""Plays a scenario against a running server: the fleet, its clock of events, the outcome.

In order: check what the scenario needs (refused before anything is made),
build its broken models, provision the devices and groups, start the
simulator hosts, wait until the server sees every device online, play the
events at their times from zero (one line each as it happens, a status
line every few seconds), let the fleet settle, stop it cleanly and sum up.
Faults go to the hosts as orders; rollouts go through the REST API as an
operator's would; a broker restart stops and starts the broker this
process runs. An event the server refuses is reported and the rest go on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgefleet.server.cli.client import ApiClient
from edgefleet.server.cli.errors import CliError
from edgefleet.server.errors import ConfigError, ServerError
from edgefleet.server.settings import Settings
from edgefleet.server.sim import bad_model, disks, operator
from edgefleet.server.sim.agenda import Action, Agenda
from edgefleet.server.sim.broker import LocalBroker
from edgefleet.server.sim.data import SYNTHETIC, load_rows
from edgefleet.server.sim.fleet import HostedFleet
from edgefleet.server.sim.orders import HostDevice, HostSpec
from edgefleet.server.sim.provision import (
    PROFILE,
    ProvisionedFleet,
    check_names,
    device_ids,
    device_states,
    provision,
    sim_config,
)
from edgefleet.server.sim.scenario import (
    BadModel,
    BrokerRestart,
    Event,
    Rollout,
    Scenario,
    assign_groups,
)
from edgefleet.server.sim.summary import device_rows, status_line, summarize, unsettled
from edgefleet.server.sim.timeline import Needs, fault_order, needs, targets
from edgefleet.shared.errors import EdgefleetError

ONLINE_SECONDS = 60.0
ONLINE_SECONDS_PER_DEVICE = 0.02
POLL_SECONDS = 1.0
ROW_STRIDE = 7
"""Neighbouring devices start this many rows apart in their data pool, not on the same row."""


class SimError(ServerError):
    reason = "sim_failed"


def default_processes(devices: int) -> int:
    """One host per 2,500 devices, at most four: the broker and server need cores too."""
    return min(4, max(1, devices // 2500 + 1))


def profile_toml() -> str:
    """The simulated devices' hardware profile, from the server's profile folder."""
    directory = (
        os.environ.get("EDGEFLEET_PROFILES_DIR") or Settings.model_fields["profiles_dir"].default
    )
    return (Path(directory) / f"{PROFILE}.toml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path
    prefix: str = "sim"
    processes: int | None = None
    settle: float = 60.0
    """Seconds to wait after the last event for devices and rollouts to come to rest."""
    status_every: float = 5.0
    latency_gate: float | None = 3.0
    """The rollouts' limit on the p95 latency ratio, None for no such gate. Not the server's
    1.5: simulated devices share cores with the broker, the server and each other, and a
    model of tens of microseconds measures several times slower while the fleet reconnects.
    A ``slow`` bad model is tens of times slower than such a model."""
    log_level: str = "ERROR"
    """The hosts' log: at WARNING, every agent of thousands says so when a connection drops."""


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        api: ApiClient,
        options: RunOptions,
        *,
        broker: LocalBroker | None = None,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self._api = api
        self._options = replace(options, data_dir=options.data_dir.resolve())
        self._broker = broker
        self._say = say
        self._clock = clock
        self._agenda = Agenda(say=say, expected=(CliError, EdgefleetError), clock=clock)
        self._operator = operator.Operator(
            api, scenario.fleet.model, latency_gate=self._options.latency_gate, say=say
        )
        self._fleet: HostedFleet | None = None
        self._provisioned: ProvisionedFleet | None = None

    @property
    def model(self) -> str:
        return self.scenario.fleet.model

    # -- before anything runs ---------------------------------------------------------------

    def check(self) -> Needs:
        """What the scenario needs, refused with the reason if this machine or server lacks it."""
        fleet = self.scenario.fleet
        check_names(self._options.prefix, fleet)
        ids = device_ids(self._options.prefix, fleet.devices)
        found = needs(self.scenario, ids, assign_groups(fleet, ids))
        if found.broker and self._broker is None:
            raise SimError(
                "the scenario restarts the broker (broker_restart): run it with --broker-dir, "
                "the directory of `edgefleet broker init`, so the simulator runs that broker"
            )
        if found.disks and not disks.can_mount():
            raise SimError(
                "the scenario fills disks (fill_disk): each target gets a small tmpfs of its "
                "own, and mounting one needs root"
            )
        if fleet.data != SYNTHETIC:
            load_rows(Path(fleet.data))
        if found.model:
            self._operator.check(
                [e.version for e in self.scenario.events if isinstance(e, Rollout) and e.version]
            )
        return found

    def _build_bad_models(self, flaws: tuple[str, ...]) -> None:
        if not flaws:
            return
        version = operator.latest_approved(self._api, self.model)
        inputs, outputs = bad_model.shapes(operator.manifest(self._api, self.model, version))
        self._say(f"building the broken models ({', '.join(flaws)}) shaped like v{version}")
        self._operator.bad_models = bad_model.build_all(flaws, inputs, outputs)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        found = self.check()
        self._build_bad_models(found.flaws)
        options = self._options
        fleet_spec = self.scenario.fleet
        self._provisioned = provision(
            self._api,
            fleet=fleet_spec,
            prefix=options.prefix,
            data_dir=options.data_dir,
            say=self._say,
        )
        mounted: dict[str, Path] = {}
        try:
            mounted = disks.mount(options.data_dir, found.disks)
            return self._run_fleet(mounted)
        finally:
            for problem in disks.unmount(mounted.values()):
                self._say(f"warning: {problem}")
            self._operator.retire_broken()

    def _run_fleet(self, mounted: dict[str, Path]) -> dict[str, Any]:
        options = self._options
        devices = self._host_devices(mounted)
        processes = options.processes or default_processes(len(devices))
        spec = HostSpec(
            devices=(),
            profile_toml=profile_toml(),
            inference_hz=self.scenario.fleet.inference_hz,
            data=self.scenario.fleet.data,
            seed=self.scenario.fleet.seed,
            log_level=options.log_level,
        )
        self._say(f"fleet: starting {len(devices)} agents in {processes} host process(es)")
        self._fleet = fleet = HostedFleet(devices, spec, processes=processes)
        try:
            fleet.start()
            self._wait_online()
            self._note_idle(fleet)
            self._play()
            live, settled = self._settle()
            self._say("fleet: stopping (each agent closes its last window and flushes)")
            stopped = fleet.stop()
        except BaseException:
            fleet.kill()
            raise
        return summarize(
            live,
            stopped,
            scenario=self.scenario.source,
            elapsed=self._agenda.elapsed(),
            settled=settled,
            rollouts=self._operator.outcomes(),
            failures=self._agenda.failures,
        )

    def _note_idle(self, fleet: HostedFleet) -> None:
        """A fresh fleet has no model until a rollout reaches it: no inferences, no drift."""
        idle = sum(1 for row in device_rows(fleet.report()) if row["version"] is None)
        if idle:
            self._say(
                f"fleet: {idle} device(s) run no model yet, so they infer nothing until a "
                "rollout reaches them (a rollout at 0s gives the whole fleet one)"
            )

    def _host_devices(self, mounted: dict[str, Path]) -> list[HostDevice]:
        provisioned = self._require_provisioned()
        window = self.scenario.fleet.window_seconds
        group_of = {d: group for group, ids in provisioned.groups.items() for d in ids}
        devices = []
        for index, (device_id, config) in enumerate(provisioned.configs.items()):
            disk = mounted.get(device_id)
            data_dir = (
                self._options.data_dir / "agents" / device_id
                if disk is None
                else disk / disks.AGENT_DIR
            )
            devices.append(
                HostDevice(
                    sim_config(config, data_dir=data_dir, window_seconds=window),
                    group=group_of[device_id],
                    offset=index * ROW_STRIDE,
                    disk=None if disk is None else str(disk),
                )
            )
        return devices

    def _require_provisioned(self) -> ProvisionedFleet:
        if self._provisioned is None:
            raise SimError("the fleet is not provisioned")
        return self._provisioned

    def _wait_online(self) -> None:
        provisioned = self._require_provisioned()
        wanted = set(provisioned.configs)
        limit = ONLINE_SECONDS + ONLINE_SECONDS_PER_DEVICE * len(wanted)
        deadline = self._clock() + limit
        shown = 0.0
        while True:
            online = wanted & set(device_states(self._api, provisioned.prefix, state="online"))
            if online == wanted:
                self._say(f"fleet: all {len(wanted)} devices online")
                return
            now = self._clock()
            if now > deadline:
                missing = ", ".join(sorted(wanted - online)[:5])
                raise SimError(
                    f"only {len(online)} of {len(wanted)} devices came online within "
                    f"{limit:.0f} s (not {missing}, ...): is the server connected to the "
                    "broker the device configs name?"
                )
            if now - shown >= self._options.status_every:
                self._say(f"fleet: {len(online)}/{len(wanted)} devices online")
                shown = now
            time.sleep(POLL_SECONDS)

    # -- the timeline ----------------------------------------------------------------------------

    def _play(self) -> None:
        provisioned = self._require_provisioned()
        ids = list(provisioned.configs)
        for index, event in enumerate(self.scenario.events):
            label = f"{event.kind}  {event.describe()}"
            self._agenda.at(event.at, label, self._action(index, event, ids))
        self._agenda.play(
            self.scenario.fleet.duration, every=self._options.status_every, tick=self._status
        )

    def _action(self, index: int, event: Event, ids: list[str]) -> Action:
        group = self._require_provisioned().server_group
        if isinstance(event, Rollout):
            return lambda: self._operator.roll_out(
                group(event.group), event.version, event.waves, event.soak
            )
        if isinstance(event, BadModel):
            return lambda: self._operator.roll_out_bad(
                group(event.group), event.flaw, event.waves, event.soak
            )
        if isinstance(event, BrokerRestart):
            return lambda: self._restart_broker(event)
        groups = self._require_provisioned().groups
        picked = targets(index, event, devices=ids, groups=groups, seed=self.scenario.fleet.seed)
        order = fault_order(event, picked)

        def fault() -> str:
            self._require_fleet().order(order)
            return f"ordered on {len(picked)} device(s)"

        return fault

    def _require_fleet(self) -> HostedFleet:
        if self._fleet is None:
            raise SimError("the fleet is not running")
        return self._fleet

    def _restart_broker(self, event: BrokerRestart) -> str:
        broker = self._broker
        if broker is None:  # check() refuses such a scenario without one
            raise ConfigError("no broker to restart")
        broker.stop()
        due = self._agenda.elapsed() + event.down_for
        self._agenda.at(due, "broker_restart  starting the broker again", _starter(broker))
        return f"broker stopped; starting again in {event.down_for:g} s"

    # -- the end ---------------------------------------------------------------------------------

    def _status(self, elapsed: float) -> None:
        self._say(status_line(elapsed, device_rows(self._require_fleet().report())))

    def _settle(self) -> tuple[list[dict[str, Any]], bool]:
        """Wait until every device is up, connected, at rest with an empty outbox and no
        rollout of this run moves; the last report, and whether it came to that."""
        fleet = self._require_fleet()
        deadline = self._clock() + self._options.settle
        next_status = self._clock() + self._options.status_every
        while True:
            reports = fleet.report()
            busy = unsettled(device_rows(reports))
            moving = self._operator.moving()
            if not busy and not moving:
                self._say("fleet: settled")
                return reports, True
            now = self._clock()
            if now >= deadline:
                waiting = [*busy, *(f"rollout {r.id} still {r.state}" for r in moving)]
                self._say(
                    f"fleet: not settled after {self._options.settle:g} s: {'; '.join(waiting)}"
                )
                return reports, False
            if now >= next_status:
                self._status(self._agenda.elapsed())
                next_status = now + self._options.status_every
            time.sleep(POLL_SECONDS)


def _starter(broker: LocalBroker) -> Action:
    def start() -> str:
        broker.start()
        return f"broker listening on {broker.host}:{broker.port}"

    return start
