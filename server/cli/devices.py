"""``edgefleet devices``: list, show, provision, revoke, rotate credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefleet.server.atomic import write_atomic
from edgefleet.server.cli.client import ApiClient, segment
from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.output import (
    NONE,
    fields,
    joined,
    pairs,
    print_json,
    print_table,
    when,
)
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api
from edgefleet.server.states import DeviceState

BUNDLE_MODE = 0o600


def _key_values(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        labels[key] = text
    return labels


@click.group(help="Provision, inspect and revoke devices.\n" + CONNECTION_HELP)
def devices() -> None:
    pass


def _running(device: dict[str, Any]) -> str:
    models = [f"{m.get('model')} v{m.get('version')}" for m in device["running"]]
    return joined(models)


@devices.command("list")
@click.option("--state", type=click.Choice([s.value for s in DeviceState]), help="Only this state.")
@click.option("--profile", help="Only this hardware profile.")
@click.option("--tag", help="Only devices with this tag.")
@click.option("--search", help="Only ids containing this text.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@connection_options
def list_devices(
    state: str | None,
    profile: str | None,
    tag: str | None,
    search: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List devices, ordered by id.

    \b
    Example:
      edgefleet devices list --state online --tag line-3
    """
    page = open_api().get(
        "/devices",
        params={
            "state": state,
            "profile": profile,
            "tag": tag,
            "search": search,
            "limit": limit,
            "offset": offset,
        },
    )
    if as_json:
        print_json(page)
        return
    items = page["items"]
    print_table(
        ["ID", "PROFILE", "STATE", "TAGS", "LAST SEEN", "AGENT", "RUNNING"],
        [
            [
                d["id"],
                d["profile"],
                d["state"],
                joined(d["tags"]),
                when(d["last_seen_at"]),
                d["agent_version"] or NONE,
                _running(d),
            ]
            for d in items
        ],
        empty="no devices match",
    )
    if items and page["total"] > offset + len(items):
        click.echo(
            f"({offset + 1}-{offset + len(items)} of {page['total']}; "
            f"--offset {offset + len(items)} for more)"
        )


def _print_device(device: dict[str, Any]) -> None:
    click.echo(
        fields(
            [
                ("id", device["id"]),
                ("profile", device["profile"]),
                ("state", device["state"]),
                ("tags", joined(device["tags"])),
                ("labels", pairs(device["labels"])),
                ("agent", device["agent_version"] or NONE),
                ("running", _running(device)),
                ("last seen", when(device["last_seen_at"])),
                ("created", when(device["created_at"])),
                ("updated", when(device["updated_at"])),
                ("revoked", when(device["revoked_at"])),
            ]
        )
    )


@devices.command("show")
@click.argument("device_id", metavar="ID")
@json_option
@connection_options
def show_device(device_id: str, as_json: bool) -> None:
    """Show one device.

    \b
    Example:
      edgefleet devices show cam-017 --json
    """
    device = open_api().get(f"/devices/{segment(device_id)}")
    if as_json:
        print_json(device)
    else:
        _print_device(device)


output_option = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the agent config (agent.toml, mode 0600) here instead of printing it.",
)
force_option = click.option("--force", is_flag=True, help="Overwrite the --output file.")


def _check_output(output: Path | None, force: bool) -> None:
    """Before the API call: the bundle's password is shown once, so it must have a place."""
    if output is None:
        return
    if output.exists() and not force:
        raise click.UsageError(f"{output} exists; pass --force to overwrite it")
    if not output.parent.is_dir():
        raise click.UsageError(f"directory {output.parent} does not exist")


def _deliver(bundle: dict[str, Any], output: Path | None, action: str) -> None:
    device_id = bundle["device"]["id"]
    config: str = bundle["agent_config"]
    if output is None:
        click.echo(config, nl=not config.endswith("\n"))
        click.echo(
            f"{action} {device_id}: the agent config above holds its broker password, "
            "shown only now; install it as /etc/edgefleet/agent.toml (mode 0600)",
            err=True,
        )
        return
    try:
        write_atomic(output, config.encode("utf-8"), mode=BUNDLE_MODE)
    except OSError as err:
        raise CliError(
            f"{action} {device_id}, but writing {output} failed: {err}",
            hint=f"get a new bundle with `edgefleet devices rotate-credentials {device_id} "
            "--output PATH`",
        ) from err
    click.echo(f"{action} {device_id}: agent config written to {output} (mode 0600)")
    click.echo("copy it to the device as /etc/edgefleet/agent.toml; it holds the broker password")


@devices.command("provision")
@click.argument("device_id", metavar="ID")
@click.option("--profile", required=True, help="Hardware profile, e.g. rpi4, jetson-nano, sim.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option(
    "--label",
    "labels",
    metavar="KEY=VALUE",
    multiple=True,
    callback=_key_values,
    help="A label (repeatable).",
)
@output_option
@force_option
@connection_options
def provision_device(
    device_id: str,
    profile: str,
    tags: tuple[str, ...],
    labels: dict[str, str],
    output: Path | None,
    force: bool,
) -> None:
    """Register a device and get its agent config bundle.

    The bundle holds the device's broker password, which the server does
    not keep: save it with --output (written with mode 0600) or redirect
    stdout. Lost it? Use `edgefleet devices rotate-credentials`.

    \b
    Example:
      edgefleet devices provision cam-017 --profile rpi4 --tag line-3 \\
          --label site=plant-a --output cam-017.toml
    """
    _check_output(output, force)
    bundle = open_api().post(
        "/devices",
        json={"id": device_id, "profile": profile, "tags": list(tags), "labels": labels},
    )
    _deliver(bundle, output, "provisioned")


@devices.command("rotate-credentials")
@click.argument("device_id", metavar="ID")
@output_option
@force_option
@connection_options
def rotate_credentials(device_id: str, output: Path | None, force: bool) -> None:
    """Give a device a new broker password and bundle; the old password stops working.

    Also how a revoked device is brought back.

    \b
    Example:
      edgefleet devices rotate-credentials cam-017 --output cam-017.toml
    """
    _check_output(output, force)
    bundle = open_api().post(f"/devices/{segment(device_id)}/credentials")
    _deliver(bundle, output, "new credentials for")


@devices.command("revoke")
@click.argument("device_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@connection_options
def revoke_device(device_id: str, yes: bool, as_json: bool) -> None:
    """Revoke a device: its broker account goes and its live session is dropped at once.

    `edgefleet devices rotate-credentials ID` brings it back with a new password.

    \b
    Example:
      edgefleet devices revoke cam-017 --yes
    """
    api: ApiClient = open_api()
    if not yes:
        click.confirm(
            f"Revoke device {device_id}? It is cut off the broker at once", abort=True, err=True
        )
    device = api.post(f"/devices/{segment(device_id)}/revoke")
    if as_json:
        print_json(device)
    else:
        click.echo(f"revoked {device['id']} at {when(device['revoked_at'])}")
