"""``edgefleet models``: list, show and upload model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgefleet.server.cli.client import segment
from edgefleet.server.cli.output import (
    NONE,
    fields,
    joined,
    print_json,
    print_table,
    size,
    table,
    when,
)
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api

MAX_INLINE_JSON = 20_000
"""The API's cap on the metrics form field."""


def _json_object(_ctx: click.Context, _param: click.Parameter, value: str) -> dict[str, Any]:
    if len(value) > MAX_INLINE_JSON:
        raise click.BadParameter(f"longer than {MAX_INLINE_JSON} characters")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not JSON: {err.msg} (at character {err.pos})") from err
    if not isinstance(parsed, dict):
        raise click.BadParameter("want a JSON object, e.g. '{\"accuracy\": 0.93}'")
    return parsed


@click.group(help="The model registry: versions, their artifacts and metrics.\n" + CONNECTION_HELP)
def models() -> None:
    pass


@models.command("list")
@json_option
@connection_options
def list_models(as_json: bool) -> None:
    """List models with their latest version.

    \b
    Example:
      edgefleet models list
    """
    found = open_api().get("/models")
    if as_json:
        print_json(found)
        return
    print_table(
        ["NAME", "LATEST", "VERSIONS", "CREATED", "DESCRIPTION"],
        [
            [
                m["name"],
                NONE if m["latest"] is None else m["latest"],
                len(m["versions"]),
                when(m["created_at"]),
                m["description"],
            ]
            for m in found
        ],
        empty="no models",
    )


def _print_version(version: dict[str, Any]) -> None:
    click.echo(
        fields(
            [
                ("model", version["model"]),
                ("version", version["version"]),
                ("stage", version["stage"]),
                ("metrics", json.dumps(version["metrics"], sort_keys=True)),
                ("quantization", json.dumps(version["quantization"], sort_keys=True)),
                ("dataset", version["dataset_hash"] or NONE),
                ("training run", version["training_run"] or NONE),
                ("code version", version["code_version"] or NONE),
                ("created", f"{when(version['created_at'])} by {version['created_by']}"),
            ]
        )
    )
    click.echo()
    click.echo(
        table(
            ["PROFILE", "VARIANT", "SIZE", "SHA256"],
            [
                [a["hardware_profile"], a["variant"], size(a["size"]), a["sha256"]]
                for a in version["artifacts"]
            ],
        )
    )


@models.command("show")
@click.argument("name")
@click.option("--version", "number", type=click.IntRange(min=1), help="Show this version.")
@json_option
@connection_options
def show_model(name: str, number: int | None, as_json: bool) -> None:
    """Show a model, or one of its versions with its artifacts.

    \b
    Examples:
      edgefleet models show vibration
      edgefleet models show vibration --version 3 --json
    """
    path = f"/models/{segment(name)}"
    found = open_api().get(path if number is None else f"{path}/versions/{number}")
    if as_json:
        print_json(found)
    elif number is not None:
        _print_version(found)
    else:
        click.echo(
            fields(
                [
                    ("name", found["name"]),
                    ("description", found["description"] or NONE),
                    ("created", when(found["created_at"])),
                    ("versions", joined(found["versions"])),
                    ("latest", NONE if found["latest"] is None else found["latest"]),
                ]
            )
        )


@models.command("upload")
@click.argument("name")
@click.argument(
    "model_file",
    metavar="FILE.tflite",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--profile",
    "profiles",
    required=True,
    multiple=True,
    help="Hardware profile the file is for (repeat for more).",
)
@click.option("--variant", required=True, help="e.g. int8, fp16, float32.")
@click.option(
    "--metrics",
    metavar="JSON",
    default="{}",
    callback=_json_object,
    help="A JSON object, e.g. '{\"accuracy\": 0.93}'.",
)
@click.option(
    "--quantization",
    metavar="JSON",
    default="{}",
    callback=_json_object,
    help="Quantization parameters, a JSON object.",
)
@click.option("--dataset-hash", help="SHA-256 of the training data.")
@click.option("--training-run", help="Training run id.")
@click.option("--code-version", help="Code version (e.g. a git commit).")
@json_option
@connection_options
def upload_version(
    name: str,
    model_file: Path,
    profiles: tuple[str, ...],
    variant: str,
    metrics: dict[str, Any],
    quantization: dict[str, Any],
    dataset_hash: str | None,
    training_run: str | None,
    code_version: str | None,
    as_json: bool,
) -> None:
    """Upload a .tflite as the next version of a model (created if new).

    The server checks the file, signs a manifest per profile and registers
    the version as a candidate.

    \b
    Example:
      edgefleet models upload vibration model_int8.tflite --profile rpi4 \\
          --profile jetson-nano --variant int8 --metrics '{"accuracy": 0.93}'
    """
    data: dict[str, str] = {
        "profiles": ",".join(profiles),
        "variant": variant,
        "metrics": json.dumps(metrics),
        "quantization": json.dumps(quantization),
    }
    for key, value in (
        ("dataset_hash", dataset_hash),
        ("training_run", training_run),
        ("code_version", code_version),
    ):
        if value is not None:
            data[key] = value
    files = {"file": (model_file.name, model_file.read_bytes(), "application/octet-stream")}
    version = open_api().post(f"/models/{segment(name)}/versions", data=data, files=files)
    if as_json:
        print_json(version)
        return
    click.echo(f"uploaded {version['model']} v{version['version']} ({version['stage']})")
    _print_version(version)


@models.command("stage")
@click.argument("name")
@click.argument("number", metavar="VERSION", type=click.IntRange(min=1))
@click.argument("stage", type=click.Choice(["candidate", "approved", "deprecated"]))
@json_option
@connection_options
def stage_version(name: str, number: int, stage: str, as_json: bool) -> None:
    """Set a version's stage; only `approved` versions can be rolled out.

    \b
    Example:
      edgefleet models stage vibration 4 approved
    """
    version = open_api().patch(f"/models/{segment(name)}/versions/{number}", json={"stage": stage})
    if as_json:
        print_json(version)
    else:
        click.echo(f"{version['model']} v{version['version']}: {version['stage']}")
