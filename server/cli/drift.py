"""``edgefleet drift``: which devices drift now, and how drift moved over time."""

from __future__ import annotations

from typing import Any

import click

from edgefleet.server.cli.output import NONE, print_json, print_table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api
from edgefleet.server.cli.wiring import wiring

HOUR = 3600.0


@click.group(help="Drift of models' inputs and outputs on the devices.\n" + CONNECTION_HELP)
def drift() -> None:
    pass


def _number(value: float | None, digits: int = 2) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


@drift.command("status")
@click.argument("model")
@json_option
@connection_options
def drift_status(model: str, as_json: bool) -> None:
    """Each device's latest drift window of a model, flagged ones first.

    A score is the window's largest statistic over its calibrated limit:
    above 1 is flagged.

    \b
    Example:
      edgefleet drift status vibration
    """
    found = open_api().get("/drift/status", params={"model": model})
    if as_json:
        print_json(found)
        return
    devices = found["devices"]
    click.echo(f"{found['flagged_devices']} of {len(devices)} devices flagged")
    print_table(
        ["DEVICE", "VERSION", "SCORE", "FLAGGED", "INFERENCES", "CONFIDENCE CHANGE", "WINDOW END"],
        [
            [
                d["device"],
                d["version"],
                _number(d["score"]),
                "yes" if d["flagged"] else "no",
                d["count"],
                _number(d["confidence_change"], 3),
                when(d["window_end"]),
            ]
            for d in devices
        ],
        empty="no drift windows yet",
    )


def _pooled(bucket: dict[str, Any]) -> str:
    return (
        ", ".join(
            f"v{p['version']} {_number(p['score'])}{' FLAGGED' if p['flagged'] else ''}"
            for p in bucket["pooled"]
        )
        or NONE
    )


@drift.command("series")
@click.argument("model")
@click.option("--group", help="Only this device group (its pooled drift too).")
@click.option("--device", help="Only this device.")
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True),
    default=24.0,
    show_default=True,
    help="How far back from now.",
)
@click.option(
    "--bucket",
    type=click.FloatRange(min=0, min_open=True),
    default=HOUR,
    show_default=True,
    metavar="SECONDS",
    help="Length of one row.",
)
@json_option
@connection_options
def drift_series(
    model: str,
    group: str | None,
    device: str | None,
    hours: float,
    bucket: float,
    as_json: bool,
) -> None:
    """Drift over time: windows, flagged devices and scores per bucket.

    For the fleet (the default) or a group, each bucket's windows of one
    model version are also pooled and judged as one window (POOLED): a
    group can drift before any one device is sure.

    \b
    Examples:
      edgefleet drift series vibration --hours 6 --bucket 600
      edgefleet drift series vibration --group site-b --json
    """
    if group is not None and device is not None:
        raise click.UsageError("give --group or --device, not both")
    scope, name = ("group", group) if group else ("device", device) if device else ("fleet", None)
    until = wiring().clock()
    found = open_api().get(
        "/drift/series",
        params={
            "model": model,
            "scope": scope,
            "name": name,
            "since": repr(until - hours * HOUR),
            "until": repr(until),
            "bucket": repr(bucket),
        },
    )
    if as_json:
        print_json(found)
        return
    print_table(
        [
            "START",
            "WINDOWS",
            "DEVICES",
            "FLAGGED",
            "MEAN SCORE",
            "MAX SCORE",
            "CONF CHANGE",
            "POOLED",
        ],
        [
            [
                when(b["start"]),
                b["windows"],
                b["devices"],
                f"{b['flagged_devices']} dev / {b['flagged_windows']} win",
                _number(b["mean_score"]),
                _number(b["max_score"]),
                _number(b["mean_confidence_change"], 3),
                _pooled(b),
            ]
            for b in found["buckets"]
        ],
        empty="no buckets",
    )
