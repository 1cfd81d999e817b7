"""The Drift page in Chromium: a model's fleet and group drift, devices ranked by drift, its
retraining policy and runs, each equal to what the API says; a range change redraws from the
server, a new window arrives live, and only operators decide runs (a stale page's 409 shown)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from edgefleet.server.db.models import Role
from tests.browser.conftest import LiveServer, SignIn, screenshot
from tests.browser.drift_seed import DriftSeed, add_drift_window, awaiting_run, seed_drift
from tests.harness.models import TfliteModels

TABLET = {"width": 820, "height": 1180}


@pytest.fixture(scope="module")
def drift(live_server: LiveServer, tflite_models: TfliteModels) -> DriftSeed:
    return seed_drift(live_server, tflite_models)


def open_drift(page: Page, **choice: str) -> None:
    page.goto(f"/ui/drift?{urlencode(choice)}")
    page.wait_for_selector("body[data-ready=true]")


def two(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def pooled_score(bucket: dict[str, Any]) -> float | None:
    scores = [p["score"] for p in bucket["pooled"] if p["score"] is not None]
    return max(scores) if scores else None


def api_series(live: LiveServer, page: Page, model: str, **scope: str) -> Any:
    """The API's series for exactly the span and bucket width the chart shows."""
    figure = page.locator("#chart-drift")
    return live.api(
        "/drift/series",
        model=model,
        since=figure.get_attribute("data-since"),
        until=figure.get_attribute("data-until"),
        bucket=figure.get_attribute("data-step"),
        **scope,
    )


def expect_ranked(page: Page, devices: list[dict[str, Any]]) -> None:
    rows = page.locator("#ranked tbody tr")
    expect(rows).to_have_count(len(devices))
    expect(rows.locator("a")).to_have_text([d["device"] for d in devices])
    expect(rows.locator("td:nth-child(3)")).to_have_text([two(d["score"]) for d in devices])


def test_drift_page_shows_what_the_api_says(
    live_server: LiveServer, sign_in: SignIn, drift: DriftSeed
) -> None:
    fleet = live_server.fleet
    site_b = fleet.groups["site-b"]
    waiting = awaiting_run(live_server, drift.model)
    page = sign_in(Role.OPERATOR)
    open_drift(page, model=drift.model, group=site_b)

    status: Any = live_server.api("/drift/status", model=drift.model)
    members = set(next(g for g in live_server.api("/groups") if g["name"] == site_b)["members"])
    in_group = [d for d in status["devices"] if d["device"] in members]
    assert [d["device"] for d in in_group] == [fleet.ids[p] for p in ("b1", "b2", "b3")]
    expect_ranked(page, in_group)
    link = page.get_by_role("link", name=fleet.ids["b1"], exact=True)
    expect(link).to_have_attribute("href", f"/ui/devices/{fleet.ids['b1']}")

    figure = page.locator("#chart-drift")
    expect(figure.locator("svg path.series-0")).to_have_count(1)
    expect(figure.locator("svg path.series-1")).to_have_count(1)
    whole = api_series(live_server, page, drift.model)
    group = api_series(live_server, page, drift.model, scope="group", name=site_b)
    assert figure.get_attribute("data-buckets") == str(len(whole["buckets"]))
    for scope, found in (("fleet", whole), ("group", group)):
        latest = [b for b in found["buckets"] if b["windows"]][-1]
        assert latest["pooled"][0]["flagged"]
        expect(page.locator(f'#series-latest [data-scope="{scope}"]')).to_contain_text(
            f"{latest['windows']} windows from {latest['devices']} devices, "
            f"{latest['flagged_devices']} flagged, mean score {two(latest['mean_score'])}, "
            f"max {two(latest['max_score'])}, pooled {two(pooled_score(latest))}"
        )
        features = latest["pooled"][0]["features"]
        cells = page.locator(f'#features tr[data-scope="{scope}"] td:nth-child(3)')
        expect(cells).to_have_text([f"{f['psi']:.3f}" for f in features])

    policy: Any = live_server.api(f"/models/{drift.model}/retraining-policy")
    shown = page.locator("[data-policy]")
    expect(page.locator('[data-policy="group"]')).to_have_text(fleet.groups["site-a"])
    expect(page.locator('[data-policy="approval"]')).to_have_text("manual")
    expect(page.locator('[data-policy="schedule"]')).to_have_text("0 3 1 1 * (UTC)")
    expect(page.locator('[data-policy="last_triggered_at"]')).to_have_text("never")
    next_slot = page.evaluate("s => new Date(s * 1000).toLocaleString()", policy["next_schedule"])
    expect(page.locator('[data-policy="next_schedule"]')).to_have_text(next_slot)
    expect(page.locator('[data-policy="drift"]')).to_have_text(
        "score ≥ 50 for 2 windows on 2 devices"
    )
    assert "–" not in shown.all_inner_texts()

    runs: Any = live_server.api("/retraining/runs", model=drift.model)
    expect(page.locator("#runs tbody tr td:nth-child(2)")).to_have_text([r["state"] for r in runs])
    awaiting = page.locator(f'#runs tr[data-run="{waiting}"]')
    expect(awaiting.get_by_role("button")).to_have_text(["Approve", "Decline"])
    expect(page.locator(f'#runs tr[data-run="{drift.rejected_run}"] button')).to_have_count(0)
    screenshot(page, "drift")

    week_option = page.locator("#drift-filter select[name=range] option", has_text="7 days")
    week_step = week_option.get_attribute("data-step")
    assert week_step is not None
    assert float(week_step) > whole["bucket_seconds"]
    page.select_option("#drift-filter select[name=range]", label="7 days")
    expect(figure).to_have_attribute("data-step", week_step)
    week = api_series(live_server, page, drift.model)
    assert week["until"] - week["since"] == 604_800
    assert figure.get_attribute("data-buckets") == str(len(week["buckets"]))
    assert "range=604800" in page.url


