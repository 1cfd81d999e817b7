"""The Models page in Chromium, on versions the real registry and training runner made.

Every number the page shows is checked against the API's answer for the same thing;
a training job started from the page's form is watched to the end without a reload.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from edgefleet.server.db.models import Role
from tests.browser.conftest import LiveServer, SignIn, screenshot
from tests.browser.models_seed import JOB_SECONDS, SeededModel, add_dataset, seed_model
from tests.harness.models import TfliteModels
from tests.server.api.conftest import unique_id

TABLET: ViewportSize = {"width": 820, "height": 1180}


# Every value the job panel's state and phase take, in order, as the page shows them.
WATCH_JOB = """() => {
  window.__seen = { state: [], phase: [] };
  for (const name of ["state", "phase"]) {
    const field = document.querySelector(`#job [data-field="${name}"]`);
    new MutationObserver(() => {
      const seen = window.__seen[name];
      if (seen[seen.length - 1] !== field.textContent) seen.push(field.textContent);
    }).observe(field, { childList: true, characterData: true, subtree: true });
  }
}"""


@pytest.fixture(scope="module")
def dataset(live_server: LiveServer) -> str:
    return add_dataset(live_server)


@pytest.fixture(scope="module")
def seeded(live_server: LiveServer, tflite_models: TfliteModels, dataset: str) -> SeededModel:
    return seed_model(live_server, tflite_models, dataset)


def shown(value: float | None) -> str:
    """A number as the page writes it: four decimals at most, no trailing zeros."""
    if value is None:
        return "–"
    rounded = round(value, 4)
    return str(int(rounded)) if rounded == int(rounded) else str(rounded)


def open_models(page: Page, query: str = "") -> None:
    page.get_by_role("link", name="Models", exact=True).click()
    page.wait_for_selector("body[data-ready=true]")
    if query:
        page.goto(f"/ui/models{query}")
        page.wait_for_selector("body[data-ready=true]")


def test_versions_show_the_apis_numbers_per_variant_and_their_lineage(
    live_server: LiveServer, sign_in: SignIn, seeded: SeededModel
) -> None:
    page = sign_in(Role.VIEWER)
    open_models(page)
    model: Any = live_server.api(f"/models/{seeded.name}")
    row = page.locator(f'#models tr[data-model="{seeded.name}"]')
    expect(row.locator(".model-versions")).to_have_text(str(len(model["versions"])))
    row.get_by_role("link").click()
    expect(page.locator("#versions article")).to_have_count(len(model["versions"]))

    trained: Any = live_server.api(f"/models/{seeded.name}/versions/2")
    variants = trained["metrics"]["variants"]
    assert variants, "a trained version carries per-variant metrics"
    for name, found in variants.items():
        cells = page.locator(f'#version-2 tr[data-variant="{name}"]')
        expect(cells.locator(".size")).to_have_text(str(found["size"]))
        expect(cells.locator(".accuracy")).to_have_text(shown(found["metrics"]["accuracy"]))
        expect(cells.locator(".latency")).to_have_text(shown(found["latency_ms"]))
    uploaded: Any = live_server.api(f"/models/{seeded.name}/versions/1")
    float32 = page.locator('#version-1 tr[data-variant="float32"]')
    expect(float32.locator(".size")).to_have_text(str(uploaded["artifacts"][0]["size"]))
    expect(float32.locator(".accuracy")).to_have_text(shown(uploaded["metrics"]["accuracy"]))

    lineage = page.locator("#version-2 dl")
    expect(lineage.locator('[data-lineage="dataset"]')).to_have_text(f"{seeded.dataset} v1")
    expect(lineage.locator('[data-lineage="recipe"]')).to_have_text(
        f"cnn1d, {trained['metrics']['lineage']['epochs']} epochs"
    )
    expect(page.locator('#version-1 [data-lineage="training run"]')).to_have_text("uploaded")
    lineage.locator('[data-lineage="training run"] a').click()
    job: Any = live_server.api(f"/training/jobs/{seeded.job_id}")
    expect(page.locator('#job [data-field="state"]')).to_have_text(job["state"])
    expect(page.locator('#job [data-field="version"]')).to_have_text(f"{seeded.name} v2")
    logs: Any = live_server.api(f"/training/jobs/{seeded.job_id}/logs")
    expect(page.locator("#job-logs li")).to_have_count(len(logs))
    expect(page.locator("#start-job")).to_have_count(0)
    screenshot(page, "models-viewer")
    page.set_viewport_size(TABLET)
    screenshot(page, "models-tablet")


def test_two_versions_compared_side_by_side(
    live_server: LiveServer, sign_in: SignIn, seeded: SeededModel
) -> None:
    page = sign_in(Role.VIEWER)
    open_models(page, f"?model={seeded.name}")
    page.select_option("#compare-a", "1")
    page.select_option("#compare-b", "2")
    page.click("#compare button[type=submit]")
    found: Any = live_server.api(f"/models/{seeded.name}/compare", a=1, b=2)
    table = page.locator("#compare-table")
    expect(page.locator("#comparison-title")).to_have_text(f"{seeded.name}: v1 (A) against v2 (B)")
    accuracy = table.locator('tr[data-compare="accuracy"] td')
    expect(accuracy.nth(0)).to_have_text(shown(found["a"]["metrics"]["accuracy"]))
    expect(accuracy.nth(1)).to_have_text(shown(found["b"]["metrics"]["float"]["accuracy"]))
    expect(accuracy.nth(2)).to_have_text(shown(found["differences"]["metrics"]["accuracy"]))
    sim = found["differences"]["profiles"]["sim"]
    variant = table.locator('tr[data-compare="sim: variant"] td')
    expect(variant.nth(0)).to_have_text(sim["a"])
    expect(variant.nth(1)).to_have_text(sim["b"])
    size = table.locator('tr[data-compare="sim: size (bytes)"] td')
    expect(size.nth(1)).to_have_text(str(found["b"]["artifacts"]["sim"]["size"]))
    expect(size.nth(2)).to_have_text(f"× {shown(sim['size_ratio'])}")
    screenshot(page, "models-compare")


@pytest.mark.timeout(2 * JOB_SECONDS)
def test_a_job_started_from_the_form_is_followed_live_to_its_version(
    live_server: LiveServer, sign_in: SignIn, dataset: str
) -> None:
    name = unique_id("ui-form-model")
    page = sign_in(Role.OPERATOR)
    open_models(page)
    page.evaluate("window.__notReloaded = true")
    page.evaluate(WATCH_JOB)
    page.fill("#job-model", name)
    page.select_option("#job-dataset", dataset)
    page.select_option("#job-recipe", "cnn1d")
    page.fill("#job-epochs", "1")
    page.fill("#job-profiles", "sim")
    page.click("#start-job button[type=submit]")
    status = page.locator("#start-job .form-status")
    expect(status).to_contain_text("queued")
    job_id = int(status.inner_text().split("job-")[1].split(" ")[0])
    expect(page.locator('#job [data-field="id"]')).to_have_text(f"job-{job_id}")
    state = page.locator('#job [data-field="state"]')
    expect(state).to_have_text("succeeded", timeout=JOB_SECONDS * 1000)
    job: Any = live_server.api(f"/training/jobs/{job_id}")
    assert (job["model"], job["model_version"], job["request"]["profiles"]) == (name, 1, ["sim"])
    expect(page.locator('#job [data-field="version"]')).to_have_text(f"{name} v1")
    expect(page.locator(f'#jobs tr[data-job="{job_id}"] .job-state')).to_have_text("succeeded")
    expect(page.locator(f'#models tr[data-model="{name}"] .model-versions')).to_have_text("1")
    logs: Any = live_server.api(f"/training/jobs/{job_id}/logs")
    expect(page.locator("#job-logs li")).to_have_count(len(logs))
    seen: Any = page.evaluate("window.__seen")
    assert seen["state"][0] in ("queued", "running")
    assert seen["state"][-1] == "succeeded"
    assert set(seen["phase"]) - {"–", ""}, f"no progress phase shown live: {seen}"
    assert page.evaluate("window.__notReloaded") is True
    screenshot(page, "models-operator")


def test_the_servers_reasons_show_beside_their_fields(
    live_server: LiveServer, sign_in: SignIn, dataset: str
) -> None:
    name = unique_id("ui-refused")
    page = sign_in(Role.OPERATOR, viewport=TABLET)
    open_models(page)
    page.fill("#job-model", name)
    page.select_option("#job-dataset", dataset)
    page.fill("#job-epochs", "0")
    page.click("#start-job button[type=submit]")
    expect(page.locator('[data-error-for="epochs"]')).to_contain_text("hyperparameter 'epochs'")
    expect(page.locator("#job-epochs")).to_have_attribute("aria-invalid", "true")

    page.fill("#job-epochs", "1")
    page.fill("#job-profiles", "toaster")
    page.click("#start-job button[type=submit]")
    expect(page.locator('[data-error-for="profiles"]')).to_contain_text(
        "unknown hardware profile 'toaster'"
    )
    expect(page.locator('[data-error-for="epochs"]')).to_be_empty()

    page.fill("#job-profiles", "")
    page.fill("#job-trials", "40")
    page.click("#start-job button[type=submit]")
    expect(page.locator('[data-error-for="trials"]')).not_to_be_empty()
    screenshot(page, "models-form-refused")
    assert all(job["model"] != name for job in live_server.api("/training/jobs"))
