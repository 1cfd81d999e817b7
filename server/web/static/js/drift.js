// The Drift page: one model's fleet and group drift over time, its devices ranked by drift,
// its retraining policy and runs, all read from /api/v1 as any client reads them.
import { ApiError, api, query } from "./api.js";
import { lineChart } from "./chart.js";
import { confirmAction } from "./confirm.js";
import { filterValues } from "./forms.js";
import { onChange, refreshFailed } from "./live.js";
import { cell, emptyRow, fixed, when } from "./table.js";

const filterForm = document.getElementById("drift-filter");
const dialog = document.getElementById("confirm");
const ACTIONS = {
  approve: { title: "Roll out this challenger?", reason: false },
  decline: { title: "Decline this challenger and keep the champion?", reason: true },
};
let chosen = {};

function duration(seconds) {
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${Math.round((seconds / 3600) * 10) / 10} h`;
}

// The highest pooled score in a bucket: the version drifting most (null: too few inferences).
function pooledScore(bucket) {
  const scores = bucket.pooled.map((p) => p.score).filter((s) => s !== null);
  return scores.length ? Math.max(...scores) : null;
}

function latestText(scope, buckets) {
  const latest = buckets.filter((b) => b.windows).at(-1);
  if (!latest) return `${scope}: no windows in this range.`;
  return `${scope}, latest bucket (${when(latest.start)}): ${latest.windows} windows from ${latest.devices} devices, ` +
    `${latest.flagged_devices} flagged, mean score ${fixed(latest.mean_score)}, max ${fixed(latest.max_score)}, ` +
    `pooled ${fixed(pooledScore(latest))}`;
}

async function loadSeries() {
  const option = filterForm.elements.namedItem("range").selectedOptions[0];
  const span = Number(option.value);
  const bucket = Number(option.dataset.step);
  const until = Math.floor(Date.now() / 1000);
  const since = until - span;
  const common = { model: chosen.model, since, until, bucket };
  const scopes = [["Fleet", api("GET", `/drift/series${query(common)}`)]];
  if (chosen.group) {
    scopes.push([`Group ${chosen.group}`, api("GET", `/drift/series${query({ ...common, scope: "group", name: chosen.group })}`)]);
  }
  const found = await Promise.all(scopes.map(([, call]) => call));
  const figure = document.getElementById("chart-drift");
  Object.assign(figure.dataset, { since, until, step: bucket, buckets: found[0].buckets.length });
  lineChart(figure, {
    since,
    until,
    label: `Pooled drift score of ${chosen.model} over the last ${option.textContent.trim()}`,
    series: found.map((s, i) => ({
      name: scopes[i][0],
      points: s.buckets.filter((b) => pooledScore(b) !== null).map((b) => [b.start, pooledScore(b)]),
    })),
  });
  const latest = document.getElementById("series-latest");
  latest.replaceChildren(...found.map((s, i) => {
    const item = document.createElement("li");
    item.dataset.scope = i ? "group" : "fleet";
    item.textContent = latestText(scopes[i][0], s.buckets);
    return item;
  }));
  showFeatures(scopes.map(([name]) => name), found);
}

function showFeatures(names, found) {
  const body = document.querySelector("#features tbody");
  body.replaceChildren();
  found.forEach((s, i) => {
    const latest = s.buckets.filter((b) => b.pooled.length).at(-1);
    for (const pooled of latest?.pooled ?? []) {
      for (const feature of pooled.features) {
        const row = body.insertRow();
        row.dataset.scope = i ? "group" : "fleet";
        row.dataset.feature = feature.name;
        cell(row, `${names[i]} · v${pooled.version}`);
        cell(row, feature.name);
        cell(row, fixed(feature.psi, 3), "num");
        cell(row, fixed(feature.ks, 3), "num");
      }
    }
  });
  if (!body.rows.length) emptyRow("#features", "No pooled drift in this range.");
}

async function groupMembers() {
  if (!chosen.group) return null;
  const groups = await api("GET", "/groups");
  return new Set(groups.find((g) => g.name === chosen.group)?.members ?? []);
}

async function loadRanked() {
  const [status, members] = await Promise.all([
    api("GET", `/drift/status${query({ model: chosen.model })}`),
    groupMembers(),
  ]);
  const devices = status.devices.filter((d) => !members || members.has(d.device));
  const body = document.querySelector("#ranked tbody");
  body.replaceChildren();
  devices.forEach((d, index) => {
    const row = body.insertRow();
    row.dataset.device = d.device;
    cell(row, String(index + 1), "num");
    const link = document.createElement("a");
    link.href = `/ui/devices/${encodeURIComponent(d.device)}`;
    link.textContent = d.device;
    row.insertCell().append(link);
    cell(row, fixed(d.score), "num");
    const flag = document.createElement("span");
    flag.className = d.flagged ? "badge drift" : "";
    flag.textContent = d.flagged ? "flagged" : "no";
    row.insertCell().append(flag);
    cell(row, String(d.version), "num");
    cell(row, String(d.count), "num");
    cell(row, fixed(d.confidence_change), "num");
    cell(row, when(d.window_end));
  });
  if (!devices.length) emptyRow("#ranked", "No device has sent a drift window of this model.");
  const flagged = devices.filter((d) => d.flagged).length;
  const where = chosen.group ? ` in ${chosen.group}` : "";
  document.getElementById("ranked-summary").textContent =
    `${devices.length} devices${where} by their latest window, flagged first; ${flagged} flagged.`;
}

function policyFacts(record) {
  const p = record.policy;
  const drift = p.drift;
  return {
    enabled: p.enabled ? "yes" : "no (no trigger fires)",
    group: p.group ?? "the whole fleet",
    drift: drift
      ? `score ≥ ${drift.score_threshold} for ${drift.consecutive_windows} windows on ` +
        [drift.min_devices && `${drift.min_devices} devices`, drift.group_percent && `${drift.group_percent}% of the group`]
          .filter(Boolean).join(" or ")
      : "off",
    samples: p.samples ? `${p.samples.min_labelled} labelled edge samples` : "off",
    schedule: p.schedule ? `${p.schedule.cron} (${p.schedule.timezone})` : "off",
    approval: p.approval,
    cooldown: duration(p.cooldown_seconds) + (record.cooldown_until ? `, cooling down until ${when(record.cooldown_until)}` : ""),
    last_triggered_at: when(record.last_triggered_at),
    next_schedule: when(record.next_schedule, "none"),
    last_checked_at: when(record.last_checked_at),
    updated: `${when(record.updated_at)} by ${record.updated_by}`,
  };
}

async function loadPolicy() {
  const facts = document.getElementById("policy");
  const summary = document.getElementById("policy-summary");
  let record;
  try {
    record = await api("GET", `/models/${encodeURIComponent(chosen.model)}/retraining-policy`);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    facts.hidden = true;
    summary.textContent = `${chosen.model} has no retraining policy: it is never retrained on its own.`;
    return;
  }
  facts.hidden = false;
  summary.textContent = "";
  for (const [key, text] of Object.entries(policyFacts(record))) {
    facts.querySelector(`[data-policy="${key}"]`).textContent = text;
  }
}

function versions(run) {
  const champion = run.champion_version === null ? "–" : `v${run.champion_version}`;
  const challenger = run.challenger_version === null ? "–" : `v${run.challenger_version}`;
  return `${champion} → ${challenger}` + (run.rollout_id ? ` · rollout ${run.rollout_id}` : "");
}

function actionButtons(run) {
  const td = document.createElement("td");
  if (run.state !== "awaiting_approval") return td;
  for (const [action, label] of [["approve", "Approve"], ["decline", "Decline"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.action = action;
    button.dataset.operator = "";
    button.className = action === "decline" ? "danger" : "";
    button.textContent = label;
    button.setAttribute("aria-label", `${label} run ${run.id}`);
    button.addEventListener("click", () => act(run, action));
    td.append(button, " ");
  }
  return td;
}

async function loadRuns() {
  const runs = await api("GET", `/retraining/runs${query({ model: chosen.model, limit: 50 })}`);
  const operator = Boolean(dialog);
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  for (const run of runs) {
    const row = body.insertRow();
    row.dataset.run = String(run.id);
    cell(row, String(run.id));
    cell(row, run.state, `run-state state-${run.state}`);
    cell(row, run.trigger.message ?? run.trigger.reason ?? "–");
    cell(row, versions(run));
    cell(row, run.reason ?? run.decision?.reason ?? "–");
    cell(row, when(run.created_at));
    if (operator) row.append(actionButtons(run));
  }
  if (!runs.length) emptyRow("#runs", "No retraining runs yet.");
}

async function act(run, action) {
  const status = document.getElementById("run-status");
  status.textContent = "";
  const spec = ACTIONS[action];
  const reason = await confirmAction({
    title: spec.title,
    text: `Run ${run.id} of ${run.model}: challenger v${run.challenger_version} against champion v${run.champion_version}.`,
    askReason: spec.reason,
  });
  if (reason === null) return;
  const body = action === "decline" ? { reason } : undefined;
  try {
    const done = await api("POST", `/retraining/runs/${run.id}/${action}`, { body });
    status.textContent = `Run ${done.id} is ${done.state}.`;
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) status.textContent = `Refused: ${error.message}`;
  }
  await Promise.all([loadRuns(), loadPolicy()]).catch(refreshFailed);
}

function loadAll() {
  return Promise.all([loadSeries(), loadRanked(), loadPolicy(), loadRuns()]);
}

async function fillChoices() {
  const [models, facets] = await Promise.all([api("GET", "/models"), api("GET", "/fleet/facets")]);
  const modelSelect = filterForm.elements.namedItem("model");
  modelSelect.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  const groupSelect = filterForm.elements.namedItem("group");
  for (const group of facets.groups) groupSelect.add(new Option(group, group));
  const wanted = new URLSearchParams(window.location.search);
  for (const name of ["model", "group", "range"]) {
    const element = filterForm.elements.namedItem(name);
    const value = wanted.get(name);
    if (value !== null && [...element.options].some((o) => o.value === value)) element.value = value;
  }
  return models.length > 0;
}

async function apply() {
  chosen = filterValues(filterForm);
  document.getElementById("drift-error").textContent = "";
  try {
    await loadAll();
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) {
      document.getElementById("drift-error").textContent = `Could not load: ${error.message}`;
    }
  }
}

async function start() {
  if (!(await fillChoices())) {
    document.getElementById("drift-error").textContent = "No model is registered yet, so there is no drift to show.";
    document.body.dataset.ready = "true";
    return;
  }
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  filterForm.elements.namedItem("range").addEventListener("change", () => {
    chosen = filterValues(filterForm);
    loadSeries().catch(refreshFailed);
  });
  onChange(["drift"], () => Promise.all([loadSeries(), loadRanked()]).catch(refreshFailed));
  // Runs move with the loop: drift windows trigger them, training jobs carry them, and an
  // approval opens a rollout; the policy's clock moves with them.
  onChange(["drift", "training", "rollouts", "retraining"], () => Promise.all([loadRuns(), loadPolicy()]).catch(refreshFailed));
  await apply();
  document.body.dataset.ready = "true";
}

start();