def test_a_new_window_reranks_the_devices_live(
    live_server: LiveServer, sign_in: SignIn, drift: DriftSeed
) -> None:
    device = live_server.fleet.ids["a4"]
    page = sign_in(Role.VIEWER)
    open_drift(page, model=drift.model)
    expect_ranked(page, live_server.api("/drift/status", model=drift.model)["devices"])
    add_drift_window(
        live_server, drift.model, drift.baseline, device, end=time.time(), score=9.5, flagged=True
    )
    expect(page.locator("#ranked tbody tr").first.locator("a")).to_have_text(device)
    expect_ranked(page, live_server.api("/drift/status", model=drift.model)["devices"])


def test_operator_declines_a_run_and_a_stale_approve_says_why(
    live_server: LiveServer, sign_in: SignIn, drift: DriftSeed
) -> None:
    first = awaiting_run(live_server, drift.model)
    page = sign_in(Role.OPERATOR)
    open_drift(page, model=drift.model)
    row = page.locator(f'#runs tr[data-run="{first}"]')
    row.get_by_role("button", name="Decline").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.fill("#confirm-reason", "drift is a sensor fault")
    page.click("#confirm-yes")
    expect(page.locator("#run-status")).to_have_text(f"Run {first} is declined.")
    expect(row.locator("td:nth-child(2)")).to_have_text("declined")
    declined: Any = live_server.api(f"/retraining/runs/{first}")
    assert declined["state"] == "declined"
    assert declined["reason"] == "declined by ui-operator: drift is a sensor fault"

    second = awaiting_run(live_server, drift.model)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    live_server.http.post(
        f"/api/v1/retraining/runs/{second}/decline",
        headers=live_server.headers(Role.OPERATOR),
        json={"reason": "decided elsewhere"},
    ).raise_for_status()
    page.locator(f'#runs tr[data-run="{second}"]').get_by_role("button", name="Approve").click()
    page.click("#confirm-yes")
    expect(page.locator("#run-status")).to_have_text(
        f"Refused: cannot approve retraining run {second}: it is declined, not awaiting_approval"
    )
    expect(page.locator(f'#runs tr[data-run="{second}"] td:nth-child(2)')).to_have_text("declined")


def test_viewer_on_a_tablet_sees_no_decisions_and_a_model_without_policy(
    live_server: LiveServer, sign_in: SignIn, drift: DriftSeed
) -> None:
    awaiting_run(live_server, drift.model)
    page = sign_in(Role.VIEWER, viewport=TABLET)
    open_drift(page, model=drift.model)
    expect(
        page.locator("#runs tbody tr td:nth-child(2)", has_text="awaiting_approval")
    ).to_have_count(1)
    expect(page.locator("#runs button, #confirm")).to_have_count(0)
    expect(page.locator("#runs thead th")).to_have_count(6)
    screenshot(page, "drift-tablet")

    page.select_option("#drift-filter select[name=model]", drift.bare_model)
    page.click("#drift-filter button[type=submit]")
    expect(page.locator("#policy-summary")).to_have_text(
        f"{drift.bare_model} has no retraining policy: it is never retrained on its own."
    )
    expect(page.locator("#policy")).to_be_hidden()
    expect(page.locator("#ranked tbody")).to_have_text(
        "No device has sent a drift window of this model."
    )
    expect(page.locator("#runs tbody")).to_have_text("No retraining runs yet.")
    assert (
        live_server.http.get(
            f"/api/v1/models/{drift.bare_model}/retraining-policy", headers=live_server.headers()
        ).status_code
        == 404
    )
