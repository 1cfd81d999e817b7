"""The command tree: exports, the console script, help text, and the output helpers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import edgefleet.server.cli as package
from edgefleet.server.cli import ExitCode, Wiring, cli, main
from edgefleet.server.cli.output import clean, size, table, when
from edgefleet.shared import __version__

ROOT = Path(__file__).resolve().parents[3]


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += leaves(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = leaves(cli)
REMOTE = {
    "devices",
    "groups",
    "models",
    "audit",
    "datasets",
    "train",
    "jobs",
    "retraining",
    "samples",
    "drift",
    "sim",
}


def test_exports() -> None:
    assert sorted(package.__all__) == ["ExitCode", "Wiring", "cli", "main"]
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_console_script_target() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["edgefleet"] == "edgefleet.server.cli:main"


def test_main_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == ExitCode.OK
    assert capsys.readouterr().out == f"edgefleet {__version__}\n"
    assert main(["devices", "list", "--bogus"]) == ExitCode.USAGE
    assert "No such option '--bogus'" in capsys.readouterr().err


def test_the_command_tree() -> None:
    assert COMMANDS == [
        ("audit", "list"),
        ("broker", "init"),
        ("datasets", "import"),
        ("datasets", "list"),
        ("datasets", "show"),
        ("db", "upgrade"),
        ("demo",),
        ("devices", "list"),
        ("devices", "provision"),
        ("devices", "revoke"),
        ("devices", "rotate-credentials"),
        ("devices", "show"),
        ("drift", "series"),
        ("drift", "status"),
        ("groups", "create"),
        ("groups", "list"),
        ("groups", "show"),
        ("jobs", "cancel"),
        ("jobs", "list"),
        ("jobs", "logs"),
        ("jobs", "show"),
        ("keys", "init"),
        ("keys", "rotate"),
        ("models", "compare"),
        ("models", "list"),
        ("models", "show"),
        ("models", "stage"),
        ("models", "upload"),
        ("retraining", "approve"),
        ("retraining", "decline"),
        ("retraining", "policy", "delete"),
        ("retraining", "policy", "set"),
        ("retraining", "policy", "show"),
        ("retraining", "runs"),
        ("retraining", "show"),
        ("rollout", "abort"),
        ("rollout", "approve"),
        ("rollout", "create"),
        ("rollout", "list"),
        ("rollout", "pause"),
        ("rollout", "resume"),
        ("rollout", "start"),
        ("rollout", "status"),
        ("samples", "export"),
        ("samples", "fold"),
        ("samples", "label"),
        ("samples", "list"),
        ("samples", "show"),
        ("server",),
        ("sim",),
        ("tokens", "create"),
        ("tokens", "revoke"),
        ("train",),
    ]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], obj=Wiring())
    assert result.exit_code == 0
    assert "edgefleet " + " ".join(path) in result.stdout.split("Example")[-1]
    if path[0] in REMOTE:
        assert "EDGEFLEET_TOKEN" in result.stdout
        assert "cli.toml" in result.stdout
    if path[-1] in {"list", "show"}:
        assert "--json" in result.stdout


def test_root_help_documents_precedence_and_exit_codes() -> None:
    text = CliRunner().invoke(cli, ["-h"]).stdout
    assert "else EDGEFLEET_URL / EDGEFLEET_TOKEN, else" in text
    assert "3 API unreachable, 4 no token or token refused" in text


def test_table_aligns_and_escapes() -> None:
    assert table(["A", "LONG"], [["xyz", 1], ["q", "\x1b[31mred"]]).splitlines() == [
        "A    LONG",
        "xyz  1",
        "q    \\x1b[31mred",
    ]
    assert clean("tab\there\u202e") == "tab\\there\\u202e"
    assert clean("plain ü") == "plain ü"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
    ],
)
def test_size(count: int, text: str) -> None:
    assert size(count) == text


def test_when() -> None:
    assert when(None) == "-"
    assert when(1_767_225_600.0) == "2026-01-01 00:00:00Z"
