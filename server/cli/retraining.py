"""``edgefleet retraining``: a model's retraining policy, and the runs it triggers."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.output import NONE, fields, print_json, print_table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api
from edgefleet.server.cli.retraining_policy import policy

MOVING = ("waiting_for_labels", "training")
"""Run states the server leaves by itself; a watch waits for none of them to be left."""


@click.group(
    help="Retraining: what triggers a challenger for a model, and the runs that follow.\n"
    + CONNECTION_HELP
)
def retraining() -> None:
    pass


retraining.add_command(policy)


def _versions(run: dict[str, Any]) -> str:
    versions = (run["champion_version"], run["challenger_version"])
    return " -> ".join(NONE if v is None else f"v{v}" for v in versions)


@retraining.command("runs")
@click.option("--model", help="Only this model.")
@click.option("--before", type=click.IntRange(min=1), metavar="RUN", help="Runs older than RUN.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw until no listed run is waiting for labels or training.",
)
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="SECONDS"
)
@json_option
@connection_options
def list_runs(
    model: str | None,
    before: int | None,
    limit: int,
    watch: bool,
    interval: float,
    as_json: bool,
) -> None:
    """List retraining runs, newest first.

    \b
    Examples:
      edgefleet retraining runs --model vibration --watch
      edgefleet retraining runs --before 120 --limit 20
    """
    api = open_api()
    live = watch and sys.stdout.isatty()
    while True:
        found = api.get(
            "/retraining/runs", params={"model": model, "before": before, "limit": limit}
        )
        if as_json:
            print_json(found)
        else:
            click.echo("\x1b[H\x1b[2J" if live else "", nl=False)
            print_table(
                ["ID", "MODEL", "STATE", "TRIGGER", "VERSIONS", "ROLLOUT", "CREATED"],
                [
                    [
                        r["id"],
                        r["model"],
                        r["state"],
                        r["trigger"].get("reason", NONE),
                        _versions(r),
                        r["rollout_id"] or NONE,
                        when(r["created_at"]),
                    ]
                    for r in found
                ],
                empty="no retraining runs",
            )
        if not watch or all(r["state"] not in MOVING for r in found):
            return
        time.sleep(interval)


def _decision(decision: dict[str, Any] | None) -> list[tuple[str, object]]:
    if decision is None:
        return [("decision", NONE)]
    verdict = "promote" if decision["promote"] else "keep the champion"
    items: list[tuple[str, object]] = [("decision", f"{verdict}: {decision['reason']}")]
    for label, key in (("gain", "gain_points"), ("forgetting", "forgetting_points")):
        if decision.get(key) is not None:
            items.append((label, f"{decision[key]:+.2f} points"))
    return items


def render_run(run: dict[str, Any]) -> str:
    dataset = run["dataset"]
    return fields(
        [
            ("run", run["id"]),
            ("model", f"{run['model']} {_versions(run)}"),
            ("state", run["state"]),
            ("reason", run["reason"] or NONE),
            ("trigger", run["trigger"].get("message", NONE)),
            ("dataset", NONE if dataset is None else f"{dataset} v{run['dataset_version']}"),
            ("job", run["job_id"] or NONE),
            *_decision(run["decision"]),
            ("rollout", run["rollout_id"] or NONE),
            ("created", when(run["created_at"])),
            ("finished", when(run["finished_at"])),
        ]
    )


def _run_path(run_id: int, action: str = "") -> str:
    return f"/retraining/runs/{run_id}" + (f"/{action}" if action else "")


def _print_run(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(run)
    else:
        click.echo(render_run(run))


@retraining.command("show")
@click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
@json_option
@connection_options
def show_run(run_id: int, as_json: bool) -> None:
    """A run: its trigger, dataset, job, the comparison's numbers and its rollout.

    \b
    Example:
      edgefleet retraining show 42
    """
    _print_run(open_api().get(_run_path(run_id)), as_json)


@retraining.command("approve")
@click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
@json_option
@connection_options
def approve_run(run_id: int, as_json: bool) -> None:
    """Roll out a run's challenger (when the run is awaiting approval).

    Exits 1 when the run failed instead: the reason says why (a refused rollout).

    \b
    Example:
      edgefleet retraining approve 42
    """
    run = open_api().post(_run_path(run_id, "approve"))
    _print_run(run, as_json)
    if run["state"] == "failed":
        raise CliError(f"retraining run {run_id} failed: {run['reason']}")


@retraining.command("decline")
@click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
@click.option("--reason", required=True, metavar="TEXT", help="Recorded with the run and audited.")
@json_option
@connection_options
def decline_run(run_id: int, reason: str, as_json: bool) -> None:
    """Keep the champion and end a run that is awaiting approval.

    \b
    Example:
      edgefleet retraining decline 42 --reason 'wait for the new camera firmware'
    """
    _print_run(open_api().post(_run_path(run_id, "decline"), json={"reason": reason}), as_json)
