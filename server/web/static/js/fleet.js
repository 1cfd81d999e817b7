// The Fleet page: counts, presence chart, versions and the device list, all from the API.
import { ApiError, api, query } from "./api.js";
import { lineChart } from "./chart.js";
import { clearErrors, filterValues, formValues, restoreForm, showErrors } from "./forms.js";
import { onChange, refreshFailed } from "./live.js";
import { cell, when } from "./table.js";

const PAGE_SIZE = 50;
const STATES = ["online", "offline", "provisioned", "revoked"];
const PROBLEM_NAMES = { failed: "Failed update", rolled_back: "Rolled back", offline: "Offline", drift: "Drift flagged" };
const PRESENCE_EVERY_MS = 10000;

const filterForm = document.getElementById("fleet-filter");
const groupForm = document.getElementById("save-group");
let filter = {};
let offset = 0;
let lastPresence = 0;

// Runs `load` now, or once more after the running call if asked again meanwhile.
function coalesced(load) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await load();
        } catch (error) {
          refreshFailed(error);
        }
      } while (again);
      running = null;
    })();
    return running;
  };
  return run;
}

const loadSummary = coalesced(async () => {
  const summary = await api("GET", "/fleet/summary");
  const counts = { total: summary.total, problems: summary.devices_with_problems };
  for (const state of STATES) counts[state] = summary.by_state[state] ?? 0;
  for (const [key, value] of Object.entries(counts)) {
    document.querySelector(`[data-count="${key}"]`).textContent = String(value);
  }
  document.getElementById("problem-breakdown").textContent = Object.entries(summary.problems)
    .map(([problem, n]) => `${PROBLEM_NAMES[problem] ?? problem}: ${n}`)
    .join(" · ");
});

const loadVersions = coalesced(async () => {
  const versions = await api("GET", "/fleet/versions");
  const body = document.querySelector("#versions tbody");
  body.replaceChildren();
  for (const v of versions) {
    const row = body.insertRow();
    cell(row, v.model);
    cell(row, `v${v.version}`);
    cell(row, String(v.devices), "num");
  }
  if (!versions.length) cell(body.insertRow(), "No device reports a model yet.").colSpan = 3;
});

const loadPresence = coalesced(async () => {
  lastPresence = Date.now();
  const span = Number(document.getElementById("presence-range").value);
  const until = Math.floor(Date.now() / 1000);
  const series = await api("GET", `/fleet/presence${query({ since: until - span, until, points: 200 })}`);
  lineChart(document.getElementById("presence-chart"), {
    since: series.since,
    until: series.until,
    label: "Devices online (reporting telemetry) and registered over time",
    series: [
      { name: "online (reporting)", points: series.points.map((p) => [p.start, p.reporting]) },
      { name: "registered", points: series.points.map((p) => [p.start, p.registered]) },
    ],
  });
});

function badges(td, problems) {
  for (const problem of problems) {
    const badge = document.createElement("span");
    badge.className = `badge ${problem}`;
    badge.textContent = PROBLEM_NAMES[problem] ?? problem;
    td.append(badge);
  }
}

const loadDevices = coalesced(async () => {
  const page = await api("GET", `/fleet/devices${query({ ...filter, limit: PAGE_SIZE, offset })}`);
  const body = document.querySelector("#devices tbody");
  body.replaceChildren();
  for (const device of page.items) {
    const row = body.insertRow();
    row.dataset.device = device.id;
    if (device.problems.length) row.classList.add("has-problem");
    const th = document.createElement("th");
    th.scope = "row";
    const link = document.createElement("a");
    link.href = `/ui/devices/${encodeURIComponent(device.id)}`;
    link.textContent = device.id;
    th.append(link);
    row.append(th);
    cell(row, device.state, `state-${device.state}`);
    badges(row.insertCell(), device.problems);
    cell(row, device.profile);
    cell(row, device.tags.join(", "));
    cell(row, device.models.join(", "));
    cell(row, when(device.last_seen_at));
  }
  const first = page.total ? offset + 1 : 0;
  document.getElementById("devices-summary").textContent =
    `Showing ${first}–${offset + page.items.length} of ${page.total} devices`;
  document.getElementById("page-prev").disabled = offset === 0;
  document.getElementById("page-next").disabled = offset + PAGE_SIZE >= page.total;
});

async function loadFacets() {
  const facets = await api("GET", "/fleet/facets");
  for (const [name, values] of [["group", facets.groups], ["tag", facets.tags], ["profile", facets.profiles]]) {
    const select = filterForm.elements.namedItem(name);
    for (const value of values) select.add(new Option(value, value));
  }
}

function applyFilter() {
  filter = filterValues(filterForm);
  offset = 0;
  return loadDevices();
}

async function allMatching() {
  const ids = [];
  for (let from = 0; ; from += 1000) {
    const page = await api("GET", `/fleet/devices${query({ ...filter, limit: 1000, offset: from })}`);
    ids.push(...page.items.map((d) => d.id));
    if (from + 1000 >= page.total) return ids;
  }
}

async function saveGroup(event) {
  event.preventDefault();
  clearErrors(groupForm);
  const status = groupForm.querySelector(".form-status");
  const values = formValues(groupForm);
  try {
    const members = await allMatching();
    const group = await api("POST", "/groups", {
      body: { name: values.name ?? "", description: values.description ?? "", kind: "static", members },
    });
    status.textContent = `Group ${group.name} saved with ${group.members.length} devices.`;
    groupForm.reset();
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) return;
    const named = error.reason === "conflict" || error.reason === "invalid";
    showErrors(groupForm, named ? { detail: [{ field: "name", problem: error.message }] } : error);
  }
}

async function start() {
  for (const [name, value] of new URLSearchParams(window.location.search)) {
    const element = filterForm.elements.namedItem(name);
    if (element?.type === "checkbox") element.checked = value === "true";
    else if (element) element.dataset.initial = value;
  }
  await loadFacets();
  for (const element of filterForm.elements) {
    if (element.dataset.initial !== undefined) element.value = element.dataset.initial;
  }
  restoreForm(filterForm);
  if (groupForm) restoreForm(groupForm);
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter();
  });
  filterForm.addEventListener("reset", () => setTimeout(applyFilter));
  groupForm?.addEventListener("submit", saveGroup);
  document.getElementById("page-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    loadDevices();
  });
  document.getElementById("page-next").addEventListener("click", () => {
    offset += PAGE_SIZE;
    loadDevices();
  });
  document.getElementById("presence-range").addEventListener("change", loadPresence);
  onChange(["devices", "events", "drift"], () => {
    loadSummary();
    loadDevices();
  });
  onChange(["devices"], loadVersions);
  onChange(["telemetry"], () => {
    if (Date.now() - lastPresence >= PRESENCE_EVERY_MS) loadPresence();
  });
  await Promise.all([applyFilter(), loadSummary(), loadVersions(), loadPresence()]);
  document.body.dataset.ready = "true";
}

start();
