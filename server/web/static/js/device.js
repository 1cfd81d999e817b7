// The Device page: identity, models, telemetry, update history, drift and samples of one
// device, each read from the same /api/v1 endpoints any client uses.
import { ApiError, api, query } from "./api.js";
import { lineChart } from "./chart.js";
import { confirmAction } from "./confirm.js";
import { onChange, refreshFailed } from "./live.js";
import { cell, emptyRow, fixed, when } from "./table.js";

const DEVICE = document.getElementById("device-title").dataset.device;
const PATH = `/devices/${encodeURIComponent(DEVICE)}`;
const RECENT_SAMPLES = 20;
const SAMPLE_SPAN = 7 * 86400;
const MIB = 1024 * 1024;
const TELEMETRY_EVERY_MS = 10000;
const PROBLEM_KINDS = new Set(["failed", "rolled_back"]);
let activeModels = [];
let lastTelemetry = 0;

function fact(key, text) {
  document.querySelector(`[data-fact="${key}"]`).textContent = text;
}

// Refreshes `load` on demand; failures show in the live region instead of vanishing.
function guarded(load) {
  return async () => {
    try {
      await load();
    } catch (error) {
      refreshFailed(error);
    }
  };
}

function slotText(slot) {
  return slot ? `${slot.model} v${slot.version} (slot ${slot.slot})` : "none";
}

async function loadDevice() {
  const [device, groups] = await Promise.all([api("GET", PATH), api("GET", "/groups")]);
  fact("state", device.state);
  fact("profile", device.profile);
  fact("tags", device.tags.join(", ") || "none");
  fact("groups", groups.filter((g) => g.members.includes(DEVICE)).map((g) => g.name).join(", ") || "none");
  fact("agent_version", device.agent_version ?? "unknown");
  fact("last_seen_at", when(device.last_seen_at));
  fact("created_at", when(device.created_at));
  const slots = device.running ?? [];
  fact("current", slots.filter((s) => s.active).map(slotText).join(", ") || "none");
  fact("previous", slots.filter((s) => !s.active).map(slotText).join(", ") || "none");
  activeModels = [...new Set(slots.filter((s) => s.active).map((s) => s.model))];
  const revokeButton = document.getElementById("revoke");
  if (revokeButton) revokeButton.hidden = device.state === "revoked";
}

// Revoking removes the broker account at once, so a stolen device is cut off; it is final.
async function revoke() {
  const confirmed = await confirmAction({
    title: `Revoke ${DEVICE}?`,
    text: "Its broker account is removed now; it cannot connect again unless provisioned anew.",
  });
  if (confirmed === null) return;
  const status = document.getElementById("revoke-status");
  try {
    await api("POST", `${PATH}/revoke`);
    status.textContent = `${DEVICE} is revoked.`;
    await loadDevice();
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) status.textContent = `Not revoked: ${error.message}`;
  }
}

function bucketPoints(buckets, value) {
  return buckets.filter((b) => value(b) !== null && value(b) !== undefined).map((b) => [b.start, value(b)]);
}

async function loadTelemetry() {
  lastTelemetry = Date.now();
  const option = document.getElementById("telemetry-range").selectedOptions[0];
  const span = Number(option.value);
  const step = Number(option.dataset.step);
  const until = Math.floor(Date.now() / 1000);
  const since = until - span;
  const buckets = await api("GET", `${PATH}/telemetry${query({ since, until, step })}`);
  const charts = [
    ["rate", "inferences/s", (b) => b.inferences / step],
    ["latency", "p95 ms", (b) => b.latency_p95_ms],
    ["errors", "errors", (b) => b.errors],
    ["cpu", "CPU %", (b) => b.cpu_percent],
    ["memory", "MiB", (b) => (b.memory_bytes === null ? null : b.memory_bytes / MIB)],
  ];
  for (const [key, name, value] of charts) {
    const figure = document.getElementById(`chart-${key}`);
    Object.assign(figure.dataset, { since, until, step, buckets: buckets.length });
    lineChart(figure, {
      since,
      until,
      label: `${figure.querySelector("figcaption").textContent} over the last ${option.textContent}`,
      series: [{ name, points: bucketPoints(buckets, value) }],
    });
  }
  const latest = buckets.at(-1);
  document.getElementById("telemetry-latest").textContent = latest
    ? `Latest bucket (${when(latest.start)}): ${latest.inferences} inferences, ${latest.errors} errors, ` +
      `p95 ${fixed(latest.latency_p95_ms, 1)} ms, CPU ${fixed(latest.cpu_percent, 1)} %, ` +
      `memory ${latest.memory_bytes === null ? "–" : fixed(latest.memory_bytes / MIB, 1)} MiB`
    : "No telemetry in this range.";
}

