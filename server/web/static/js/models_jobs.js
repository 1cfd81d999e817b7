// The Models page's training jobs: the list, one job's live progress and log, and the form
// that starts one, whose refusals are shown beside the field they concern.
import { ApiError, api, query } from "./api.js";
import { clearErrors, restoreForm, showErrors } from "./forms.js";
import { refreshFailed } from "./live.js";
import { cell, rowLink, when } from "./table.js";

const LOG_POLL_MS = 3000;
const RUNNING = new Set(["queued", "running"]);
// Progress fields that are bookkeeping, not the model's numbers.
const NOT_METRICS = new Set(["phase", "trial", "trials", "epoch", "epochs", "variant", "champion", "at"]);
// Domain refusals are one sentence; which field it concerns is read from how it starts.
const FIELD_BY_TEXT = [
  [/^hyperparameter '(\w+)'/, null],
  [/^dataset '.*' has no version/, "dataset_version"],
  [/^(no dataset|dataset )/, "dataset"],
  [/hardware profile|^profiles/, "profiles"],
  [/^no recipe|recipe/, "recipe"],
  [/^trials/, "trials"],
  [/^invalid model name/, "model"],
];

const form = document.getElementById("start-job");
let jobs = [];
let selected = new URLSearchParams(window.location.search).get("job");
let lastLog = 0;
let logTimer = null;

/** A number as the page shows it everywhere: at most four decimals, "–" when absent. */
export function num(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  return String(Number(Number(value).toFixed(digits)));
}

export function jobForRun(run) {
  const id = /^job-(\d+)$/.exec(run ?? "")?.[1];
  return id === undefined ? undefined : jobs.find((job) => job.id === Number(id));
}

// A finished job keeps its last progress; its phase then says where it ended, not what it does.
function phaseText(job) {
  const phase = job.progress?.phase;
  if (!phase) return job.state === "queued" ? "waiting" : "–";
  return RUNNING.has(job.state) ? phase : `ended at ${phase}`;
}

function progressText(job) {
  const p = job.progress ?? {};
  const parts = [phaseText(job)];
  if (p.trials) parts.push(`trial ${p.trial}/${p.trials}`);
  if (p.epochs) parts.push(`epoch ${p.epoch}/${p.epochs}`);
  return parts.join(" · ");
}

function metricsText(progress) {
  const shown = Object.entries(progress ?? {}).filter(
    ([name, value]) => !NOT_METRICS.has(name) && typeof value === "number",
  );
  return shown.map(([name, value]) => `${name} ${num(value)}`).join(", ") || "–";
}

export async function loadJobs() {
  jobs = await api("GET", "/training/jobs?limit=100");
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    row.dataset.job = String(job.id);
    rowLink(row, `job-${job.id}`, `?job=${job.id}`, () => selectJob(job.id).catch(refreshFailed));
    cell(row, job.state, `job-state state-${job.state}`);
    cell(row, job.model);
    cell(row, `${job.dataset} v${job.dataset_version}`);
    cell(row, job.recipe ?? "uploaded Keras");
    cell(row, progressText(job), "job-progress");
    cell(row, when(job.created_at, "–"));
  }
  if (!jobs.length) cell(body.insertRow(), "No training jobs yet.").colSpan = 7;
  return jobs;
}

export function selectJob(id) {
  selected = String(id);
  const url = new URL(window.location.href);
  url.searchParams.set("job", selected);
  window.history.pushState(null, "", url);
  lastLog = 0;
  document.getElementById("job-logs").replaceChildren();
  return loadJob();
}

// The poll and a live refresh may both be reading: a line already shown, or one of a job
// no longer selected, is dropped.
async function loadLogs() {
  const job = selected;
  const lines = await api("GET", `/training/jobs/${job}/logs${query({ after: lastLog })}`);
  if (job !== selected) return;
  const list = document.getElementById("job-logs");
  for (const line of lines.filter((l) => l.id > lastLog)) {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = when(line.at);
    item.append(time, ` ${line.message}`);
    list.append(item);
    lastLog = line.id;
  }
}

// Log lines do not move the live stream's fingerprint, so a running job's log is polled.
function pollLogs(running) {
  window.clearTimeout(logTimer);
  if (running) logTimer = window.setTimeout(() => loadLogs().then(() => pollLogs(true), () => pollLogs(true)), LOG_POLL_MS);
}

