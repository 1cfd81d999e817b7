"""``edgefleet rollout``: create, start, steer and watch staged rollouts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgefleet.server.cli.client import ApiClient, segment
from edgefleet.server.cli.output import NONE, fields, print_json, print_table, table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api

FINISHED = ("completed", "aborted")


@click.group(help="Staged rollouts of a model version to a device group.\n" + CONNECTION_HELP)
def rollout() -> None:
    pass


def _wave_options(waves: str | None, soak: float | None) -> list[dict[str, Any]] | None:
    if waves is None:
        return None
    specs: list[dict[str, Any]] = []
    for part in waves.split(","):
        text = part.strip()
        try:
            spec: dict[str, Any] = (
                {"percent": float(text[:-1])} if text.endswith("%") else {"count": int(text)}
            )
        except ValueError as err:
            raise click.BadParameter(
                f"{text!r} is neither a percentage (10%) nor a device count (5)",
                param_hint="--waves",
            ) from err
        if soak is not None:
            spec["soak_seconds"] = soak
        specs.append(spec)
    return specs


def _policy(
    policy_file: Path | None, waves: str | None, soak: float | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if policy_file is not None:
        try:
            loaded = json.loads(policy_file.read_text())
        except (OSError, ValueError) as err:
            raise click.BadParameter(f"{policy_file}: {err}", param_hint="--policy") from err
        if not isinstance(loaded, dict):
            raise click.BadParameter(f"{policy_file}: not a JSON object", param_hint="--policy")
        policy = loaded
    wave_list = _wave_options(waves, soak)
    if wave_list is not None:
        policy["waves"] = wave_list
    policy.update({k: v for k, v in overrides.items() if v is not None})
    return policy


@rollout.command("create")
@click.argument("group")
@click.argument("model")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--waves", metavar="LIST", help="Comma-separated: 1%,10%,50%,100% or counts (2,5,100%)."
)
@click.option("--soak", type=click.FloatRange(min=0), metavar="SECONDS", help="Soak of every wave.")
@click.option(
    "--on-breach", type=click.Choice(["pause", "abort"]), help="What a breached gate does."
)
@click.option(
    "--abort-mode",
    type=click.Choice(["leave", "rollback"]),
    help="On abort, leave devices as they are or roll touched ones back.",
)
@click.option("--approval/--no-approval", default=None, help="Wait for approval between waves.")
@click.option("--shadow/--no-shadow", default=None, help="Run the new version in shadow first.")
@click.option(
    "--offline", type=click.Choice(["wait", "skip"]), help="Offline devices at their wave."
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON policy file (gates, thresholds, maintenance window); flags override it.",
)
@click.option("--start", is_flag=True, help="Start it right away.")
@json_option
@connection_options
def create_rollout(
    group: str,
    model: str,
    version: int,
    waves: str | None,
    soak: float | None,
    on_breach: str | None,
    abort_mode: str | None,
    approval: bool | None,
    shadow: bool | None,
    offline: str | None,
    policy_file: Path | None,
    start: bool,
    as_json: bool,
) -> None:
    """Create a draft rollout of MODEL VERSION to GROUP (started with `rollout start`).

    \b
    Examples:
      edgefleet rollout create line-3 vibration 4 --start
      edgefleet rollout create cameras person 2 --waves 2,10%,100% --soak 600 --approval
      edgefleet rollout create fleet kws 7 --policy policy.json --on-breach pause
    """
    body = {
        "group": group,
        "model": model,
        "version": version,
        "policy": _policy(
            policy_file,
            waves,
            soak,
            {
                "breach_action": on_breach,
                "abort_mode": abort_mode,
                "approval_between_waves": approval,
                "shadow": shadow,
                "offline": offline,
            },
        ),
    }
    api = open_api()
    created = api.post("/rollouts", json=body)
    if start:
        created = api.post(f"/rollouts/{segment(created['id'])}/start")
    if as_json:
        print_json(created)
    else:
        click.echo(f"rollout {created['id']}: {created['state']}")


def _action(name: str, verb: str, doc: str, *, with_reason: bool = False) -> None:
    example = f"\n\n\b\nExample:\n  edgefleet rollout {name} ro-1a2b3c4d5e6f" + (
        " --reason 'night shift'" if with_reason else ""
    )

    @rollout.command(name, help=doc + example)
    @click.argument("rollout_id")
    @json_option
    @connection_options
    def command(rollout_id: str, as_json: bool, reason: str | None = None) -> None:
        body = {"reason": reason} if reason else None
        changed = open_api().post(f"/rollouts/{segment(rollout_id)}/{verb}", json=body)
        if as_json:
            print_json(changed)
        else:
            click.echo(f"rollout {changed['id']}: {changed['state']}")

    if with_reason:
        click.option("--reason", metavar="TEXT", help="Recorded in the audit log.")(command)


_action("start", "start", "Plan the waves over the group as it is now and start wave 1.")
_action("pause", "pause", "Stop starting waves (devices already notified go on).", with_reason=True)
_action("resume", "resume", "Go on from where the rollout paused.")
_action("approve", "approve", "Let the next wave start (when the rollout waits for approval).")
_action(
    "abort",
    "abort",
    "Stop for good; with the policy's rollback, touched devices get their previous model back.",
    with_reason=True,
)


@rollout.command("list")
@click.option("--state", help="draft, scheduled, running, paused, completed or aborted.")
@click.option("--group", help="Only this group.")
@click.option("--model", help="Only this model.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
@connection_options
def list_rollouts(
    state: str | None, group: str | None, model: str | None, limit: int, as_json: bool
) -> None:
    """List rollouts, newest first.

    \b
    Example:
      edgefleet rollout list --state running
    """
    found = open_api().get(
        "/rollouts", params={"state": state, "group": group, "model": model, "limit": limit}
    )
    if as_json:
        print_json(found)
        return
    print_table(
        ["ID", "GROUP", "MODEL", "VERSION", "STATE", "WAVE", "CREATED"],
        [
            [
                r["id"],
                r["group"],
                r["model"],
                r["version"],
                r["state"],
                r["current_wave"] + 1,
                when(r["created_at"]),
            ]
            for r in found
        ],
        empty="no rollouts",
    )


def _gate(gate: dict[str, Any]) -> str:
    value = gate.get("value")
    limit = gate.get("limit")
    shown = NONE if value is None else f"{value:.3g}"
    bound = "" if limit is None else f" (limit {limit:.3g})"
    return f"{gate['name']}={shown}{bound} {gate['status']}"


def render_status(status: dict[str, Any]) -> str:
    """The status view: the rollout, then one line per wave and its gates."""
    eta = status.get("eta_seconds")
    head = fields(
        [
            ("rollout", status["id"]),
            ("target", f"{status['model']} v{status['version']} -> group {status['group']}"),
            ("state", status["state"] + (f" ({status['reason']})" if status["reason"] else "")),
            ("devices", ", ".join(f"{k} {v}" for k, v in sorted(status["by_state"].items()))),
            ("eta", NONE if eta is None else f"{eta:.0f} s"),
        ]
    )
    rows = [
        [
            w["index"] + 1,
            w["target"],
            w["state"],
            w["devices"],
            ", ".join(f"{k} {v}" for k, v in sorted(w["by_state"].items())) or NONE,
            "; ".join(_gate(g) for g in w["gates"]) or NONE,
        ]
        for w in status["waves"]
    ]
    return head + "\n" + table(["WAVE", "TARGET", "STATE", "DEVICES", "BY STATE", "GATES"], rows)


def _show(api: ApiClient, rollout_id: str) -> dict[str, Any]:
    found: dict[str, Any] = api.get(f"/rollouts/{segment(rollout_id)}")
    return found


@rollout.command("status")
@click.argument("rollout_id")
@click.option("--watch", is_flag=True, help="Redraw until the rollout completes or aborts.")
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="SECONDS"
)
@json_option
@connection_options
def rollout_status(rollout_id: str, watch: bool, interval: float, as_json: bool) -> None:
    """Per-wave counts by device state, gate values and an ETA.

    \b
    Example:
      edgefleet rollout status ro-1a2b3c4d5e6f --watch
    """
    api = open_api()
    live = watch and sys.stdout.isatty()
    while True:
        status = _show(api, rollout_id)
        if as_json:
            print_json(status)
        else:
            click.echo(("\x1b[H\x1b[2J" if live else "") + render_status(status))
        if not watch or status["state"] in FINISHED:
            return
        time.sleep(interval)