async function loadEvents() {
  const events = await api("GET", `${PATH}/events${query({ limit: 100 })}`);
  const list = document.getElementById("events");
  list.replaceChildren();
  for (const event of events) {
    const item = document.createElement("li");
    item.dataset.kind = event.kind;
    const time = document.createElement("time");
    time.dateTime = new Date(event.at * 1000).toISOString();
    time.textContent = when(event.at);
    const what = document.createElement("span");
    what.className = PROBLEM_KINDS.has(event.kind) ? `badge ${event.kind}` : "badge";
    what.textContent = event.kind;
    const detail = document.createElement("span");
    const rollout = event.rollout_id ? ` · rollout ${event.rollout_id}` : "";
    detail.textContent = `${event.model} v${event.version}${rollout}${event.reason ? ` · ${event.reason}` : ""}`;
    item.append(time, " ", what, " ", detail);
    list.append(item);
  }
  document.getElementById("events-summary").textContent = events.length
    ? `${events.length} events, newest first.`
    : "No update events from this device yet.";
}

// A model the registry does not know has no baseline, drift or samples: null, not an error.
async function unlessUnknown(call) {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

async function latestWindow(model) {
  const status = await api("GET", `/drift/status${query({ model })}`);
  const mine = status.devices.find((d) => d.device === DEVICE);
  if (!mine) return undefined;
  const page = await api("GET", `/drift/windows${query({ model, device: DEVICE, since: mine.window_end })}`);
  return page.items.at(-1);
}

async function loadDrift() {
  const body = document.querySelector("#drift tbody");
  const summary = [];
  const rows = [];
  for (const model of activeModels) {
    const window = await unlessUnknown(() => latestWindow(model));
    if (window === null) {
      summary.push(`${model}: not in the model registry, so not judged.`);
      continue;
    }
    if (window === undefined) {
      summary.push(`${model}: no drift window yet.`);
      continue;
    }
    const verdict = window.flagged ? "flagged" : "not flagged";
    summary.push(`${model} v${window.version}, window ${window.seq} ending ${when(window.window_end)}: score ${fixed(window.score)}, ${verdict}.`);
    for (const [feature, stats] of Object.entries(window.statistics.features ?? {})) rows.push([model, feature, stats]);
  }
  body.replaceChildren();
  for (const [model, feature, stats] of rows) {
    const row = body.insertRow();
    row.dataset.feature = feature;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = activeModels.length > 1 ? `${model}: ${feature}` : feature;
    row.append(th);
    cell(row, fixed(stats.psi, 3), "num");
    cell(row, fixed(stats.ks, 3), "num");
  }
  if (!rows.length) emptyRow("#drift", "No per-feature statistics.");
  document.getElementById("drift-summary").textContent = summary.join(" ") || "The device runs no model.";
}

async function loadSamples() {
  const since = Math.floor(Date.now() / 1000) - SAMPLE_SPAN;
  const found = [];
  for (const model of activeModels) {
    const page = await unlessUnknown(() => api("GET", `/samples${query({ model, device: DEVICE, since, limit: 1000 })}`));
    found.push(...(page?.items ?? []));
  }
  const recent = found.sort((a, b) => b.received_at - a.received_at).slice(0, RECENT_SAMPLES);
  const body = document.querySelector("#samples tbody");
  body.replaceChildren();
  for (const sample of recent) {
    const row = body.insertRow();
    cell(row, `${sample.model} v${sample.version} · ${sample.sample_id}`);
    cell(row, sample.reason);
    cell(row, fixed(sample.confidence, 3), "num");
    cell(row, sample.label ?? "unlabelled");
  }
  if (!recent.length) emptyRow("#samples", "No samples in the last 7 days.");
  document.getElementById("samples-summary").textContent = `${recent.length} most recent of ${found.length} in the last 7 days.`;
}

async function start() {
  try {
    await loadDevice();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      document.getElementById("device-error").textContent = `There is no device ${DEVICE}.`;
      document.body.dataset.ready = "true";
      return;
    }
    throw error;
  }
  document.getElementById("revoke")?.addEventListener("click", revoke);
  const telemetry = guarded(loadTelemetry);
  document.getElementById("telemetry-range").addEventListener("change", telemetry);
  onChange(["devices"], guarded(loadDevice));
  onChange(["events"], guarded(loadEvents));
  onChange(["drift"], guarded(loadDrift));
  onChange(["telemetry"], () => {
    if (Date.now() - lastTelemetry >= TELEMETRY_EVERY_MS) telemetry();
  });
  await Promise.all([loadTelemetry(), loadEvents(), loadDrift(), loadSamples()]);
  document.body.dataset.ready = "true";
}

start();
