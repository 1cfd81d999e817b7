// Live updates: one EventSource on /api/v1/events/stream; pages subscribe to topics and
// refresh their own parts. The browser reconnects by itself when a stream ends.
import { ApiError, api } from "./api.js";

const handlers = new Map();
let source = null;
let connectedBefore = false;

export function showStatus(text) {
  const region = document.getElementById("live-status");
  if (region && region.textContent !== text) region.textContent = text;
}

/** A refresh that failed shows in the live region; a 401 is already on its way to sign-in. */
export function refreshFailed(error) {
  if (!(error instanceof ApiError) || error.status !== 401) showStatus(`Could not refresh: ${error.message}`);
}

function dispatch(topics) {
  const due = new Set();
  for (const topic of topics) for (const handler of handlers.get(topic) ?? []) due.add(handler);
  for (const handler of due) handler(topics);
}

// A stream the server closed for a signed-out caller: an API call finds out why (401 -> sign-in).
async function checkSession() {
  try {
    await api("GET", "/fleet/summary");
  } catch {
    // api() has already sent the browser to sign-in on 401; anything else, keep trying
  }
}

function connect() {
  source = new EventSource("/api/v1/events/stream");
  source.addEventListener("hello", (event) => {
    showStatus("Live: updates appear as they happen.");
    // A reconnect may have missed a change: refresh everything once.
    if (connectedBefore) dispatch(JSON.parse(event.data).topics);
    connectedBefore = true;
  });
  source.addEventListener("change", (event) => {
    const { topics } = JSON.parse(event.data);
    dispatch(topics);
  });
  source.addEventListener("signed-out", () => {
    source.close();
    checkSession();
  });
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED) return;
    showStatus("Live updates stopped; reload the page.");
    checkSession();
  });
}

export function onChange(topics, handler) {
  for (const topic of topics) {
    if (!handlers.has(topic)) handlers.set(topic, new Set());
    handlers.get(topic).add(handler);
  }
  if (!source) connect();
}
