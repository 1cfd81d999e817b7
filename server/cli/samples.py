"""``edgefleet samples``: list, show, export, label and fold the inputs devices kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgefleet.server.cli.output import NONE, fields, print_json, print_table, when
from edgefleet.server.cli.remote import CONNECTION_HELP, connection_options, json_option, open_api

SHOWN_VALUES = 16
REASONS = ("reservoir", "low_confidence")

F = TypeVar("F", bound=Callable[..., Any])


@click.group(
    help="Edge samples: inputs devices kept for retraining, their labels and lineage.\n"
    + CONNECTION_HELP
)
def samples() -> None:
    pass


_FILTER = "edgefleet.samples.filter"


def _keep(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Filters go into the context, so ``list`` and ``export`` need not spell them out."""
    if isinstance(value, bool):
        value = str(value).lower()
    ctx.meta.setdefault(_FILTER, {})[param.name] = value


_FILTER_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--version", {"type": click.IntRange(min=1), "help": "Only this model version."}),
    ("--device", {"help": "Only samples from this device."}),
    ("--labelled/--unlabelled", {"default": None, "help": "Only labelled, or unlabelled, ones."}),
    ("--reason", {"type": click.Choice(REASONS), "help": "Why the device kept it."}),
    ("--after-id", {"type": click.IntRange(min=0), "default": 0, "help": "Start after this id."}),
)


def filter_options(command: F) -> F:
    """The sample filters ``list`` and ``export`` share, read back by :func:`_filters`."""
    for name, settings in reversed(_FILTER_OPTIONS):
        command = click.option(name, expose_value=False, callback=_keep, **settings)(command)
    return command


def _filters(model: str) -> dict[str, str | int | None]:
    return {"model": model, **click.get_current_context().meta.get(_FILTER, {})}


@samples.command("list")
@click.argument("model")
@filter_options
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@connection_options
def list_samples(model: str, limit: int, as_json: bool) -> None:
    """List a model's samples, oldest first (without their values).

    \b
    Examples:
      edgefleet samples list vibration --unlabelled --limit 50
      edgefleet samples list vibration --device cam-001 --after-id 1200
    """
    page = open_api().get(
        "/samples",
        params={**_filters(model), "limit": limit},
    )
    if as_json:
        print_json(page)
        return
    print_table(
        ["ID", "DEVICE", "VERSION", "REASON", "CONFIDENCE", "LABEL", "FOLDED INTO", "RECEIVED"],
        [
            [
                s["id"],
                s["device_id"],
                s["version"],
                s["reason"],
                NONE if s["confidence"] is None else f"{s['confidence']:.3f}",
                s["label"] or NONE,
                s["folded_into"] or NONE,
                when(s["received_at"]),
            ]
            for s in page["items"]
        ],
        empty="no samples match",
    )
    if page["next_after_id"] is not None:
        click.echo(f"more: --after-id {page['next_after_id']}")


@samples.command("show")
@click.argument("sample_id", metavar="ID", type=click.IntRange(min=1))
@json_option
@connection_options
def show_sample(sample_id: int, as_json: bool) -> None:
    """Show one sample with its values.

    \b
    Example:
      edgefleet samples show 1234 --json
    """
    found = open_api().get(f"/samples/{sample_id}")
    if as_json:
        print_json(found)
        return
    values = found["values"]
    shown = " ".join(f"{v:g}" for v in values[:SHOWN_VALUES])
    if len(values) > SHOWN_VALUES:
        shown += f" ... ({len(values)} values; --json has all)"
    click.echo(
        fields(
            [
                ("id", found["id"]),
                ("device", f"{found['device_id']} (its id {found['sample_id']})"),
                ("model", f"{found['model']} v{found['version']}, window {found['window_seq']}"),
                ("reason", found["reason"]),
                ("confidence", NONE if found["confidence"] is None else found["confidence"]),
                (
                    "label",
                    NONE
                    if found["label"] is None
                    else f"{found['label']} ({found['labelled_by']}, {when(found['labelled_at'])})",
                ),
                ("folded into", found["folded_into"] or NONE),
                ("received", when(found["received_at"])),
                ("shape", NONE if found["shape"] is None else tuple(found["shape"])),
                ("values", shown),
            ]
        )
    )


