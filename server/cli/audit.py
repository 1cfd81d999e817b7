"""``edgefleet audit``: who changed what, newest first."""

from __future__ import annotations

import click

from edgefleet.server.cli.output import print_json, print_table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api


@click.group(help="The audit log of every change made through the API.\n" + CONNECTION_HELP)
def audit() -> None:
    pass


@audit.command("list")
@click.option("--actor", help="Only changes by this token name.")
@click.option("--action", help="Only this action, e.g. device.revoke.")
@click.option("--target-type", help="Only this kind of target: device, group, model...")
@click.option("--target-id", help="Only this target.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@connection_options
def list_audit(
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List audit records.

    \b
    Example:
      edgefleet audit list --action device.revoke --limit 20
    """
    records = open_api().get(
        "/audit",
        params={
            "actor": actor,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "limit": limit,
        },
    )
    if as_json:
        print_json(records)
        return
    print_table(
        ["AT", "ACTOR", "ACTION", "TARGET"],
        [
            [when(r["at"]), r["actor"], r["action"], f"{r['target_type']}/{r['target_id']}"]
            for r in records
        ],
        empty="no audit records match",
    )
