// The Devices page: open one device, the groups the fleet is split into, and (operators)
// provisioning, whose one-time agent.toml stays on this page only.
import { ApiError, api, query } from "./api.js";
import { clearErrors, formValues, restoreForm, showErrors } from "./forms.js";
import { onChange, refreshFailed } from "./live.js";
import { cell, when } from "./table.js";

const findForm = document.getElementById("find-device");
const provisionForm = document.getElementById("provision");
// The registry's refusals carry no field name; their reason says which field they are about.
const FIELD_OF_REASON = { conflict: "id", invalid_device_id: "id", unknown_profile: "profile", invalid_tag: "tags" };
let bundleUrl = null;

async function loadGroups() {
  const groups = await api("GET", "/groups");
  const body = document.querySelector("#groups tbody");
  body.replaceChildren();
  for (const group of groups) {
    const row = body.insertRow();
    row.dataset.group = group.name;
    const th = document.createElement("th");
    th.scope = "row";
    const link = document.createElement("a");
    link.href = `/ui/?group=${encodeURIComponent(group.name)}`;
    link.textContent = group.name;
    link.title = `Devices of ${group.name} on the Fleet page`;
    th.append(link);
    row.append(th);
    cell(row, group.kind);
    cell(row, group.selector ?? "–");
    cell(row, String(group.members.length), "num");
    cell(row, group.description);
    cell(row, when(group.created_at));
  }
  document.getElementById("groups-summary").textContent = groups.length
    ? `${groups.length} groups`
    : "No groups yet: save a filtered device list as one on the Fleet page.";
}

// Suggestions for what has been typed, twenty at a time: the fleet may hold thousands.
async function suggestIds() {
  const typed = findForm.elements.namedItem("id").value.trim();
  const page = await api("GET", `/fleet/devices${query({ search: typed, limit: 20 })}`);
  document.getElementById("device-ids").replaceChildren(...page.items.map((device) => new Option(device.id)));
}

function refresh() {
  return loadGroups().catch(refreshFailed);
}

function tags(text) {
  return (text ?? "")
    .split(",")
    .map((tag) => tag.trim())
    .filter(Boolean);
}

function showBundle(bundle) {
  document.getElementById("bundle-device").textContent = bundle.device.id;
  document.getElementById("bundle-config").textContent = bundle.agent_config;
  if (bundleUrl) URL.revokeObjectURL(bundleUrl);
  bundleUrl = URL.createObjectURL(new Blob([bundle.agent_config], { type: "application/toml" }));
  const download = document.getElementById("bundle-download");
  download.href = bundleUrl;
  download.download = `${bundle.device.id}.agent.toml`;
  document.getElementById("bundle").hidden = false;
  document.getElementById("bundle-config").focus();
}

async function provision(event) {
  event.preventDefault();
  clearErrors(provisionForm);
  const status = provisionForm.querySelector(".form-status");
  status.textContent = "";
  const values = formValues(provisionForm);
  try {
    const bundle = await api("POST", "/devices", {
      body: { id: values.id ?? "", profile: values.profile ?? "", tags: tags(values.tags) },
    });
    status.textContent = `Device ${bundle.device.id} provisioned.`;
    provisionForm.reset();
    showBundle(bundle);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) return;
    const field = FIELD_OF_REASON[error.reason];
    showErrors(provisionForm, field ? { detail: [{ field, problem: error.message }] } : error);
  }
}

async function start() {
  findForm.elements.namedItem("id").addEventListener("input", () => suggestIds().catch(refreshFailed));
  findForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = formValues(findForm).id?.trim();
    if (id) window.location.assign(`/ui/devices/${encodeURIComponent(id)}`);
  });
  if (provisionForm) {
    restoreForm(provisionForm);
    provisionForm.addEventListener("submit", provision);
  }
  onChange(["devices"], refresh);
  await refresh();
  document.body.dataset.ready = "true";
}

start();
