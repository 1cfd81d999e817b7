"""``edgefleet broker init``: a Mosquitto configured the way the server expects."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.server.broker_setup import init_broker


@click.group("broker", short_help="Set up the MQTT broker (local).")
def broker() -> None:
    """Prepare a Mosquitto broker for edgefleet (dynamic-security plugin)."""


@broker.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Listener address.")
@click.option("--port", type=click.IntRange(1, 65535), default=1883, show_default=True)
def init(directory: Path, host: str, port: int) -> None:
    """Write mosquitto.conf, the plugin's initial file and the server's credentials.

    Idempotent: an existing setup is left as it is (its passwords cannot be
    regenerated without locking the server out).

    \b
    Example:
      edgefleet broker init /etc/edgefleet/broker --port 1883
      mosquitto -c /etc/edgefleet/broker/mosquitto.conf &
      set -a; . /etc/edgefleet/broker/edgefleet.env; set +a
      edgefleet server
    """
    files = init_broker(directory, host=host, port=port)
    verb = "created" if files.created else "already set up:"
    click.echo(f"{verb} {files.directory}")
    click.echo(f"  run the broker:   mosquitto -c {files.conf}")
    click.echo(f"  server settings:  set -a; . {files.env}; set +a   (keep this file secret)")
