// The Models page: registered models, one model's versions with per-variant numbers and
// lineage, two versions compared side by side (the server's /compare), and training jobs.
import { api, query } from "./api.js";
import { onChange, refreshFailed } from "./live.js";
import { jobForRun, loadJob, loadJobs, num, selectJob, startJobs } from "./models_jobs.js";
import { cell, rowLink, when } from "./table.js";

let selected = new URLSearchParams(window.location.search).get("model");
let models = [];

function select(name) {
  selected = name;
  const url = new URL(window.location.href);
  url.searchParams.set("model", name);
  window.history.pushState(null, "", url);
  loadVersions().catch(refreshFailed);
}

async function loadModels() {
  models = await api("GET", "/models");
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  for (const m of models) {
    const row = body.insertRow();
    row.dataset.model = m.name;
    rowLink(row, m.name, `?model=${encodeURIComponent(m.name)}`, () => select(m.name));
    cell(row, m.description || "–");
    cell(row, String(m.versions.length), "num model-versions");
    cell(row, m.latest === null ? "–" : `v${m.latest}`, "num");
    cell(row, when(m.created_at, "–"));
  }
  if (!models.length) cell(body.insertRow(), "No models yet.").colSpan = 5;
}

// One row per variant: a trained version's every built variant (with the profiles it serves),
// or an uploaded version's artifacts, whose flat metrics are all the uploader gave.
function variantRows(v) {
  const served = v.quantization?.profiles ?? {};
  const built = v.metrics?.variants;
  if (built) {
    return Object.entries(built).map(([name, found]) => ({
      name,
      profiles: Object.keys(served).filter((profile) => served[profile] === name),
      size: found.size,
      accuracy: found.metrics?.accuracy,
      latency: found.latency_ms,
      note: found.gate ?? "",
    }));
  }
  const byVariant = new Map();
  for (const artifact of v.artifacts) {
    const row = byVariant.get(artifact.variant) ?? {
      name: artifact.variant,
      profiles: [],
      size: artifact.size,
      accuracy: v.metrics?.accuracy,
      latency: v.metrics?.latency_ms,
      note: "uploaded",
    };
    row.profiles.push(artifact.hardware_profile);
    byVariant.set(artifact.variant, row);
  }
  return [...byVariant.values()];
}

function variantTable(v) {
  const table = document.createElement("table");
  table.className = "variants";
  table.createCaption().textContent = `v${v.version} per variant`;
  const head = table.createTHead().insertRow();
  for (const [name, className] of [["Variant"], ["Profiles"], ["Size (bytes)", "num"], ["Accuracy", "num"], ["Latency (ms)", "num"], ["Quantization gate"]]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    if (className) th.className = className;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of variantRows(v)) {
    const row = body.insertRow();
    row.dataset.variant = r.name;
    cell(row, r.name);
    cell(row, r.profiles.join(", ") || "none");
    cell(row, r.size === null || r.size === undefined ? "–" : String(r.size), "num size");
    cell(row, num(r.accuracy), "num accuracy");
    cell(row, num(r.latency), "num latency");
    cell(row, r.note);
  }
  return table;
}

function fact(list, label, content) {
  const wrap = document.createElement("div");
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.dataset.lineage = label.toLowerCase();
  dd.append(content);
  wrap.append(dt, dd);
  list.append(wrap);
}

function link(text, onClick) {
  const a = document.createElement("a");
  a.href = "#";
  a.textContent = text;
  a.addEventListener("click", (event) => {
    event.preventDefault();
    onClick();
  });
  return a;
}

function lineage(v) {
  const list = document.createElement("dl");
  list.className = "facts";
  const job = jobForRun(v.training_run);
  const from = v.metrics?.lineage ?? {};
  fact(list, "Created", `${when(v.created_at)} by ${v.created_by}`);
  fact(list, "Dataset", job ? `${job.dataset} v${job.dataset_version}` : v.dataset_hash ? `sha256 ${v.dataset_hash.slice(0, 12)}…` : "–");
  fact(list, "Training run", job ? link(v.training_run, () => selectJob(job.id).catch(refreshFailed)) : v.training_run ?? "uploaded");
  fact(list, "Recipe", from.recipe ? `${from.recipe}, ${from.epochs ?? "?"} epochs` : "–");
  const champion = job?.request?.challenge?.champion;
  fact(list, "Champion", champion ? link(`challenger of v${champion}`, () => document.getElementById(`version-${champion}`)?.scrollIntoView()) : "–");
  fact(list, "Code version", v.code_version ?? "–");
  return list;
}

