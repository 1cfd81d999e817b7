"""``edgefleet sim``: play a fault scenario with a simulated fleet against the server."""

from __future__ import annotations

import json
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, open_api

if TYPE_CHECKING:
    from edgefleet.server.sim.broker import LocalBroker
    from edgefleet.server.sim.scenario import Scenario

HELP = (
    """Play a scenario: provision a simulated fleet, run real agents against the broker,
inject its faults and rollouts on the clock, then print what the fleet ended with.

\b
The scenario file (TOML) names the fleet (devices, groups, model, data) and
timed events: drop_connections, broker_restart, slow_link, power_cut,
corrupt_chunk, fill_disk, drift, rollout and bad_model. Devices are named
PREFIX-00001... and their groups PREFIX-GROUP; their agent configs are kept in
DATA_DIR/devices and reused by the next run. A broker_restart needs
--broker-dir: the simulator then runs that broker itself (stop any other on
its port first) and stops it at the end. fill_disk needs root (each target
gets a 16 MiB tmpfs). The exit code is 1 when an event failed or the fleet
did not come to rest within --settle seconds.
"""
    + CONNECTION_HELP
    + """
\b
Example:
  edgefleet sim --scenario deploy/scenarios/smoke.toml
  edgefleet sim --scenario deploy/scenarios/chaos.toml --broker-dir .edgefleet/broker --json
  edgefleet sim --scenario my.toml --dry-run
"""
)


@click.command("sim", help=HELP, short_help="Play a fault scenario with a simulated fleet.")
@click.option(
    "--scenario",
    "scenario_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The scenario file (TOML).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("edgefleet-sim"),
    show_default=True,
    help="Device configs (they hold passwords: kept 0600) and the agents' data directories.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    help="Simulator processes (default: one per 2,500 devices, at most 4).",
)
@click.option(
    "--broker-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="An `edgefleet broker init` directory: the simulator runs (and restarts) its broker.",
)
@click.option("--prefix", default="sim", show_default=True, help="Device and group name prefix.")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait after the last event for devices and rollouts to come to rest.",
)
@click.option(
    "--latency-gate",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="The rollouts' limit on the new version's p95 latency over the old one's; 0 for none "
    "(the server's default of 1.5 trips on simulated devices, which share their cores).",
)
@click.option("--dry-run", is_flag=True, help="Check the file and list its events; run nothing.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON (progress on stderr)."
)
@connection_options
def sim(
    scenario_file: Path,
    data_dir: Path,
    processes: int | None,
    broker_dir: Path | None,
    prefix: str,
    settle: float,
    latency_gate: float,
    dry_run: bool,
    as_json: bool,
) -> None:
    # The simulator (and its parser's numpy) load only when this command runs.
    from edgefleet.server.sim.runner import Runner, RunOptions
    from edgefleet.server.sim.scenario import load_scenario
    from edgefleet.server.sim.summary import render

    scenario = load_scenario(scenario_file)
    if dry_run:
        click.echo(_described(scenario, prefix))
        return
    api = open_api()
    options = RunOptions(
        data_dir=data_dir,
        prefix=prefix,
        processes=processes,
        settle=settle,
        latency_gate=latency_gate or None,
    )

    def say(line: str) -> None:
        click.echo(line, err=as_json)

    with ExitStack() as stack:
        broker = None
        if broker_dir is not None:
            broker = _broker(broker_dir, data_dir)
            broker.start()
            stack.callback(broker.stop)
        summary = Runner(scenario, api, options, broker=broker, say=say).run()
    click.echo(json.dumps(summary, indent=2, sort_keys=True) if as_json else render(summary))
    _check_outcome(summary)


def _described(scenario: Scenario, prefix: str) -> str:
    from edgefleet.server.sim.provision import check_names, device_ids
    from edgefleet.server.sim.scenario import assign_groups
    from edgefleet.server.sim.timeline import needs

    fleet = scenario.fleet
    groups = ", ".join(f"{name} {size}" for name, size in fleet.group_sizes().items())
    lines = [
        f"{scenario.source}: {fleet.devices} devices ({groups}), {fleet.duration:g} s, "
        f"model {fleet.model}, data {fleet.data}, {fleet.inference_hz:g} inferences/s each",
        *scenario.describe(),
    ]
    check_names(prefix, fleet)
    ids = device_ids(prefix, fleet.devices)
    wanted = needs(scenario, ids, assign_groups(fleet, ids))
    if wanted.model:
        lines.append(f"needs: an approved version of model {fleet.model} on the server")
    if wanted.flaws:
        lines.append(
            f"needs: TensorFlow here, to build the broken models ({', '.join(wanted.flaws)})"
        )
    if wanted.broker:
        lines.append("needs: --broker-dir (broker_restart: the simulator runs the broker)")
    if wanted.disks:
        lines.append(f"needs: root (fill_disk: a tmpfs for each of {len(wanted.disks)} devices)")
    return "\n".join(lines)


def _broker(directory: Path, data_dir: Path) -> LocalBroker:
    from edgefleet.server.broker_setup import CONF, ENV, BrokerFiles, read_env
    from edgefleet.server.sim.broker import LocalBroker

    directory = directory.resolve()
    if not (directory / CONF).is_file() or not (directory / ENV).is_file():
        raise CliError(
            f"{directory} is not a broker directory",
            hint=f"`edgefleet broker init {directory}` writes one",
        )
    env = read_env(directory / ENV)
    host, port = env["EDGEFLEET_BROKER_HOST"], int(env["EDGEFLEET_BROKER_PORT"])
    if _listening(host, port):
        raise CliError(
            f"a broker already listens on {host}:{port}",
            hint="stop it: with --broker-dir the simulator runs (and restarts) that broker itself",
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    return LocalBroker(
        BrokerFiles(directory, created=False),
        host=host,
        port=port,
        log_path=data_dir / "broker.log",
    )


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _check_outcome(summary: dict[str, Any]) -> None:
    failed = len(summary["event_failures"])
    if failed:
        raise CliError(f"{failed} event(s) failed (listed above)")
    if not summary["settled"]:
        raise CliError("the fleet did not come to rest within the settle time (see above)")
