"""``edgefleet devices`` against the running app, its broker and its database."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from edgefleet.server.db.models import Role
from edgefleet.shared.agent_config import parse_agent_config
from tests.server.api.conftest import Server, unique_id
from tests.server.cli.conftest import Cli, lines


def test_a_token_from_tokens_create_works_until_revoked(remote: Cli, server: Server) -> None:
    secret = remote.ok("tokens", "create", "ops-cli", "--role", "operator").stdout.strip()
    remote.ok("devices", "list", "--token", secret)
    remote.ok("tokens", "revoke", "ops-cli")
    refused = remote.fails(4, "devices", "list", "--token", secret)
    assert refused.stderr.splitlines() == [
        "error: token 'ops-cli' was revoked",
        "hint: the API refused the token: check --token / EDGEFLEET_TOKEN "
        "(revoked and expired tokens stop working)",
    ]


def test_provision_writes_a_private_bundle_the_agent_parses(
    remote: Cli, tmp_path: Path, server: Server
) -> None:
    device_id = unique_id("cam")
    bundle = tmp_path / "agent.toml"
    result = remote.ok(
        "devices", "provision", device_id, "--profile", "sim", "--tag", "line-3",
        "--tag", "north", "--label", "site=plant a", "--label", "rack=", "--output", str(bundle),
    )  # fmt: skip
    assert f"agent config written to {bundle} (mode 0600)" in result.stdout
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    config = parse_agent_config(bundle.read_text())
    assert (config.device.id, config.device.profile) == (device_id, "sim")
    assert config.broker.password not in result.output

    shown = json.loads(remote.ok("devices", "show", device_id, "--json").stdout)
    assert shown["tags"] == ["line-3", "north"]
    assert shown["labels"] == {"site": "plant a", "rack": ""}


def test_an_existing_output_file_is_not_overwritten(remote: Cli, tmp_path: Path) -> None:
    device_id = unique_id("cam")
    bundle = tmp_path / "agent.toml"
    bundle.write_text("keep me")
    result = remote.fails(
        2, "devices", "provision", device_id, "--profile", "sim", "--output", str(bundle)
    )
    assert "exists; pass --force" in result.stderr
    assert bundle.read_text() == "keep me"
    # Refused before the API call: the device was not provisioned without its password.
    remote.fails(1, "devices", "show", device_id)

    remote.ok("devices", "provision", device_id, "--profile", "sim", "-o", str(bundle), "--force")
    first = parse_agent_config(bundle.read_text())
    remote.fails(2, "devices", "rotate-credentials", device_id, "--output", str(bundle))
    rotated = remote.ok("devices", "rotate-credentials", device_id, "-o", str(bundle), "--force")
    assert "new credentials for" in rotated.stdout
    second = parse_agent_config(bundle.read_text())
    assert second.broker.password != first.broker.password
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600


def test_provision_without_output_prints_only_the_bundle(remote: Cli) -> None:
    device_id = unique_id("cam")
    result = remote.ok("devices", "provision", device_id, "--profile", "sim")
    assert parse_agent_config(result.stdout).device.id == device_id
    assert "shown only now" in result.stderr


def test_list_and_show_as_tables_and_json(remote: Cli) -> None:
    tag = unique_id("batch")
    ids = sorted(unique_id("cam") for _ in range(3))
    for device_id in ids:
        remote.ok("devices", "provision", device_id, "--profile", "sim", "--tag", tag)

    table = lines(remote.ok("devices", "list", "--tag", tag).stdout)
    assert table[0].split() == [
        "ID",
        "PROFILE",
        "STATE",
        "TAGS",
        "LAST",
        "SEEN",
        "AGENT",
        "RUNNING",
    ]
    assert [row.split()[:4] for row in table[1:]] == [[i, "sim", "provisioned", tag] for i in ids]
    assert len({row.index("sim") for row in table[1:]}) == 1  # columns line up

    page = json.loads(remote.ok("devices", "list", "--tag", tag, "--json").stdout)
    assert ([d["id"] for d in page["items"]], page["total"]) == (ids, 3)

    first = lines(remote.ok("devices", "list", "--tag", tag, "--limit", "2").stdout)
    assert first[-1] == "(1-2 of 3; --offset 2 for more)"
    rest = lines(remote.ok("devices", "list", "--tag", tag, "--offset", "2").stdout)
    assert [row.split()[0] for row in rest[1:]] == ids[2:]
    assert remote.ok("devices", "list", "--tag", unique_id("none")).stdout == "no devices match\n"

    shown = dict(line.split(":", 1) for line in lines(remote.ok("devices", "show", ids[0]).stdout))
    assert shown["id"].strip() == ids[0]
    assert shown["state"].strip() == "provisioned"
    assert shown["last seen"].strip() == "-"


def test_revoke_asks_first(remote: Cli) -> None:
    device_id = unique_id("cam")
    remote.ok("devices", "provision", device_id, "--profile", "sim")

    declined = remote.fails(1, "devices", "revoke", device_id, input="n\n")
    assert f"Revoke device {device_id}?" in declined.stderr
    assert (
        json.loads(remote.ok("devices", "show", device_id, "--json").stdout)["revoked_at"] is None
    )
    # No terminal and no --yes: nothing to confirm with, so nothing happens.
    remote.fails(1, "devices", "revoke", device_id, input="")

    done = remote.ok("devices", "revoke", device_id, input="y\n")
    assert f"revoked {device_id} at " in done.stdout
    assert (
        json.loads(remote.ok("devices", "show", device_id, "--json").stdout)["state"] == "revoked"
    )
    again = json.loads(remote.ok("devices", "revoke", device_id, "--yes", "--json").stdout)
    assert again["state"] == "revoked"


def test_api_refusals_exit_1_with_the_reason(remote: Cli, server: Server) -> None:
    missing = remote.fails(1, "devices", "show", "no-such-device")
    assert missing.stderr == "error: no device 'no-such-device'\n"
    assert missing.stdout == ""

    unknown = remote.fails(1, "devices", "provision", unique_id("cam"), "--profile", "toaster")
    assert unknown.stderr.startswith("error: ")
    assert "toaster" in unknown.stderr

    device_id = unique_id("cam")
    remote.ok("devices", "provision", device_id, "--profile", "sim")
    twice = remote.fails(1, "devices", "provision", device_id, "--profile", "sim")
    assert "exists; rotate its credentials" in twice.stderr

    remote.fails(2, "devices", "provision", unique_id("cam"), "--profile", "sim", "--label", "x")
    remote.fails(2, "devices", "list", "--state", "asleep")


def test_a_viewer_may_read_but_not_provision(remote: Cli, server: Server) -> None:
    viewer = {"EDGEFLEET_TOKEN": server.tokens[Role.VIEWER]}
    remote.ok("devices", "list", env=viewer)
    refused = remote.fails(
        4, "devices", "provision", unique_id("cam"), "--profile", "sim", env=viewer
    )
    assert refused.stderr.splitlines() == [
        "error: token 't-viewer' has role 'viewer'; this needs 'operator'",
        "hint: ask an admin for a token with a higher role",
    ]


def test_no_token_exits_4_before_calling(remote: Cli) -> None:
    result = remote.fails(4, "devices", "list", env={"EDGEFLEET_TOKEN": None})
    assert result.stderr.startswith("error: no API token\nhint: pass --token")
