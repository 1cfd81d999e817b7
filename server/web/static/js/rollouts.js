// The Rollouts page: the list, one rollout's waves and gates (live), operator actions behind
// a confirmation, and the create form whose refusals are shown beside the field they name.
import { ApiError, api } from "./api.js";
import { confirmAction } from "./confirm.js";
import { clearErrors, restoreForm } from "./forms.js";
import { onChange, refreshFailed } from "./live.js";
import { cell, when } from "./table.js";

const ACTIONS = {
  start: { title: "Start this rollout?", states: ["draft"], reason: false },
  pause: { title: "Pause this rollout?", states: ["scheduled", "running"], reason: true },
  resume: { title: "Resume this rollout?", states: ["paused"], reason: false },
  approve: { title: "Let the next wave start?", states: ["running"], reason: false },
  abort: {
    title: "Abort this rollout?",
    states: ["draft", "scheduled", "running", "paused"],
    reason: true,
  },
};
// How the wave bars group a device's rollout state.
const BUCKETS = {
  healthy: ["healthy"],
  failed: ["failed", "rolled_back", "timed_out", "reverted"],
  waiting: ["pending", "notified", "in_progress"],
};
// Refusals whose text does not start with the field they concern.
const FIELD_BY_REASON = {
  version_not_approved: "version",
  profile_not_built: "version",
  empty_group: "group",
  overlapping_rollout: "group",
};

const createForm = document.getElementById("create-rollout");
let selected = new URLSearchParams(window.location.search).get("rollout");
let shown = null;

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function select(id) {
  selected = id;
  const url = new URL(window.location.href);
  url.search = id ? `?rollout=${encodeURIComponent(id)}` : "";
  window.history.pushState(null, "", url);
  loadDetail().catch(refreshFailed);
}

async function loadList() {
  const rollouts = await api("GET", "/rollouts?limit=100");
  const body = document.querySelector("#rollouts tbody");
  body.replaceChildren();
  for (const r of rollouts) {
    const row = body.insertRow();
    row.dataset.rollout = r.id;
    const th = document.createElement("th");
    th.scope = "row";
    const link = document.createElement("a");
    link.href = `?rollout=${encodeURIComponent(r.id)}`;
    link.textContent = r.id;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      select(r.id);
    });
    th.append(link);
    row.append(th);
    cell(row, r.state, `rollout-state state-${r.state}`);
    cell(row, `${r.model} v${r.version}`);
    cell(row, r.group);
    cell(row, String(r.current_wave + 1), "num");
    cell(row, when(r.created_at, "–"));
  }
  if (!rollouts.length) cell(body.insertRow(), "No rollouts yet.").colSpan = 6;
}

function count(byState, states) {
  return states.reduce((sum, state) => sum + (byState[state] ?? 0), 0);
}

function waveItem(wave) {
  const item = document.createElement("li");
  item.className = `wave wave-${wave.state}`;
  item.dataset.wave = String(wave.index);
  const head = document.createElement("p");
  head.className = "wave-head";
  head.textContent = `Wave ${wave.index + 1} · ${wave.target} · ${wave.state} · ${wave.devices} devices`;
  const counts = Object.fromEntries(
    Object.entries(BUCKETS).map(([bucket, states]) => [bucket, count(wave.by_state, states)]),
  );
  const skipped = wave.by_state.skipped ?? 0;
  const text = `${counts.healthy} healthy, ${counts.failed} failed, ${counts.waiting} waiting` +
    (skipped ? `, ${skipped} skipped` : "");
  const bar = document.createElement("div");
  bar.className = "wave-bar";
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `${text} of ${wave.devices}`);
  for (const [bucket, n] of Object.entries(counts)) {
    const part = document.createElement("span");
    part.className = bucket;
    part.style.width = `${wave.devices ? (100 * n) / wave.devices : 0}%`;
    bar.append(part);
  }
  const summary = document.createElement("p");
  summary.className = "wave-counts";
  summary.textContent = text + (wave.reason ? ` — ${wave.reason}` : "");
  item.append(head, bar, summary);
  if (wave.gates.length) item.append(gateTable(wave.gates));
  return item;
}