@samples.command("export")
@click.argument("model")
@filter_options
@click.option(
    "--format", "file_format", type=click.Choice(["csv", "npz"]), default="csv", show_default=True
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write.",
)
@connection_options
def export_samples(model: str, file_format: str, out: Path) -> None:
    """Export samples with their values as CSV or NPZ (x, ids, labels).

    NPZ needs samples of one length: add --version when versions differ.

    \b
    Examples:
      edgefleet samples export vibration --labelled --format npz --out labelled.npz
      edgefleet samples export vibration --version 3 --out v3.csv
    """
    response = open_api().download(
        "/samples/export",
        params={**_filters(model), "format": file_format},
    )
    out.write_bytes(response.content)
    click.echo(f"wrote {out} ({len(response.content)} bytes)")
    following = response.headers.get("x-next-after-id")
    if following is not None:
        click.echo(f"more: export again with --after-id {following}")


def _pair(text: str) -> tuple[int, str]:
    sample_id, sep, label = text.partition("=")
    if not sep or not sample_id.strip().isdigit() or not label.strip():
        raise click.BadParameter(f"{text!r} is not ID=LABEL (e.g. 1234=fault)")
    return int(sample_id), label.strip()


@samples.command("label")
@click.argument("pairs", metavar="[ID=LABEL]...", nargs=-1)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A CSV with the header id,label instead of pairs.",
)
@json_option
@connection_options
def label_samples(pairs: tuple[str, ...], csv_file: Path | None, as_json: bool) -> None:
    """Label samples: all of them, or none when any id or label is refused.

    Labels must be in the label set of the sample's model version (the
    labels of the dataset it was trained on). Relabelling is allowed.

    \b
    Examples:
      edgefleet samples label 1234=fault 1235=normal
      edgefleet samples label --csv labels.csv
    """
    if bool(pairs) == (csv_file is not None):
        raise click.UsageError("give ID=LABEL pairs or --csv FILE (one of them)")
    api = open_api()
    if csv_file is not None:
        files = {"file": (csv_file.name, csv_file.read_bytes(), "text/csv")}
        done = api.post("/samples/labels.csv", files=files)
    else:
        labels = [{"id": i, "label": text} for i, text in map(_pair, pairs)]
        done = api.post("/samples/labels", json={"labels": labels})
    if as_json:
        print_json(done)
        return
    click.echo(
        f"labelled {done['labelled']}, relabelled {done['relabelled']}, "
        f"unchanged {done['unchanged']} (ids {done['first_id']}..{done['last_id']})"
    )


@samples.command("fold")
@click.argument("model")
@click.argument("dataset")
@click.option(
    "--id",
    "ids",
    multiple=True,
    type=click.IntRange(min=1),
    help="Fold exactly this sample (repeat); default: every labelled one not folded yet.",
)
@json_option
@connection_options
def fold_samples(model: str, dataset: str, ids: tuple[int, ...], as_json: bool) -> None:
    """Fold a model's labelled samples into a new version of a dataset.

    The new version extends the dataset's newest one (whose rows keep their
    train/validation/test parts); each sample records the version it went
    into and is folded once.

    \b
    Examples:
      edgefleet samples fold vibration sensors
      edgefleet samples fold vibration sensors --id 1234 --id 1240
    """
    body: dict[str, Any] = {"model": model, "dataset": dataset}
    if ids:
        body["ids"] = list(ids)
    done = open_api().post("/samples/fold", json=body)
    if as_json:
        print_json(done)
        return
    version = done["dataset"]
    click.echo(
        f"folded {len(done['folded'])} samples into {version['dataset']} v{version['version']} "
        f"({version['samples']} samples)"
    )
