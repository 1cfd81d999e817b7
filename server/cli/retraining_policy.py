"""``edgefleet retraining policy``: what starts a challenger for a model, and what follows.

``set`` sends the whole policy (a file's, or one built from flags): the server
fills in defaults and refuses contradictions, so the rules live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any

import click

from edgefleet.server.cli.client import segment
from edgefleet.server.cli.output import NONE, fields, print_json, when
from edgefleet.server.cli.remote import (
    CONNECTION_HELP,
    F,
    connection_options,
    json_option,
    open_api,
)


@click.group(
    help="A model's retraining policy: triggers, training data, comparison, approval.\n"
    + CONNECTION_HELP
)
def policy() -> None:
    pass


def _policy_path(model: str) -> str:
    return f"/models/{segment(model)}/retraining-policy"


def _load(source: IO[str]) -> dict[str, Any]:
    name = getattr(source, "name", "-")
    try:
        loaded = json.loads(source.read())
    except ValueError as err:
        raise click.BadParameter(f"{name}: not JSON ({err})", param_hint="--file") from err
    if not isinstance(loaded, dict):
        raise click.BadParameter(f"{name}: not a JSON object", param_hint="--file")
    return loaded


def policy_body(base: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a file's policy, or nothing) with each given flag set at its JSON path.

    Keys are ``section.field`` or ``field``; None means the flag was not given.
    """
    body = dict(base)
    for key, value in flags.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        if not section:
            body[key] = value
            continue
        found = body.get(section)
        body[section] = {**(found if isinstance(found, dict) else {}), name: value}
    return body


@dataclass(frozen=True, slots=True)
class PolicyFlag:
    """A ``policy set`` option for one setting, at its JSON path ``section.field``."""

    name: str
    key: str
    help: str
    metavar: str | None = None
    type: click.ParamType[Any] | None = None

    @property
    def param(self) -> str:
        return self.name.replace("-", "_")


POLICY_FLAGS = (
    PolicyFlag("group", "group", "The devices the policy watches and trains on.", "GROUP"),
    PolicyFlag(
        "drift-windows",
        "drift.consecutive_windows",
        "Drift trigger: a device drifts after N windows in a row over the threshold.",
        "N",
        click.IntRange(min=1),
    ),
    PolicyFlag(
        "min-devices",
        "drift.min_devices",
        "Drift trigger: fire when at least K devices drift.",
        "K",
        click.IntRange(min=1),
    ),
    PolicyFlag(
        "group-percent",
        "drift.group_percent",
        "Drift trigger: fire when X% of the group drifts (needs --group).",
        "X",
        click.FloatRange(min=0, max=100),
    ),
    PolicyFlag(
        "min-labelled",
        "samples.min_labelled",
        "Sample trigger: fire once M new edge samples are labelled.",
        "M",
        click.IntRange(min=1),
    ),
    PolicyFlag(
        "schedule",
        "schedule.cron",
        "Schedule trigger: a 5-field crontab (UTC, unless the file names a timezone).",
        "CRON",
    ),
    PolicyFlag(
        "cooldown",
        "cooldown_seconds",
        "After a trigger, nothing fires for this long.",
        "SECONDS",
        click.FloatRange(min=0),
    ),
    PolicyFlag(
        "approval",
        "approval",
        "Roll a winning challenger out at once, or wait for `retraining approve`.",
        type=click.Choice(["automatic", "manual"]),
    ),
    PolicyFlag("rollout-group", "rollout_group", "Roll out here instead of --group.", "GROUP"),
)


def _policy_flags(command: F) -> F:
    for flag in reversed(POLICY_FLAGS):
        command = click.option(
            f"--{flag.name}", flag.param, type=flag.type, metavar=flag.metavar, help=flag.help
        )(command)
    return command


