"""``edgefleet keys``: the offline root and the server's signing key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgefleet.server import keys as key_service
from edgefleet.server.cli.errors import CliError
from edgefleet.server.cli.output import fields, joined, print_json, when
from edgefleet.server.cli.wiring import wiring
from edgefleet.server.settings import load_settings
from edgefleet.server.signing import SIGNING_KEYS_FILE, KeyInfo, read_published

MAX_KEYS = key_service.MAX_SIGNATURES
RESTART = "restart `edgefleet server` to sign with it: the server loads its keys at start"


@click.group("keys")
def keys() -> None:
    """Root keys (offline) and the signing key (on the server).

    The root signs the list of signing keys; devices pin the root, so the
    signing key rotates without touching them. Directories default to
    $EDGEFLEET_DATA_DIR/keys/root and $EDGEFLEET_SIGNING_DIR (else
    $EDGEFLEET_DATA_DIR/keys/signing).
    """


root_dir_option = click.option(
    "--root-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Root private keys; keep this directory offline.",
)
signing_dir_option = click.option(
    "--signing-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The server's signing key and the published root chain and key list.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the key info as JSON.")


def _directories(root_dir: Path | None, signing_dir: Path | None) -> tuple[Path, Path]:
    if root_dir is not None and signing_dir is not None:
        return root_dir, signing_dir  # an offline machine needs no server settings
    settings = load_settings()
    return (
        root_dir or settings.data_dir / "keys" / "root",
        signing_dir or settings.effective_signing_dir,
    )


def _print_info(info: KeyInfo, as_json: bool) -> None:
    if as_json:
        print_json(dataclasses.asdict(info))
        return
    click.echo(
        fields(
            [
                ("root", f"v{info.root_version}, expires {when(info.root_expires_at)}"),
                ("root threshold", f"{info.root_threshold} of {len(info.root_keyids)}"),
                ("root keys", joined(info.root_keyids)),
                (
                    "signing key list",
                    f"v{info.signing_keys_version}, expires {when(info.signing_keys_expires_at)}",
                ),
                ("signing key", info.signing_keyid),
                ("listed keys", joined(info.listed_keyids)),
                ("revoked keys", joined(info.revoked_keyids)),
            ]
        )
    )


@keys.command("init")
@root_dir_option
@signing_dir_option
@click.option("--root-keys", type=click.IntRange(1, MAX_KEYS), default=1, show_default=True)
@click.option(
    "--root-threshold",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Root signatures needed to sign the key list or a new root.",
)
@click.option("--root-validity-days", type=click.IntRange(min=1), default=3650, show_default=True)
@click.option("--signing-validity-days", type=click.IntRange(min=1), default=365, show_default=True)
@json_option
def init(
    root_dir: Path | None,
    signing_dir: Path | None,
    root_keys: int,
    root_threshold: int,
    root_validity_days: int,
    signing_validity_days: int,
    as_json: bool,
) -> None:
    """Create root v1 and a signing key; on initialized directories, show what is there.

    \b
    Example:
      edgefleet keys init --root-dir /media/usb/root --root-keys 3 --root-threshold 2
    """
    if root_threshold > root_keys:
        raise click.BadParameter(
            f"{root_threshold} is more than --root-keys {root_keys}", param_hint="--root-threshold"
        )
    root_dir, signing_dir = _directories(root_dir, signing_dir)
    existed = (signing_dir / SIGNING_KEYS_FILE).exists()
    info = key_service.init_keys(
        root_dir=root_dir,
        signing_dir=signing_dir,
        now=int(wiring().clock()),
        root_keys=root_keys,
        root_threshold=root_threshold,
        root_validity_days=root_validity_days,
        signing_validity_days=signing_validity_days,
    )
    _print_info(info, as_json)
    if existed:
        click.echo(f"keys in {signing_dir} exist already; nothing changed", err=True)
    else:
        click.echo(
            f"created. Move {root_dir} offline (a safe, an air-gapped machine): "
            f"the server needs only {signing_dir}",
            err=True,
        )


@keys.command("rotate")
@root_dir_option
@signing_dir_option
@click.option("--root", "rotate_root", is_flag=True, help="Rotate the root keys instead.")
@click.option(
    "--keep-old",
    is_flag=True,
    help="Signing rotation: keep the old key listed until it expires, so manifests it "
    "signed keep verifying. Default: revoke it (what a leaked key needs).",
)
@click.option("--signing-validity-days", type=click.IntRange(min=1), default=365, show_default=True)
@click.option(
    "--root-keys",
    type=click.IntRange(1, MAX_KEYS),
    help="--root: keys in the new root (default: as many as now).",
)
@click.option(
    "--root-threshold",
    type=click.IntRange(min=1),
    help="--root: signatures the new root needs (default: as now).",
)
@click.option("--root-validity-days", type=click.IntRange(min=1), default=3650, show_default=True)
@json_option
def rotate(
    root_dir: Path | None,
    signing_dir: Path | None,
    rotate_root: bool,
    keep_old: bool,
    signing_validity_days: int,
    root_keys: int | None,
    root_threshold: int | None,
    root_validity_days: int,
    as_json: bool,
) -> None:
    """Publish a new signing key (default), or with --root a new root signed by old and new.

    Needs the root directory either way: the root signs the new key list.

    \b
    Examples:
      edgefleet keys rotate --root-dir /media/usb/root
      edgefleet keys rotate --root --root-dir /media/usb/root --root-keys 3 --root-threshold 2
    """
    if not rotate_root and (root_keys is not None or root_threshold is not None):
        raise click.UsageError("--root-keys and --root-threshold need --root")
    if rotate_root and keep_old:
        raise click.UsageError("--keep-old is for signing key rotation, not --root")
    root_dir, signing_dir = _directories(root_dir, signing_dir)
    if not (signing_dir / SIGNING_KEYS_FILE).exists():
        raise CliError(
            f"no keys in {signing_dir}",
            hint="run `edgefleet keys init` first, or pass --signing-dir",
        )
    now = int(wiring().clock())
    if rotate_root:
        current = read_published(signing_dir).root
        new_keys = root_keys or len(current.keys)
        new_threshold = root_threshold or min(current.threshold, new_keys)
        if new_threshold > new_keys:
            raise click.BadParameter(
                f"{new_threshold} is more than the new root's {new_keys} keys",
                param_hint="--root-threshold",
            )
        info = key_service.rotate_root(
            root_dir=root_dir,
            signing_dir=signing_dir,
            now=now,
            new_keys=new_keys,
            new_threshold=new_threshold,
            root_validity_days=root_validity_days,
        )
        retired = root_dir / key_service.RETIRED
        done = f"root v{info.root_version} published; old root keys moved to {retired}"
    else:
        info = key_service.rotate_signing_key(
            root_dir=root_dir,
            signing_dir=signing_dir,
            now=now,
            revoke_old=not keep_old,
            signing_validity_days=signing_validity_days,
        )
        done = f"signing key {info.signing_keyid[:12]} published"
    _print_info(info, as_json)
    click.echo(f"{done}; {RESTART}", err=True)