function versionItem(v) {
  const item = document.createElement("article");
  item.className = "wave version";
  item.id = `version-${v.version}`;
  item.dataset.version = String(v.version);
  const head = document.createElement("h3");
  head.className = "wave-head";
  head.textContent = `v${v.version} · ${v.stage}`;
  const wrap = document.createElement("div");
  wrap.className = "table-wrap";
  wrap.append(variantTable(v));
  item.append(head, lineage(v), wrap);
  return item;
}

function fillChoices(numbers) {
  for (const [id, pick] of [["compare-a", 1], ["compare-b", 0]]) {
    const choice = document.getElementById(id);
    const previous = choice.value;
    choice.replaceChildren(...numbers.map((n) => new Option(`v${n}`, String(n))));
    choice.value = previous && numbers.includes(Number(previous)) ? previous : String(numbers[Math.min(pick, numbers.length - 1)] ?? "");
  }
}

async function loadVersions() {
  const section = document.getElementById("model-detail");
  if (!selected) {
    section.hidden = true;
    return;
  }
  const model = await api("GET", `/models/${encodeURIComponent(selected)}`);
  const numbers = [...model.versions].sort((a, b) => b - a);
  const versions = await Promise.all(
    numbers.map((n) => api("GET", `/models/${encodeURIComponent(selected)}/versions/${n}`)),
  );
  section.hidden = false;
  section.querySelector('[data-field="model"]').textContent = model.name;
  section.querySelector('[data-field="count"]').textContent = String(numbers.length);
  fillChoices(numbers);
  document.getElementById("versions").replaceChildren(...versions.map(versionItem));
}

function compareRow(body, what, a, b, difference = "") {
  const row = body.insertRow();
  row.dataset.compare = what;
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = what;
  row.append(th);
  cell(row, a);
  cell(row, b);
  cell(row, difference, "num difference");
}

async function compare(event) {
  event.preventDefault();
  const form = event.target.elements;
  const a = form.namedItem("a").value;
  const b = form.namedItem("b").value;
  const found = await api("GET", `/models/${encodeURIComponent(selected)}/compare${query({ a, b })}`);
  document.getElementById("comparison-title").textContent = `${found.model}: v${a} (A) against v${b} (B)`;
  const body = document.querySelector("#compare-table tbody");
  body.replaceChildren();
  const left = found.a;
  const right = found.b;
  compareRow(body, "stage", left.stage, right.stage);
  compareRow(body, "training run", left.training_run ?? "uploaded", right.training_run ?? "uploaded");
  compareRow(body, "same dataset", left.dataset_hash ?? "–", right.dataset_hash ?? "–", found.differences.same_dataset ? "same" : "different");
  for (const [metric, delta] of Object.entries(found.differences.metrics)) {
    const value = (side) => num(side.metrics?.float?.[metric] ?? side.metrics?.[metric]);
    compareRow(body, metric, value(left), value(right), num(delta));
  }
  for (const [profile, entry] of Object.entries(found.differences.profiles)) {
    const size = (side) => side.artifacts[profile]?.size;
    compareRow(body, `${profile}: variant`, entry.a ?? "none", entry.b ?? "none");
    if (entry.size_ratio === undefined) continue;
    compareRow(body, `${profile}: size (bytes)`, String(size(left)), String(size(right)), `× ${num(entry.size_ratio)}`);
    for (const [metric, delta] of Object.entries(entry.metrics)) {
      const value = (side) => num(side.artifacts[profile].metrics?.[metric]);
      compareRow(body, `${profile}: ${metric}`, value(left), value(right), num(delta));
    }
  }
  document.getElementById("comparison").hidden = false;
}

async function refresh() {
  await loadJobs();
  await Promise.all([loadModels(), loadVersions(), loadJob()]);
}

async function start() {
  document.getElementById("compare").addEventListener("submit", (event) => compare(event).catch(refreshFailed));
  window.addEventListener("popstate", () => {
    selected = new URLSearchParams(window.location.search).get("model");
    loadVersions().catch(refreshFailed);
  });
  // A finished job registers a version, so training changes refresh the models too.
  onChange(["training", "models"], () => refresh().catch(refreshFailed));
  await loadModels().catch(refreshFailed);
  // Versions name the jobs they came from, so the jobs are read first.
  await startJobs(models.map((m) => m.name)).catch(refreshFailed);
  await loadVersions().catch(refreshFailed);
  document.body.dataset.ready = "true";
}

start();
