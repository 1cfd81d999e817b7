// The dashboard's one way to the REST API: same-origin cookie, CSRF header on changes,
// a 401 sends the browser to sign-in (saving the page's forms).
import { csrfToken, toSignIn } from "./session.js";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, reason, detail) {
    super(typeof detail === "string" ? detail : `${status} ${reason}`);
    this.status = status;
    this.reason = reason;
    this.detail = detail;
  }
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function api(method, path, { body } = {}) {
  const headers = { Accept: "application/json" };
  if (UNSAFE.has(method)) headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    toSignIn();
    throw new ApiError(401, "unauthenticated", "session ended; signing in again");
  }
  const payload = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, payload?.error ?? "http_error", payload?.detail ?? response.statusText);
  }
  return payload;
}
