"""``edgefleet retraining`` against the running app."""

from __future__ import annotations

import json
from pathlib import Path

from edgefleet.server.cli.retraining import render_run
from edgefleet.server.cli.retraining_policy import policy_body, render_policy
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_models_api import upload
from tests.server.api.test_retraining_api import awaiting_run
from tests.server.api.test_rollouts_api import approve, fleet
from tests.server.cli.conftest import Cli, lines


def test_policy_body_flags_override_the_file_field_by_field() -> None:
    base = {"group": "a", "drift": {"min_devices": 3, "score_threshold": 2.0}, "samples": None}
    flags = {
        "group": "b",
        "drift.min_devices": 5,
        "drift.group_percent": None,
        "samples.min_labelled": 40,
        "cooldown_seconds": None,
    }
    assert policy_body(base, flags) == {
        "group": "b",
        "drift": {"min_devices": 5, "score_threshold": 2.0},
        "samples": {"min_labelled": 40},
    }
    assert base["drift"] == {"min_devices": 3, "score_threshold": 2.0}
    assert policy_body({}, {"schedule.cron": None}) == {}


def test_policy_set_show_and_delete(
    server: Server, remote: Cli, tflite_models: TfliteModels, tmp_path: Path
) -> None:
    group, _ = fleet(server, 2)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")

    made = remote.ok(
        "retraining",
        "policy",
        "set",
        model,
        "--group",
        group,
        "--group-percent",
        "50",
        "--drift-windows",
        "2",
        "--schedule",
        "0 3 * * *",
        "--cooldown",
        "600",
        "--approval",
        "manual",
    ).stdout
    shown = json.loads(remote.ok("retraining", "policy", "show", model, "--json").stdout)
    policy = shown["policy"]
    assert policy["drift"] == {
        "score_threshold": 1.0,
        "consecutive_windows": 2,
        "min_devices": None,
        "group_percent": 50.0,
    }
    assert (policy["schedule"]["cron"], policy["cooldown_seconds"], policy["approval"]) == (
        "0 3 * * *",
        600.0,
        "manual",
    )
    assert made == remote.ok("retraining", "policy", "show", model).stdout
    assert made == render_policy(shown) + "\n"
    text = dict(line.split(":", 1) for line in lines(made))
    assert text["drift"].strip() == "score >= 1 for 2 windows in a row in 50% of the group"
    assert text["rolls out to"].strip() == f"{group} (default rollout policy)"

    # A file replaces the policy; a flag beside it overrides one setting.
    (tmp_path / "policy.json").write_text(
        json.dumps({"samples": {"min_labelled": 30}, "rollout_group": group, "cooldown_seconds": 5})
    )
    from_file = remote.ok(
        "retraining", "policy", "set", model, "--file", str(tmp_path / "policy.json"), "--json"
    ).stdout
    replaced = json.loads(from_file)["policy"]
    assert (replaced["drift"], replaced["schedule"], replaced["group"]) == (None, None, None)
    assert (replaced["samples"], replaced["cooldown_seconds"]) == ({"min_labelled": 30}, 5.0)
    piped = remote.ok(
        "retraining",
        "policy",
        "set",
        model,
        "--file",
        "-",
        "--min-labelled",
        "80",
        "--json",
        input=json.dumps({"samples": {"min_labelled": 30}, "group": group}),
    ).stdout
    assert json.loads(piped)["policy"]["samples"] == {"min_labelled": 80}

    bad_json = remote.fails(2, "retraining", "policy", "set", model, "--file", "-", input="{")
    assert "Invalid value for --file: <stdin>: not JSON" in bad_json.stderr
    not_object = remote.fails(2, "retraining", "policy", "set", model, "--file", "-", input="[]")
    assert "not a JSON object" in not_object.stderr
    contradiction = remote.fails(1, "retraining", "policy", "set", model, "--group-percent", "10")
    assert "error: drift.group_percent needs group" in contradiction.stderr
    unknown = remote.fails(
        1, "retraining", "policy", "set", "nope", "--min-labelled", "5", "--approval", "manual"
    )
    assert "no model 'nope'" in unknown.stderr
    # The refusals left the piped policy in place.
    kept = json.loads(remote.ok("retraining", "policy", "show", model, "--json").stdout)
    assert kept["policy"]["samples"] == {"min_labelled": 80}

    assert remote.ok("retraining", "policy", "delete", model).stdout == (
        f"{model}: retraining policy deleted\n"
    )
    gone = remote.fails(1, "retraining", "policy", "show", model)
    assert "has no retraining policy" in gone.stderr