function gateTable(gates) {
  const table = document.createElement("table");
  table.className = "gates";
  table.createCaption().textContent = "Gates";
  const head = table.createTHead().insertRow();
  for (const name of ["Gate", "Value", "Limit", "Status"]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    head.append(th);
  }
  const body = table.createTBody();
  for (const gate of gates) {
    const row = body.insertRow();
    cell(row, gate.name);
    cell(row, gate.value === null ? "–" : String(Math.round(gate.value * 10000) / 10000), "num");
    cell(row, gate.limit === null ? "–" : String(gate.limit), "num");
    cell(row, gate.status, `gate-${gate.status}`);
  }
  return table;
}

async function loadDetail() {
  const section = document.getElementById("detail");
  if (!selected) {
    section.hidden = true;
    return;
  }
  const r = await api("GET", `/rollouts/${encodeURIComponent(selected)}`);
  shown = r;
  section.hidden = false;
  const fields = {
    id: r.id,
    state: r.state,
    model: `${r.model} v${r.version}`,
    group: r.group,
    wave: `${r.current_wave + 1} of ${r.waves.length}`,
    reason: r.reason ?? "–",
    eta: duration(r.eta_seconds),
  };
  for (const [name, value] of Object.entries(fields)) {
    section.querySelector(`[data-field="${name}"]`).textContent = value;
  }
  const awaiting = r.waves[r.current_wave]?.state === "awaiting_approval";
  for (const button of section.querySelectorAll("[data-action]")) {
    const action = button.dataset.action;
    button.hidden = !ACTIONS[action].states.includes(r.state) || (action === "approve" && !awaiting);
  }
  document.getElementById("waves").replaceChildren(...r.waves.map(waveItem));
}

async function act(action) {
  const status = document.getElementById("action-status");
  status.textContent = "";
  const spec = ACTIONS[action];
  const reason = await confirmAction({
    title: spec.title,
    text: `${shown.id}: ${shown.model} v${shown.version} to ${shown.group}, now ${shown.state}.`,
    askReason: spec.reason,
  });
  if (reason === null) return;
  const body = ACTIONS[action].reason && reason ? { reason } : undefined;
  try {
    const r = await api("POST", `/rollouts/${encodeURIComponent(shown.id)}/${action}`, { body });
    status.textContent = `Rollout ${r.id} is ${r.state}.`;
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) status.textContent = `Refused: ${error.message}`;
  }
  await Promise.all([loadList(), loadDetail()]).catch(refreshFailed);
}

// --- the create form ---------------------------------------------------------------------

function numberWaveRows() {
  document.querySelectorAll("#wave-rows .wave-row").forEach((row, index) => {
    row.setAttribute("aria-label", `Wave ${index + 1}`);
    for (const input of row.querySelectorAll("input")) {
      const name = `waves[${index}].${input.dataset.key}`;
      const id = `wave-${index}-${input.dataset.key}`;
      const field = input.closest(".field");
      input.name = name;
      input.id = id;
      field.querySelector("label").htmlFor = id;
      const error = field.querySelector(".error");
      error.id = `${id}-error`;
      error.dataset.errorFor = name;
      input.setAttribute("aria-describedby", error.id);
    }
    row.querySelector(".remove-wave").setAttribute("aria-label", `Remove wave ${index + 1}`);
  });
}

function addWave(percent) {
  const row = document.getElementById("wave-row").content.firstElementChild.cloneNode(true);
  row.querySelector('[data-key="percent"]').value = percent;
  row.querySelector(".remove-wave").addEventListener("click", () => {
    row.remove();
    numberWaveRows();
  });
  document.getElementById("wave-rows").append(row);
  numberWaveRows();
}

