"""``edgefleet groups``: create, list and show device groups."""

from __future__ import annotations

from typing import Any

import click

from edgefleet.server.cli.client import segment
from edgefleet.server.cli.output import NONE, fields, joined, print_json, print_table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api
from edgefleet.server.db.models import GroupKind


@click.group(help="Device groups: a static member list or a selector.\n" + CONNECTION_HELP)
def groups() -> None:
    pass


def _print_group(group: dict[str, Any]) -> None:
    click.echo(
        fields(
            [
                ("name", group["name"]),
                ("kind", group["kind"]),
                ("selector", group["selector"] or NONE),
                ("description", group["description"] or NONE),
                ("created", when(group["created_at"])),
                ("members", f"{len(group['members'])}: {joined(group['members'])}"),
            ]
        )
    )


@groups.command("create")
@click.argument("name")
@click.option(
    "--selector",
    metavar="EXPR",
    help="e.g. 'profile=rpi4 and site in (berlin, paris) and not tag:lab'.",
)
@click.option("--member", "members", metavar="ID", multiple=True, help="A device (repeatable).")
@click.option("--description", default="", help="Free text.")
@json_option
@connection_options
def create_group(
    name: str, selector: str | None, members: tuple[str, ...], description: str, as_json: bool
) -> None:
    """Create a group from a selector or from a list of devices (exactly one of them).

    \b
    Examples:
      edgefleet groups create line-3 --selector 'tag:line-3 and profile=rpi4'
      edgefleet groups create canaries --member cam-001 --member cam-002
    """
    if (selector is None) == (not members):
        raise click.UsageError("give either --selector or --member (one or more), not both")
    body: dict[str, Any] = {"name": name, "description": description}
    if selector is not None:
        body |= {"kind": GroupKind.SELECTOR.value, "selector": selector}
    else:
        body |= {"kind": GroupKind.STATIC.value, "members": list(members)}
    group = open_api().post("/groups", json=body)
    if as_json:
        print_json(group)
    else:
        _print_group(group)


@groups.command("list")
@json_option
@connection_options
def list_groups(as_json: bool) -> None:
    """List groups with their member counts.

    \b
    Example:
      edgefleet groups list --json
    """
    found = open_api().get("/groups")
    if as_json:
        print_json(found)
        return
    print_table(
        ["NAME", "KIND", "MEMBERS", "SELECTOR", "DESCRIPTION"],
        [
            [g["name"], g["kind"], len(g["members"]), g["selector"] or NONE, g["description"]]
            for g in found
        ],
        empty="no groups",
    )


@groups.command("show")
@click.argument("name")
@json_option
@connection_options
def show_group(name: str, as_json: bool) -> None:
    """Show a group and the devices in it now (a selector is evaluated on the live registry).

    \b
    Example:
      edgefleet groups show line-3
    """
    group = open_api().get(f"/groups/{segment(name)}")
    if as_json:
        print_json(group)
    else:
        _print_group(group)
