// The Audit page: /api/v1/audit with its filters, a page at a time. The API gives no total,
// so one record more than a page is asked for to know whether a next page exists.
import { api, query } from "./api.js";
import { filterValues } from "./forms.js";
import { onChange, refreshFailed } from "./live.js";
import { cell, when } from "./table.js";

const PAGE_SIZE = 50;
const TIMES = ["since", "until"];

const filterForm = document.getElementById("audit-filter");
let filter = {};
let offset = 0;

// datetime-local values are the browser's local time; the API takes epoch seconds.
function apiFilter(values) {
  const params = { ...values };
  for (const name of TIMES) {
    if (params[name]) params[name] = new Date(params[name]).getTime() / 1000;
  }
  return params;
}

function change(record) {
  const parts = [];
  if (record.before) parts.push(`before ${JSON.stringify(record.before)}`);
  if (record.after) parts.push(`after ${JSON.stringify(record.after)}`);
  return parts.join(" → ");
}

async function load() {
  const records = await api("GET", `/audit${query({ ...apiFilter(filter), limit: PAGE_SIZE + 1, offset })}`);
  const page = records.slice(0, PAGE_SIZE);
  const body = document.querySelector("#audit tbody");
  body.replaceChildren();
  for (const record of page) {
    const row = body.insertRow();
    row.dataset.audit = String(record.id);
    cell(row, when(record.at));
    cell(row, record.actor);
    cell(row, record.action);
    cell(row, `${record.target_type} ${record.target_id}`);
    cell(row, change(record), "change");
  }
  document.getElementById("audit-summary").textContent = page.length
    ? `Showing records ${offset + 1}–${offset + page.length}`
    : "No records match.";
  document.getElementById("page-prev").disabled = offset === 0;
  document.getElementById("page-next").disabled = records.length <= PAGE_SIZE;
}

function refresh() {
  return load().catch(refreshFailed);
}

function applyFilter() {
  filter = filterValues(filterForm);
  offset = 0;
  return refresh();
}

async function start() {
  for (const [name, value] of new URLSearchParams(window.location.search)) {
    const element = filterForm.elements.namedItem(name);
    if (element) element.value = value;
  }
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter();
  });
  filterForm.addEventListener("reset", () => setTimeout(applyFilter));
  document.getElementById("page-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    refresh();
  });
  document.getElementById("page-next").addEventListener("click", () => {
    offset += PAGE_SIZE;
    refresh();
  });
  onChange(["rollouts", "devices", "training", "drift"], () => {
    if (offset === 0) refresh();
  });
  await applyFilter();
  document.body.dataset.ready = "true";
}

start();
