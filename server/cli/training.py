"""``edgefleet train``, ``edgefleet jobs`` and ``edgefleet models compare``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgefleet.server.cli.client import ApiClient, segment
from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.output import NONE, fields, print_json, print_table, size, table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api

FINISHED = ("succeeded", "failed", "cancelled")
BAR = 24


def _param(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON (``epochs=5``, ``hidden=[64,32]``) or else text."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: want KEY=VALUE, e.g. epochs=20")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _dataset(value: str) -> tuple[str, int | None]:
    name, _, version = value.partition(":")
    if not version:
        return name, None
    if not version.isdigit():
        raise click.BadParameter(f"{value!r}: want NAME or NAME:VERSION")
    return name, int(version)


def progress_line(job: dict[str, Any]) -> str:
    """One line for a running job: a bar over all epochs of all trials, and the numbers."""
    progress = job["progress"]
    phase = progress.get("phase", job["state"])
    if phase != "training":
        detail = f" {progress['variant']}" if "variant" in progress else ""
        return f"job {job['id']}: {phase}{detail}"
    epochs, trials = int(progress.get("epochs", 1)), int(progress.get("trials", 1))
    done = (int(progress.get("trial", 1)) - 1) * epochs + int(progress.get("epoch", 0))
    filled = round(BAR * done / max(1, epochs * trials))
    metrics = " ".join(
        f"{k}={v:.4f}" for k, v in sorted(progress.items()) if "loss" in k or "accuracy" in k
    )
    return (
        f"job {job['id']}: [{'#' * filled}{'.' * (BAR - filled)}] trial "
        f"{progress.get('trial', 1)}/{trials} epoch {progress.get('epoch', 0)}/{epochs} {metrics}"
    ).rstrip()


def _wait(api: ApiClient, job_id: int, poll: float) -> dict[str, Any]:
    """Follow the job on stderr until it ends; a terminal line is rewritten in place."""
    live = sys.stderr.isatty()
    shown = ""
    while True:
        job: dict[str, Any] = api.get(f"/training/jobs/{job_id}")
        line = progress_line(job)
        if line != shown:
            click.echo(f"\r\x1b[2K{line}" if live else line, err=True, nl=not live)
            shown = line
        if job["state"] in FINISHED:
            if live:
                click.echo(err=True)
            return job
        time.sleep(poll)


def _print_job(job: dict[str, Any]) -> None:
    request = job["request"]
    source = job["recipe"] or f"uploaded .keras {str(job['keras_sha256'])[:16]}"
    click.echo(
        fields(
            [
                ("job", job["id"]),
                (
                    "state",
                    job["state"] + (" (cancel requested)" if job["cancel_requested"] else ""),
                ),
                ("model", job["model"]),
                ("dataset", f"{job['dataset']} v{job['dataset_version']}"),
                ("source", source),
                ("params", json.dumps(request["params"], sort_keys=True)),
                ("seed", request["seed"]),
                ("profiles", ",".join(request["profiles"])),
                ("progress", progress_line(job)),
                ("error", job["error"] or NONE),
                ("version", NONE if job["model_version"] is None else job["model_version"]),
                ("created", f"{when(job['created_at'])} by {job['created_by']}"),
                ("finished", when(job["finished_at"])),
            ]
        )
    )
    result = job["result"]
    if not result:
        return
    metrics = result["metrics"]
    name = metrics["metric"]
    click.echo(f"\nfloat model: {name} {metrics['float'][name]:.4f}")
    rows = []
    for variant, found in metrics["variants"].items():
        score = (found["metrics"] or {}).get(name)
        rows.append(
            [
                variant,
                NONE if found["size"] is None else size(found["size"]),
                NONE if found["size_ratio"] is None else f"{found['size_ratio']:.3f}",
                NONE if score is None else f"{score:.4f}",
                NONE if found["latency_ms"] is None else f"{found['latency_ms']:.4f}",
                "yes" if found["publishable"] else "no",
                found["gate"],
            ]
        )
    headers = ["VARIANT", "SIZE", "RATIO", name.upper(), "LATENCY_MS", "SHIPS", "GATE"]
    click.echo(table(headers, rows))
    served = [[p, v] for p, v in sorted(result["selection"].items())]
    served += [[p, f"none: {why}"] for p, why in sorted(result["unserved"].items())]
    click.echo("\n" + table(["PROFILE", "VARIANT"], served))


@click.command("train")
@click.option("--dataset", "dataset_ref", required=True, metavar="NAME[:VERSION]")
@click.option("--recipe", help="mlp, cnn1d, cnn2d or autoencoder.")
@click.option(
    "--keras",
    "keras_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Evaluate and quantize this .keras model instead of training one.",
)
@click.option("--model", help="The model to register a version of (default: the dataset's name).")
@click.option("--profile", "profiles", multiple=True, help="Hardware profile (default: all).")
@click.option(
    "--param",
    "params",
    multiple=True,
    callback=_param,
    metavar="KEY=VALUE",
    help="A hyperparameter (repeatable): epochs=20, hidden=[64,32].",
)
@click.option("--trials", type=click.IntRange(1, 32), default=1, show_default=True)
@click.option("--strategy", type=click.Choice(["random", "grid"]), default="random")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--budget", type=click.FloatRange(0, 100), help="Quantization budget in points.")
@click.option("--metric", type=click.Choice(["accuracy", "f1"]), default="accuracy")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@click.option("--poll-seconds", type=click.FloatRange(0.05, 60), default=1.0, hidden=True)
@json_option
@connection_options
def train(
    dataset_ref: str,
    recipe: str | None,
    keras_file: Path | None,
    model: str | None,
    profiles: tuple[str, ...],
    params: dict[str, Any],
    trials: int,
    strategy: str,
    seed: int,
    budget: float | None,
    metric: str,
    wait: bool,
    poll_seconds: float,
    as_json: bool,
) -> None:
    """Train, quantize and register a model version (or, with --keras, your own model's).

    \b
    Examples:
      edgefleet train --dataset digits --recipe mlp --wait
      edgefleet train --dataset vib:2 --recipe cnn1d --param epochs=40 --trials 4
      edgefleet train --dataset digits --keras mine.keras --profile rpi4 --wait
    """
    if (recipe is None) == (keras_file is None):
        raise click.UsageError("give --recipe or --keras (one of them)")
    name, version = _dataset(dataset_ref)
    api = open_api()
    body: dict[str, Any] = {
        "model": model or name,
        "dataset": name,
        "dataset_version": version,
        "recipe": recipe,
        "params": params,
        "trials": trials,
        "strategy": strategy,
        "seed": seed,
        "profiles": list(profiles),
        "budget_points": budget,
        "metric": metric,
    }
    if keras_file is not None:
        files = {"file": (keras_file.name, keras_file.read_bytes(), "application/octet-stream")}
        body["keras_sha256"] = api.post("/training/keras", files=files)["sha256"]
    job = api.post("/training/jobs", json=body)
    if wait:
        job = _wait(api, job["id"], poll_seconds)
    if as_json:
        print_json(job)
    elif wait:
        _print_job(job)
    else:
        click.echo(f"queued job {job['id']}: follow it with `edgefleet jobs show {job['id']}`")
    if wait and job["state"] != "succeeded":
        raise CliError(f"job {job['id']} {job['state']}: {job['error']}")


@click.group(help="Training jobs: progress, results, logs, cancel.\n" + CONNECTION_HELP)
def jobs() -> None:
    pass


@jobs.command("list")
@click.option("--state", type=click.Choice(["queued", "running", *FINISHED]))
@json_option
@connection_options
def list_jobs(state: str | None, as_json: bool) -> None:
    """List jobs, newest first.

    \b
    Example:
      edgefleet jobs list --state running
    """
    found = open_api().get("/training/jobs", params={"state": state})
    if as_json:
        print_json(found)
        return
    rows = [
        [
            j["id"],
            j["state"],
            j["model"],
            f"{j['dataset']}:{j['dataset_version']}",
            j["recipe"] or "keras",
            NONE if j["model_version"] is None else j["model_version"],
            when(j["created_at"]),
        ]
        for j in found
    ]
    print_table(
        ["ID", "STATE", "MODEL", "DATASET", "RECIPE", "VERSION", "CREATED"], rows, "no jobs"
    )


@jobs.command("show")
@click.argument("job_id", type=click.IntRange(min=1))
@json_option
@connection_options
def show_job(job_id: int, as_json: bool) -> None:
    """Show a job: its request, progress, and per variant size, metric, latency and gate.

    \b
    Example:
      edgefleet jobs show 12
    """
    job = open_api().get(f"/training/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        _print_job(job)


@jobs.command("logs")
@click.argument("job_id", type=click.IntRange(min=1))
@connection_options
def job_logs(job_id: int) -> None:
    """Print a job's log.

    \b
    Example:
      edgefleet jobs logs 12
    """
    for line in open_api().get(f"/training/jobs/{job_id}/logs"):
        click.echo(f"{when(line['at'])}  {line['message']}")


@jobs.command("cancel")
@click.argument("job_id", type=click.IntRange(min=1))
@connection_options
def cancel_job(job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop (it does at its next epoch).

    \b
    Example:
      edgefleet jobs cancel 12
    """
    job = open_api().post(f"/training/jobs/{job_id}/cancel")
    click.echo(
        f"job {job_id}: {job['state']}" + (", stopping" if job["state"] == "running" else "")
    )


@click.command("compare")
@click.argument("name")
@click.argument("a", type=click.IntRange(min=1))
@click.argument("b", type=click.IntRange(min=1))
@json_option
@connection_options
def compare(name: str, a: int, b: int, as_json: bool) -> None:
    """Compare two versions of a model side by side.

    \b
    Example:
      edgefleet models compare digits 1 2
    """
    found = open_api().get(f"/models/{segment(name)}/compare", params={"a": a, "b": b})
    if as_json:
        print_json(found)
        return
    left, right, differences = found["a"], found["b"], found["differences"]
    rows = [
        [label, str(left.get(key) or NONE), str(right.get(key) or NONE)]
        for label, key in (
            ("stage", "stage"),
            ("dataset", "dataset_hash"),
            ("training run", "training_run"),
            ("code version", "code_version"),
        )
    ]
    rows += [[f"{k} (b-a)", "", f"{v:+.4f}"] for k, v in differences["metrics"].items()]
    for profile, entry in differences["profiles"].items():
        ratio = f" size x{entry['size_ratio']:.2f}" if "size_ratio" in entry else ""
        rows.append([profile, str(entry["a"] or NONE), f"{entry['b'] or NONE}{ratio}"])
    click.echo(table(["", f"v{a}", f"v{b}"], rows))