function numberOrNull(text) {
  return text.trim() === "" ? null : Number(text);
}

function createBody() {
  const form = createForm.elements;
  const waves = [...document.querySelectorAll("#wave-rows .wave-row")].map((row) => {
    const wave = {};
    for (const input of row.querySelectorAll("input")) {
      const value = numberOrNull(input.value);
      if (value !== null) wave[input.dataset.key] = value;
    }
    return wave;
  });
  const gates = {};
  for (const input of createForm.querySelectorAll('input[name^="gates."]')) {
    const value = numberOrNull(input.value);
    const key = input.name.slice("gates.".length);
    if (value !== null || key !== "min_inferences") gates[key] = value;
  }
  return {
    group: form.namedItem("group").value,
    model: form.namedItem("model").value.trim(),
    version: numberOrNull(form.namedItem("version").value),
    policy: {
      waves,
      gates,
      breach_action: form.namedItem("breach_action").value,
      approval_between_waves: form.namedItem("approval_between_waves").checked,
    },
  };
}

// The slot for a field path such as "waves[2].percent": itself, or the nearest enclosing one;
// a whole wave ("waves[3] must be percent=100") is shown at its percent.
function slotFor(path) {
  let name = /\]$/.test(path) ? `${path}.percent` : path;
  while (name) {
    const slot = createForm.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot) return [name, slot];
    const enclosing = name.replace(/(\.[a-z_]+|\[\d+\])$/, "");
    if (enclosing === name) break;
    name = enclosing;
  }
  return [null, null];
}

function problemsOf(error) {
  if (Array.isArray(error.detail)) {
    return error.detail.map(({ field, problem }) => ({ path: String(field).replace(/^body\./, ""), problem }));
  }
  const text = error.message;
  let path = FIELD_BY_REASON[error.reason];
  if (!path && error.reason === "not_found") path = /^no group/.test(text) ? "group" : /^no model/.test(text) ? "model" : "version";
  if (!path) path = /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?)\b/.exec(text)?.[1] ?? "";
  return [{ path, problem: text }];
}

function showCreateErrors(error) {
  clearErrors(createForm);
  const unplaced = [];
  for (const { path, problem } of problemsOf(error)) {
    const [name, slot] = slotFor(path);
    if (!slot) {
      unplaced.push(problem);
      continue;
    }
    slot.textContent = problem;
    createForm.elements.namedItem(name)?.setAttribute("aria-invalid", "true");
  }
  createForm.querySelector(".form-status").textContent = unplaced.join("; ");
}

async function create(event) {
  event.preventDefault();
  clearErrors(createForm);
  const status = createForm.querySelector(".form-status");
  status.textContent = "";
  try {
    const r = await api("POST", "/rollouts", { body: createBody() });
    status.textContent = `Draft ${r.id} created; start it from its page above.`;
    await loadList();
    select(r.id);
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) showCreateErrors(error);
  }
}

async function loadGroups() {
  const facets = await api("GET", "/fleet/facets");
  const groupSelect = createForm.elements.namedItem("group");
  for (const group of facets.groups) groupSelect.add(new Option(group, group));
}

async function startCreateForm() {
  await loadGroups();
  for (const percent of [10, 50, 100]) addWave(percent);
  if (restoreForm(createForm)) numberWaveRows();
  document.getElementById("add-wave").addEventListener("click", () => addWave(100));
  createForm.addEventListener("submit", create);
}

async function start() {
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  window.addEventListener("popstate", () => {
    selected = new URLSearchParams(window.location.search).get("rollout");
    loadDetail().catch(refreshFailed);
  });
  onChange(["rollouts"], () => Promise.all([loadList(), loadDetail()]).catch(refreshFailed));
  await Promise.all([loadList(), loadDetail(), createForm ? startCreateForm() : null]).catch(refreshFailed);
  document.body.dataset.ready = "true";
}

start();