def _trigger_lines(policy: dict[str, Any], next_schedule: float | None) -> list[tuple[str, str]]:
    lines = []
    drift = policy.get("drift")
    if drift:
        needs = [] if drift["min_devices"] is None else [f"{drift['min_devices']} devices"]
        if drift["group_percent"] is not None:
            needs.append(f"{drift['group_percent']:g}% of the group")
        lines.append(
            (
                "drift",
                f"score >= {drift['score_threshold']:g} for {drift['consecutive_windows']} "
                f"windows in a row in {' or '.join(needs)}",
            )
        )
    if policy.get("samples"):
        lines.append(("samples", f"{policy['samples']['min_labelled']} new labelled samples"))
    schedule = policy.get("schedule")
    if schedule:
        lines.append(
            (
                "schedule",
                f"{schedule['cron']} ({schedule['timezone']}), next {when(next_schedule)}",
            )
        )
    return lines or [("triggers", NONE)]


def render_policy(found: dict[str, Any]) -> str:
    """The policy view: what fires it, what it trains on, how it judges and where it rolls out."""
    policy = found["policy"]
    data = policy["data"]
    comparison = policy["comparison"]
    rollout_group = policy["rollout_group"] or policy["group"]
    edge = (
        f" + edge samples (weight {data['edge_weight']}, newest {data['max_edge_samples']})"
        if data["include_edge_samples"]
        else ""
    )
    items: list[tuple[str, object]] = [
        ("model", found["model"]),
        ("enabled", "yes" if policy["enabled"] else "no"),
        ("group", policy["group"] or NONE),
        *_trigger_lines(policy, found["next_schedule"]),
        ("cooldown", f"{policy['cooldown_seconds']:g} s"),
        ("trains on", (data["dataset"] or "the champion's dataset") + edge),
        (
            "challenger",
            f"gains >= {comparison['min_gain_points']:g} points on >= "
            f"{comparison['min_holdout']} new rows, forgets <= "
            f"{comparison['forget_budget_points']:g} on the old test rows",
        ),
        ("approval", policy["approval"]),
        (
            "rolls out to",
            NONE
            if rollout_group is None
            else rollout_group
            + (" (default rollout policy)" if policy["rollout_policy"] is None else ""),
        ),
        ("last triggered", when(found["last_triggered_at"])),
        ("cooling down", when(found["cooldown_until"])),
        ("last checked", when(found["last_checked_at"])),
        ("updated", f"{when(found['updated_at'])} by {found['updated_by']}"),
    ]
    return fields(items)


def _print_policy(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(found)
    else:
        click.echo(render_policy(found))


@policy.command("show")
@click.argument("model")
@json_option
@connection_options
def show_policy(model: str, as_json: bool) -> None:
    """Show MODEL's retraining policy, when it last fired and its next cron slot.

    \b
    Example:
      edgefleet retraining policy show vibration
    """
    found = open_api().get(_policy_path(model))
    _print_policy(found, as_json)


@policy.command("set")
@click.argument("model")
@click.option(
    "--file",
    "source",
    type=click.File("r"),
    help="The policy as JSON ('-' reads stdin); flags given beside it override its settings.",
)
@_policy_flags
@json_option
@connection_options
def set_policy(model: str, source: IO[str] | None, as_json: bool, **flags: Any) -> None:
    """Replace MODEL's retraining policy with a file's, or with one built from flags.

    Settings neither the file nor a flag gives take their defaults; the
    server refuses a policy that contradicts itself, naming the field.

    \b
    Examples:
      edgefleet retraining policy set vibration --group line-3 --group-percent 20 --drift-windows 3
      edgefleet retraining policy set vibration --min-labelled 200 --approval manual
      edgefleet retraining policy set kws --file policy.json
      cat policy.json | edgefleet retraining policy set kws --file - --cooldown 600
    """
    body = policy_body(
        {} if source is None else _load(source),
        {flag.key: flags[flag.param] for flag in POLICY_FLAGS},
    )
    found = open_api().put(_policy_path(model), json=body)
    _print_policy(found, as_json)


@policy.command("delete")
@click.argument("model")
@connection_options
def delete_policy(model: str) -> None:
    """Stop retraining MODEL; its runs stay on record.

    \b
    Example:
      edgefleet retraining policy delete vibration
    """
    open_api().delete(_policy_path(model))
    click.echo(f"{model}: retraining policy deleted")
