"""``edgefleet groups``, ``models`` and ``audit`` against the running app."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.cli.conftest import Cli, lines


def fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines(text))}


def test_groups_by_selector_and_by_members(remote: Cli) -> None:
    tag = unique_id("line")
    ids = sorted(unique_id("cam") for _ in range(2))
    for device_id in ids:
        remote.ok("devices", "provision", device_id, "--profile", "sim", "--tag", tag)

    by_tag = unique_id("g")
    created = fields(remote.ok("groups", "create", by_tag, "--selector", f"tag:{tag}").stdout)
    assert (created["kind"], created["selector"]) == ("selector", f"tag:{tag}")
    assert created["members"] == f"2: {','.join(ids)}"

    static = unique_id("g")
    made = json.loads(
        remote.ok(
            "groups", "create", static, "--member", ids[0], "--description", "canary", "--json"
        ).stdout
    )
    assert (made["kind"], made["members"]) == ("static", [ids[0]])

    table = lines(remote.ok("groups", "list").stdout)
    assert table[0].split() == ["NAME", "KIND", "MEMBERS", "SELECTOR", "DESCRIPTION"]
    rows = {row.split()[0]: row.split()[1:] for row in table[1:]}
    assert rows[by_tag] == ["selector", "2", f"tag:{tag}"]
    assert rows[static] == ["static", "1", "-", "canary"]
    assert by_tag in {g["name"] for g in json.loads(remote.ok("groups", "list", "--json").stdout)}
    assert json.loads(remote.ok("groups", "show", static, "--json").stdout) == made
    assert fields(remote.ok("groups", "show", by_tag).stdout)["kind"] == "selector"


def test_group_usage_and_refusals(remote: Cli) -> None:
    both = remote.fails(2, "groups", "create", "g", "--selector", "all", "--member", "x")
    assert "either --selector or --member" in both.stderr
    remote.fails(2, "groups", "create", "g")
    bad = remote.fails(1, "groups", "create", unique_id("g"), "--selector", "tag:")
    assert bad.stderr.startswith("error: ")
    assert remote.fails(1, "groups", "show", "nope").stderr.startswith("error: ")


def test_models_upload_list_show(remote: Cli, tflite_models: TfliteModels, tmp_path: Path) -> None:
    model_file = tmp_path / "vibration_int8.tflite"
    model_file.write_bytes(tflite_models.int8)
    name = unique_id("vib")
    uploaded = remote.ok(
        "models", "upload", name, str(model_file), "--profile", "sim", "--profile", "rpi4",
        "--variant", "int8", "--metrics", '{"accuracy": 0.93}', "--dataset-hash", "ab" * 32,
    )  # fmt: skip
    out = uploaded.stdout
    assert out.startswith(f"uploaded {name} v1 (candidate)\n")
    digest = hashlib.sha256(tflite_models.int8).hexdigest()
    artifacts = [row.split() for row in lines(out.split("\n\n")[1])]
    assert artifacts[0] == ["PROFILE", "VARIANT", "SIZE", "SHA256"]
    assert {(a[0], a[1], a[-1]) for a in artifacts[1:]} == {
        ("rpi4", "int8", digest),
        ("sim", "int8", digest),
    }

    second = json.loads(
        remote.ok(
            "models", "upload", name, str(model_file), "--profile", "sim", "--variant", "int8",
            "--json",
        ).stdout
    )  # fmt: skip
    assert (second["version"], second["metrics"]) == (2, {})

    table = lines(remote.ok("models", "list").stdout)
    assert table[0].split() == ["NAME", "LATEST", "VERSIONS", "CREATED", "DESCRIPTION"]
    assert next(r for r in table if r.startswith(name)).split()[1:3] == ["2", "2"]
    listed = {m["name"]: m for m in json.loads(remote.ok("models", "list", "--json").stdout)}
    assert listed[name]["versions"] == [1, 2]

    assert fields(remote.ok("models", "show", name).stdout)["versions"] == "1,2"
    v1 = json.loads(remote.ok("models", "show", name, "--version", "1", "--json").stdout)
    assert (v1["metrics"], v1["dataset_hash"]) == ({"accuracy": 0.93}, "ab" * 32)
    shown = fields(remote.ok("models", "show", name, "--version", "1").stdout.split("\n\n")[0])
    assert (shown["stage"], shown["metrics"]) == ("candidate", '{"accuracy": 0.93}')
    missing = remote.fails(1, "models", "show", name, "--version", "9")
    assert missing.stderr.startswith("error: ")
    assert "9" in missing.stderr


def test_model_upload_refusals(remote: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    args = ["models", "upload", unique_id("m"), str(junk), "--profile", "sim", "--variant", "int8"]
    refused = remote.fails(1, *args)
    assert refused.stderr.startswith("error: ")
    assert "Traceback" not in refused.stderr
    bad_json = remote.fails(2, *args, "--metrics", "{accuracy: 1}")
    assert "not JSON" in bad_json.stderr
    assert "want a JSON object" in remote.fails(2, *args, "--metrics", "[1]").stderr
    remote.fails(2, *args[:3], str(tmp_path / "absent.tflite"), *args[4:])
    remote.fails(2, "models", "upload", "m", str(junk), "--variant", "int8")


def test_audit_list_filters(remote: Cli, server: Server) -> None:
    device_id = unique_id("cam")
    remote.ok("devices", "provision", device_id, "--profile", "sim")
    remote.ok("devices", "revoke", device_id, "--yes")
    records = json.loads(remote.ok("audit", "list", "--target-id", device_id, "--json").stdout)
    assert [r["action"] for r in records] == ["device.revoke", "device.provision"]
    table = lines(remote.ok("audit", "list", "--target-id", device_id, "--limit", "1").stdout)
    assert table[0].split() == ["AT", "ACTOR", "ACTION", "TARGET"]
    assert table[1].split()[2:] == ["t-operator", "device.revoke", f"device/{device_id}"]
    none = remote.ok("audit", "list", "--actor", "nobody", "--action", "device.revoke")
    assert none.stdout == "no audit records match\n"


def test_labels_cannot_drive_the_terminal(remote: Cli) -> None:
    device_id = unique_id("cam")
    remote.ok("devices", "provision", device_id, "--profile", "sim", "--label", "note=\x1b[2Jhi")
    shown = remote.ok("devices", "show", device_id).stdout
    assert "\x1b" not in shown
    assert "note=\\x1b[2Jhi" in shown
