// Forms survive an expired session: saved before going to sign-in, restored on return.
// Reasons the server gives for bad input are shown beside the field they name.
import { query } from "./api.js";

const KEY = "edgefleet:saved-forms";

function savedForms() {
  try {
    return JSON.parse(window.sessionStorage.getItem(KEY) || "{}");
  } catch {
    return {};
  }
}

function formKey(form) {
  return `${window.location.pathname}#${form.id}`;
}

export function saveForm(form) {
  if (!form.id) return;
  const values = {};
  for (const element of form.elements) {
    if (!element.name || element.type === "hidden" || element.type === "password") continue;
    values[element.name] = element.type === "checkbox" ? element.checked : element.value;
  }
  const all = savedForms();
  all[formKey(form)] = values;
  window.sessionStorage.setItem(KEY, JSON.stringify(all));
}

// Fills the form back in if it was saved on this page; true if it was.
export function restoreForm(form) {
  const all = savedForms();
  const values = all[formKey(form)];
  if (!values) return false;
  delete all[formKey(form)];
  window.sessionStorage.setItem(KEY, JSON.stringify(all));
  for (const [name, value] of Object.entries(values)) {
    const element = form.elements.namedItem(name);
    if (!element) continue;
    if (element.type === "checkbox") element.checked = Boolean(value);
    else element.value = value;
  }
  return true;
}

/** A filter form's values, also written to the address bar so a reload or a shared link keeps them. */
export function filterValues(form) {
  const values = formValues(form);
  const url = new URL(window.location.href);
  url.search = query(values);
  window.history.replaceState(null, "", url);
  return values;
}

export function formValues(form) {
  const values = {};
  for (const [name, value] of new FormData(form).entries()) {
    if (value !== "") values[name] = value;
  }
  return values;
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// `error` is an ApiError; 422 details name fields as "body.name". Unplaced reasons go to
// the form's status line, so nothing the server said is dropped.
export function showErrors(form, error) {
  clearErrors(form);
  const unplaced = [];
  const problems = Array.isArray(error.detail) ? error.detail : [{ field: "", problem: error.message }];
  for (const { field, problem } of problems) {
    const name = String(field || "").split(".").pop();
    const slot = name && form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot) {
      slot.textContent = problem;
      form.elements.namedItem(name)?.setAttribute("aria-invalid", "true");
    } else {
      unplaced.push(problem);
    }
  }
  const status = form.querySelector(".form-status");
  if (status) status.textContent = unplaced.join("; ");
}
