"""``edgefleet datasets``: import (CSV, NPZ, a bundled demo, the sensor generator), list, show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgefleet.server.cli.client import segment
from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.output import NONE, fields, joined, print_json, print_table, size, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api

FORMATS = ("csv", "npz", "demo", "synthetic")


@click.group(help="Training data: immutable, content-hashed versions.\n" + CONNECTION_HELP)
def datasets() -> None:
    pass


def _print_version(version: dict[str, Any]) -> None:
    layout = version["sample_schema"]
    counts = version["split"].get("counts", {})
    click.echo(
        fields(
            [
                ("dataset", f"{version['dataset']} v{version['version']}"),
                ("sha256", version["sha256"]),
                ("samples", f"{version['samples']} ({size(version['size'])})"),
                ("kind", f"{layout['kind']} {tuple(layout['shape'])}"),
                ("features", joined(layout["feature_names"])),
                ("labels", joined(layout["labels"])),
                (
                    "split",
                    f"seed {version['split']['seed']}: "
                    + ", ".join(f"{k} {v}" for k, v in counts.items()),
                ),
                ("source", json.dumps(version["source"], sort_keys=True)),
                ("created", f"{when(version['created_at'])} by {version['created_by']}"),
            ]
        )
    )


@datasets.command("import")
@click.argument("name")
@click.argument(
    "data_file",
    metavar="[FILE]",
    required=False,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--format", "data_format", type=click.Choice(FORMATS), help="Default: by suffix.")
@click.option("--label-column", default="label", show_default=True, help="CSV label column.")
@click.option("--unlabelled", is_flag=True, help="No label column (anomaly-detection data).")
@click.option("--features", metavar="A,B,...", help="CSV feature columns (default: the rest).")
@click.option("--series-column", help="Time series: the column naming each series.")
@click.option("--time-column", help="Time series: the time column (numbers).")
@click.option("--window", type=click.IntRange(2, 65_536), help="Time series: rows per window.")
@click.option("--stride", type=click.IntRange(1, 65_536), help="Time series: default --window.")
@click.option("--demo", "demo_name", metavar="NAME", help="digits, breast-cancer or wine.")
@click.option("--synthetic", "synthetic_json", metavar="JSON", help="Generator settings.")
@click.option("--split-seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--validation", type=float, default=0.15, show_default=True)
@click.option("--test", type=float, default=0.15, show_default=True)
@click.option("--extend", is_flag=True, help="Append to the newest version.")
@json_option
@connection_options
def import_dataset(
    name: str,
    data_file: Path | None,
    data_format: str | None,
    label_column: str,
    unlabelled: bool,
    features: str | None,
    series_column: str | None,
    time_column: str | None,
    window: int | None,
    stride: int | None,
    demo_name: str | None,
    synthetic_json: str | None,
    split_seed: int,
    validation: float,
    test: float,
    extend: bool,
    as_json: bool,
) -> None:
    """Import a new version of dataset NAME (created if new).

    Identical content is no new version: the newest one is shown again.

    \b
    Examples:
      edgefleet datasets import sensors readings.csv --label-column fault
      edgefleet datasets import vib windows.csv --series-column machine \\
          --time-column t --window 64
      edgefleet datasets import digits --format demo --demo digits
      edgefleet datasets import vib --format synthetic --synthetic '{"count": 2000}'
    """
    if data_format is None and data_file is None:
        data_format = "demo" if demo_name else "synthetic" if synthetic_json else None
        if data_format is None:
            raise click.UsageError("give a FILE, --demo NAME or --synthetic JSON")
    form: dict[str, str] = {
        "label_column": label_column,
        "unlabelled": str(unlabelled).lower(),
        "split_seed": str(split_seed),
        "validation": str(validation),
        "test": str(test),
        "extend": str(extend).lower(),
    }
    for key, value in (
        ("format", data_format),
        ("feature_columns", features),
        ("series_column", series_column),
        ("time_column", time_column),
        ("window", window),
        ("stride", stride),
        ("demo", demo_name),
        ("synthetic", synthetic_json),
    ):
        if value is not None:
            form[key] = str(value)
    files = None
    if data_file is not None:
        files = {"file": (data_file.name, data_file.read_bytes(), "application/octet-stream")}
    version = open_api().post(f"/datasets/{segment(name)}/versions", data=form, files=files)
    if as_json:
        print_json(version)
        return
    verb = "imported" if version["created"] else "unchanged, the newest version is"
    click.echo(f"{verb} {version['dataset']} v{version['version']}")
    _print_version(version)


@datasets.command("list")
@json_option
@connection_options
def list_datasets(as_json: bool) -> None:
    """List datasets with their newest version.

    \b
    Example:
      edgefleet datasets list
    """
    found = open_api().get("/datasets")
    if as_json:
        print_json(found)
        return
    rows = []
    for dataset in found:
        newest = dataset["versions"][-1] if dataset["versions"] else None
        rows.append(
            [
                dataset["name"],
                NONE if newest is None else newest["version"],
                NONE if newest is None else newest["samples"],
                NONE if newest is None else newest["sample_schema"]["kind"],
                NONE if newest is None else newest["sha256"][:16],
                when(dataset["created_at"]),
            ]
        )
    print_table(["NAME", "LATEST", "SAMPLES", "KIND", "SHA256", "CREATED"], rows, "no datasets")


@datasets.command("show")
@click.argument("name")
@click.option("--version", "number", type=click.IntRange(min=1), help="Default: the newest.")
@json_option
@connection_options
def show_dataset(name: str, number: int | None, as_json: bool) -> None:
    """Show a dataset version: schema, split, provenance.

    \b
    Example:
      edgefleet datasets show sensors --version 2
    """
    path = f"/datasets/{segment(name)}"
    if number is not None:
        version = open_api().get(f"{path}/versions/{number}")
    else:
        versions = open_api().get(path)["versions"]
        if not versions:
            raise CliError(f"dataset {name} has no versions")
        version = versions[-1]
    if as_json:
        print_json(version)
    else:
        _print_version(version)