export async function loadJob() {
  const section = document.getElementById("job");
  if (!selected) {
    section.hidden = true;
    return;
  }
  const job = await api("GET", `/training/jobs/${encodeURIComponent(selected)}`);
  section.hidden = false;
  const p = job.progress ?? {};
  const fields = {
    id: `job-${job.id}`,
    state: job.state,
    phase: phaseText(job),
    trial: p.trials ? `${p.trial} of ${p.trials}` : "–",
    epoch: p.epochs ? `${p.epoch} of ${p.epochs}` : "–",
    metrics: metricsText(p),
    dataset: `${job.dataset} v${job.dataset_version}`,
    version: job.model_version ? `${job.model} v${job.model_version}` : "–",
    error: job.error ?? "–",
  };
  for (const [name, value] of Object.entries(fields)) {
    section.querySelector(`[data-field="${name}"]`).textContent = value;
  }
  await loadLogs();
  pollLogs(RUNNING.has(job.state));
}

function fieldOf(text) {
  for (const [pattern, field] of FIELD_BY_TEXT) {
    const found = pattern.exec(text);
    if (found) return field ?? found[1];
  }
  return "";
}

function jobBody() {
  const values = form.elements;
  const text = (name) => values.namedItem(name).value.trim();
  const number = (name) => (text(name) === "" ? undefined : Number(text(name)));
  const params = {};
  if (text("epochs") !== "") params.epochs = number("epochs");
  return {
    model: text("model"),
    dataset: text("dataset"),
    dataset_version: number("dataset_version") ?? null,
    recipe: text("recipe"),
    params,
    trials: number("trials") ?? 1,
    profiles: text("profiles").split(",").map((p) => p.trim()).filter(Boolean),
  };
}

async function submit(event) {
  event.preventDefault();
  clearErrors(form);
  const status = form.querySelector(".form-status");
  status.textContent = "";
  try {
    const job = await api("POST", "/training/jobs", { body: jobBody() });
    status.textContent = `Job job-${job.id} queued; its progress is shown above.`;
    await loadJobs();
    await selectJob(job.id);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) return;
    const detail = Array.isArray(error.detail)
      ? error.detail.map(({ field, problem }) => ({ field: String(field).replace(/^body\.params\./, ""), problem }))
      : [{ field: fieldOf(error.message), problem: error.message }];
    showErrors(form, { detail, message: error.message });
  }
}

async function startForm(modelNames) {
  const [datasets, recipes] = await Promise.all([api("GET", "/datasets"), api("GET", "/training/recipes")]);
  const names = document.getElementById("model-names");
  names.replaceChildren(...modelNames.map((name) => new Option(name)));
  const datasetSelect = form.elements.namedItem("dataset");
  const versionSelect = form.elements.namedItem("dataset_version");
  for (const dataset of datasets) datasetSelect.add(new Option(dataset.name, dataset.name));
  datasetSelect.addEventListener("change", () => {
    const found = datasets.find((d) => d.name === datasetSelect.value);
    versionSelect.replaceChildren(new Option("newest", ""));
    for (const v of [...(found?.versions ?? [])].reverse()) {
      versionSelect.add(new Option(`v${v.version} · ${v.samples} samples`, String(v.version)));
    }
  });
  const recipeSelect = form.elements.namedItem("recipe");
  const help = document.getElementById("job-recipe-help");
  for (const recipe of recipes) recipeSelect.add(new Option(`${recipe.name} (${recipe.task})`, recipe.name));
  const describe = () => {
    help.textContent = recipes.find((r) => r.name === recipeSelect.value)?.description ?? "";
  };
  recipeSelect.addEventListener("change", describe);
  describe();
  if (restoreForm(form)) datasetSelect.dispatchEvent(new Event("change"));
  form.addEventListener("submit", submit);
}

/** The jobs part of the page; ``modelNames`` fill the form's suggestions. */
export async function startJobs(modelNames) {
  window.addEventListener("popstate", () => {
    selected = new URLSearchParams(window.location.search).get("job");
    lastLog = 0;
    document.getElementById("job-logs").replaceChildren();
    loadJob().catch(refreshFailed);
  });
  await Promise.all([loadJobs(), loadJob(), form ? startForm(modelNames) : null]);
}
