"""Retraining policies and runs through the REST API, on a real broker and both databases.

A run awaiting approval is inserted as the loop leaves it (its challenger a
real uploaded TFLite version); approving it must open a real staged rollout.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from edgefleet.server.db.models import RetrainingPolicyRecord, RetrainingRun, RetrainingState, Role
from edgefleet.server.registry import get_model
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_models_api import upload
from tests.server.api.test_rollouts_api import approve, fleet, refused

API = "/api/v1"


def policy_url(model: str) -> str:
    return f"{API}/models/{model}/retraining-policy"


def put_policy(server: Server, model: str, body: Any, role: Role = Role.OPERATOR) -> Any:
    return server.client.put(policy_url(model), headers=server.headers(role), json=body)


def get(server: Server, path: str, role: Role = Role.VIEWER, **params: Any) -> Any:
    return server.client.get(f"{API}{path}", headers=server.headers(role), params=params)


def post(server: Server, path: str, body: Any = None, role: Role = Role.OPERATOR) -> Any:
    return server.client.post(f"{API}{path}", headers=server.headers(role), json=body)


def audit_trail(server: Server, **params: Any) -> list[dict[str, Any]]:
    """Oldest first."""
    return list(reversed(get(server, "/audit", Role.ADMIN, **params).json()))


def awaiting_run(server: Server, model: str, challenger: int) -> int:
    """A run as the loop leaves it after its challenger won under a manual policy."""
    now = server.services.clock()
    with server.services.sessions() as session:
        run = RetrainingRun(
            model_name=model,
            state=RetrainingState.AWAITING_APPROVAL,
            active_key=model,
            trigger={"reason": "samples", "message": "samples: 40 new labelled edge samples"},
            champion_version=1,
            challenger_version=challenger,
            decision={"promote": True, "reason": "gains +6.00 points", "gain_points": 6.0},
            created_at=now,
            updated_at=now,
        )
        session.add(run)
        session.commit()
        return run.id


def next_three_am(after: float) -> float:
    moment = datetime.fromtimestamp(after, UTC)
    slot = moment.replace(hour=3, minute=0, second=0, microsecond=0)
    return (slot if slot > moment else slot + timedelta(days=1)).timestamp()


def test_policy_refusals_set_show_replace_delete(
    server: Server, tflite_models: TfliteModels
) -> None:
    server.client.app.state.runtime.scheduler.pause()  # type: ignore[attr-defined]
    group, _ = fleet(server, 2)
    model = unique_id("m")
    upload(server, model, tflite_models.float32, "sim", "float32")
    good = {
        "group": group,
        "drift": {"min_devices": 2, "consecutive_windows": 2},
        "schedule": {"cron": "0 3 * * *"},
        "cooldown_seconds": 600,
        "approval": "manual",
    }

    refused(get(server, f"/models/{model}/retraining-policy"), 404, "has no retraining policy")
    refused(get(server, "/models/nope/retraining-policy"), 404, "no model 'nope'")
    refused(put_policy(server, "nope", good), 404, "no model 'nope'")
    refused(put_policy(server, model, {**good, "group": "nope"}), 404, "no group 'nope'")
    refused(put_policy(server, model, {**good, "rollout_group": "gone"}), 404, "no group 'gone'")
    refused(put_policy(server, model, {**good, "data": {"dataset": "ds"}}), 404, "no dataset 'ds'")
    for body, words in (
        (
            {**good, "samples": {"min_labelled": 5}, "data": {"include_edge_samples": False}},
            "data.include_edge_samples=false contradicts samples",
        ),
        ({"drift": {"group_percent": 10}}, "drift.group_percent needs group"),
        ({**good, "drift": {"min_devices": "two"}}, "drift.min_devices must be a whole number"),
        ({**good, "drift": {"min_devices": 0}}, "drift.min_devices must be >= 1"),
        ({**good, "schedule": {"cron": "sometimes"}}, "schedule.cron"),
        ({**good, "surprise": 1}, "surprise is not a policy field"),
        ({"group": group}, "enabled needs a trigger"),
        ({"samples": {"min_labelled": 5}}, "approval=automatic needs rollout_group or group"),
        ({**good, "rollout_policy": {"waves": [{"percent": 50}]}}, "rollout_policy.waves[0]"),
    ):
        refused(put_policy(server, model, body), 422, words)
    not_an_object = put_policy(server, model, [good])
    assert not_an_object.status_code == 422, not_an_object.text
    assert not_an_object.json()["error"] == "invalid_request"
    assert put_policy(server, model, good, role=Role.VIEWER).status_code == 403
    refused(get(server, f"/models/{model}/retraining-policy"), 404, "has no retraining policy")
    assert audit_trail(server, target_id=model, action="retraining_policy.set") == []

    before = server.services.clock()
    stored = put_policy(server, model, good)
    assert stored.status_code == 200, stored.text
    shown = get(server, f"/models/{model}/retraining-policy").json()
    assert shown == stored.json()
    assert shown["model"] == model
    assert shown["updated_by"] == "t-operator"
    assert shown["policy"]["data"] == {
        "dataset": None,
        "include_edge_samples": True,
        "edge_weight": 1,
        "max_edge_samples": 5000,
    }
    assert shown["policy"]["drift"]["score_threshold"] == 1.0
    assert shown["policy"]["schedule"] == {"cron": "0 3 * * *", "timezone": "UTC"}
    assert (shown["last_triggered_at"], shown["last_checked_at"]) == (None, None)
    assert shown["cooldown_until"] is None
    assert shown["next_schedule"] == next_three_am(shown["updated_at"])

    # One pass of the loop (the test's own: the scheduler is paused) finds no trigger,
    # as no device sent drift windows, but records that it looked.
    server.client.app.state.runtime.retraining.tick()  # type: ignore[attr-defined]
    checked = get(server, f"/models/{model}/retraining-policy").json()
    assert before <= checked["last_checked_at"] <= server.services.clock()
    assert checked["last_triggered_at"] is None

    # A cron slot inside the cool-down is skipped: the next one is the first at or after its end.
    every_minute = {**good, "schedule": {"cron": "* * * * *"}}
    assert put_policy(server, model, every_minute).status_code == 200
    triggered = server.services.clock() - 100
    with server.services.sessions() as session:
        record = session.get(RetrainingPolicyRecord, get_model(session=session, name=model).id)
        assert record is not None
        record.last_triggered_at = triggered
        session.commit()
    cooling = get(server, f"/models/{model}/retraining-policy").json()
    assert cooling["cooldown_until"] == triggered + 600
    assert cooling["next_schedule"] == math.ceil((triggered + 600) / 60) * 60

    assert (
        server.client.delete(policy_url(model), headers=server.headers(Role.VIEWER)).status_code
        == 403
    )
    deleted = server.client.delete(policy_url(model), headers=server.headers(Role.OPERATOR))
    assert deleted.status_code == 204, deleted.text
    refused(get(server, f"/models/{model}/retraining-policy"), 404, "has no retraining policy")
    refused(
        server.client.delete(policy_url(model), headers=server.headers(Role.OPERATOR)),
        404,
        "has no retraining policy",
    )

    trail = [
        r for r in audit_trail(server, target_id=model) if r["action"].startswith("retraining")
    ]
    assert [(r["action"], r["actor"]) for r in trail] == [
        ("retraining_policy.set", "t-operator"),
        ("retraining_policy.set", "t-operator"),
        ("retraining_policy.delete", "t-operator"),
    ]
    assert (trail[0]["before"], trail[0]["after"]) == (None, stored.json()["policy"])
    assert trail[1]["before"] == stored.json()["policy"]
    assert trail[1]["after"]["schedule"]["cron"] == "* * * * *"
    assert (trail[2]["before"], trail[2]["after"]) == (trail[1]["after"], None)


def test_runs_list_show_approve_decline(server: Server, tflite_models: TfliteModels) -> None:
    group, _ = fleet(server, 2)
    model = unique_id("m")
    for _ in range(3):  # the champion, the challenger, a second challenger
        upload(server, model, tflite_models.float32, "sim", "float32")
    approve(server, model, 1)
    policy = {"group": group, "samples": {"min_labelled": 1000}, "approval": "manual"}
    assert put_policy(server, model, policy).status_code == 200

    first = awaiting_run(server, model, challenger=2)
    shown = get(server, f"/retraining/runs/{first}").json()
    assert (shown["state"], shown["challenger_version"], shown["rollout_id"]) == (
        "awaiting_approval",
        2,
        None,
    )
    refused(get(server, "/retraining/runs/999999"), 404, "no retraining run 999999")
    assert post(server, f"/retraining/runs/{first}/approve", role=Role.VIEWER).status_code == 403
    assert (
        post(server, f"/retraining/runs/{first}/decline", {"reason": "x"}, Role.VIEWER).status_code
        == 403
    )
    refused(
        post(server, f"/retraining/runs/{first}/decline", {"reason": "x" * 501}),
        422,
        "at most 500 characters",
    )
    assert post(server, f"/retraining/runs/{first}/decline", {}).status_code == 422
    assert get(server, f"/retraining/runs/{first}").json()["state"] == "awaiting_approval"

    approved = post(server, f"/retraining/runs/{first}/approve")
    assert approved.status_code == 200, approved.text
    run = approved.json()
    assert run["state"] == "promoted", run
    assert run["finished_at"] is not None
    rollout = get(server, f"/rollouts/{run['rollout_id']}").json()
    assert (rollout["state"], rollout["group"], rollout["model"], rollout["version"]) == (
        "running",
        group,
        model,
        2,
    )
    assert rollout["created_by"] == "t-operator"
    assert get(server, f"/models/{model}/versions/2").json()["stage"] == "approved"
    refused(post(server, f"/retraining/runs/{first}/approve"), 409, "it is promoted")
    refused(
        post(server, f"/retraining/runs/{first}/decline", {"reason": "late"}),
        409,
        "not awaiting_approval",
    )

    # The group already has an active rollout: the run fails and says why; v3 stays approved.
    second = awaiting_run(server, model, challenger=3)
    failed = post(server, f"/retraining/runs/{second}/approve").json()
    assert failed["state"] == "failed"
    assert "v3 is approved but its rollout" in failed["reason"]
    assert "another active rollout" in failed["reason"]
    assert failed["rollout_id"] is None

    third = awaiting_run(server, model, challenger=3)
    declined = post(server, f"/retraining/runs/{third}/decline", {"reason": "not before Monday"})
    assert declined.status_code == 200, declined.text
    assert (declined.json()["state"], declined.json()["reason"]) == (
        "declined",
        "declined by t-operator: not before Monday",
    )
    refused(post(server, f"/retraining/runs/{third}/approve"), 409, "it is declined")

    fourth = awaiting_run(server, model, challenger=3)
    assert server.client.delete(policy_url(model), headers=server.headers()).status_code == 204
    refused(
        post(server, f"/retraining/runs/{fourth}/approve"),
        409,
        "no longer has a retraining policy",
    )
    assert get(server, f"/retraining/runs/{fourth}").json()["state"] == "awaiting_approval"

    newest_first = [fourth, third, second, first]
    assert [r["id"] for r in get(server, "/retraining/runs", model=model).json()] == newest_first
    page = get(server, "/retraining/runs", model=model, limit=2).json()
    assert [r["id"] for r in page] == newest_first[:2]
    rest = get(server, "/retraining/runs", model=model, before=page[-1]["id"]).json()
    assert [r["id"] for r in rest] == newest_first[2:]
    assert get(server, "/retraining/runs", model="other").json() == []
    assert get(server, "/retraining/runs", limit=0).status_code == 422

    decisions = [
        (r["action"], r["actor"], r["target_id"], r["after"].get("reason"))
        for r in audit_trail(server, target_type="retraining_run")
        if r["target_id"] in {str(first), str(second), str(third)}
    ]
    assert decisions == [
        ("retraining_run.approve", "t-operator", str(first), None),
        ("retraining_run.approve", "t-operator", str(second), None),
        ("retraining_run.decline", "t-operator", str(third), "not before Monday"),
    ]
    alerts = [
        (r["action"], r["after"]["run"])
        for r in audit_trail(server, target_id=model)
        if r["action"].startswith("alert.")
    ]
    assert alerts == [
        ("alert.retraining.promoted", first),
        ("alert.retraining.failed", second),
        ("alert.retraining.declined", third),
    ]