def test_runs_show_approve_and_decline(
    server: Server, remote: Cli, tflite_models: TfliteModels
) -> None:
    group, _ = fleet(server, 2)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    upload(server, model, tflite_models.float32, "sim", "float32")
    approve(server, model, 1)
    remote.ok("retraining", "policy", "set", model, "--group", group, "--min-labelled", "1000")
    first = awaiting_run(server, model, challenger=2)

    table = lines(remote.ok("retraining", "runs", "--model", model).stdout)
    assert table[0].split() == ["ID", "MODEL", "STATE", "TRIGGER", "VERSIONS", "ROLLOUT", "CREATED"]
    assert table[1].split()[:7] == [
        str(first),
        model,
        "awaiting_approval",
        "samples",
        "v1",
        "->",
        "v2",
    ]
    # Nothing is waiting for labels or training, so --watch draws once and ends.
    watched = remote.ok("retraining", "runs", "--model", model, "--watch", "--interval", "0.2")
    assert lines(watched.stdout) == table

    shown = json.loads(remote.ok("retraining", "show", str(first), "--json").stdout)
    assert remote.ok("retraining", "show", str(first)).stdout == render_run(shown) + "\n"
    fields = dict(line.split(":", 1) for line in lines(render_run(shown)))
    assert fields["decision"].strip() == "promote: gains +6.00 points"
    assert fields["gain"].strip() == "+6.00 points"

    promoted = json.loads(remote.ok("retraining", "approve", str(first), "--json").stdout)
    assert promoted["state"] == "promoted"
    assert promoted["rollout_id"] in remote.ok("rollout", "list", "--group", group).stdout
    again = remote.fails(1, "retraining", "approve", str(first))
    assert "it is promoted, not awaiting_approval" in again.stderr

    second = awaiting_run(server, model, challenger=2)
    needs_reason = remote.fails(2, "retraining", "decline", str(second))
    assert "--reason" in needs_reason.stderr
    declined = remote.ok("retraining", "decline", str(second), "--reason", "wait").stdout
    assert "declined by t-operator: wait" in declined
    assert remote.fails(1, "retraining", "show", "999999").stderr.startswith(
        "error: no retraining run 999999"
    )
    listed = json.loads(remote.ok("retraining", "runs", "--model", model, "--json").stdout)
    assert [(r["id"], r["state"]) for r in listed] == [
        (second, "declined"),
        (first, "promoted"),
    ]
    older = json.loads(
        remote.ok("retraining", "runs", "--model", model, "--before", str(second), "--json").stdout
    )
    assert [r["id"] for r in older] == [first]


def test_a_failed_approval_exits_1_with_the_reason(
    server: Server, remote: Cli, tflite_models: TfliteModels
) -> None:
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    upload(server, model, tflite_models.float32, "sim", "float32")
    approve(server, model, 1)
    # Manual approval with no group: the challenger has nowhere to roll out.
    remote.ok("retraining", "policy", "set", model, "--min-labelled", "5", "--approval", "manual")
    run = awaiting_run(server, model, challenger=2)
    failed = remote.fails(1, "retraining", "approve", str(run))
    assert "state:" in failed.stdout
    assert f"error: retraining run {run} failed: nothing to promote" in failed.stderr
