"""``edgefleet demo``: broker, server, simulated fleet and the whole loop, on this machine."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click


@click.command("demo", short_help="Run the whole loop on this machine (broker, server, fleet).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("edgefleet-demo"),
    show_default=True,
    help="Where the broker, server and devices keep their files (wiped by the next demo).",
)
@click.option("--devices", type=click.IntRange(3, 500), default=12, show_default=True)
@click.option("--port", "api_port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--broker-port", type=click.IntRange(1, 65535), default=1883, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 200), default=15, show_default=True)
@click.option(
    "--keep-running", is_flag=True, help="Leave broker, server and fleet up until Ctrl-C."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON too.")
def demo(
    data_dir: Path,
    devices: int,
    api_port: int,
    broker_port: int,
    epochs: int,
    keep_running: bool,
    as_json: bool,
) -> None:
    """Provision simulated devices in two groups, train a model on synthetic vibration data,
    quantize and sign it, roll it out in stages, report telemetry, make one group's sensors
    drift, let the server retrain and roll the challenger out in stages.

    Everything runs locally: a Mosquitto of its own, the server on SQLite in
    DATA_DIR, the agents in one simulator process. It checks first that the
    ports are free and the packages present, and says how to fix what is not.

    \b
    Example:
      edgefleet demo
      edgefleet demo --devices 30 --keep-running --port 8090 --broker-port 1884
    """
    from edgefleet.server.demo.run import Demo, DemoOptions  # the simulator: only here

    options = DemoOptions(
        data_dir=data_dir,
        devices=devices,
        api_port=api_port,
        broker_port=broker_port,
        keep_running=keep_running,
        epochs=epochs,
    )
    run = Demo(options)
    report = run.run()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    if keep_running:
        click.echo(
            f"\nstill running: API {report['api']} (docs at /docs), token {report['token']}\n"
            "press Ctrl-C to stop broker, server and fleet"
        )
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            run.stop()
