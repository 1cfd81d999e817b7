"""``edgefleet rollout`` against the running app."""

from __future__ import annotations

import json

from edgefleet.server.cli.rollouts import render_status
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_models_api import upload
from tests.server.api.test_rollouts_api import fleet
from tests.server.cli.conftest import Cli, lines


def test_create_start_steer_and_watch(
    server: Server, remote: Cli, tflite_models: TfliteModels
) -> None:
    group, _ = fleet(server, 3)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    assert remote.ok("models", "stage", model, "1", "approved").stdout.strip() == (
        f"{model} v1: approved"
    )

    made = remote.ok(
        "rollout",
        "create",
        group,
        model,
        "1",
        "--waves",
        "1,100%",
        "--soak",
        "30",
        "--on-breach",
        "pause",
        "--start",
    ).stdout
    rid = made.split()[1].rstrip(":")
    assert made.strip() == f"rollout {rid}: running"

    shown = json.loads(remote.ok("rollout", "status", rid, "--json").stdout)
    assert [w["target"] for w in shown["waves"]] == ["1 devices", "100%"]
    assert shown["policy"]["breach_action"] == "pause"
    assert [w["soak_seconds"] for w in shown["waves"]] == [30.0, 30.0]
    text = remote.ok("rollout", "status", rid).stdout
    assert text == render_status(shown) + "\n"
    assert lines(text)[-3].split()[:2] == ["WAVE", "TARGET"]

    table = lines(remote.ok("rollout", "list", "--group", group).stdout)
    assert table[1].split()[:5] == [rid, group, model, "1", "running"]
    assert remote.ok("rollout", "pause", rid, "--reason", "night").stdout.strip().endswith("paused")
    refused = remote.fails(1, "rollout", "pause", rid)
    assert "it is paused" in refused.stderr
    assert remote.ok("rollout", "resume", rid).stdout.strip().endswith("running")
    assert remote.ok("rollout", "abort", rid).stdout.strip().endswith("aborted")
    # --watch ends by itself once the rollout is finished
    assert "aborted" in remote.ok("rollout", "status", rid, "--watch", "--interval", "0.2").stdout


def test_usage_errors_say_what_is_wrong(remote: Cli) -> None:
    bad = remote.fails(2, "rollout", "create", "g", "m", "1", "--waves", "1,ten%")
    assert "'ten%' is neither a percentage" in bad.stderr
    helped = remote.ok("rollout", "--help").stdout
    for command in ("create", "start", "pause", "resume", "approve", "abort", "status", "list"):
        assert command in helped
