// The signed-in page's session: CSRF token and role from <meta>, and the way back to
// sign-in when the session ends, keeping whatever form was being filled in.
import { saveForm } from "./forms.js";

function meta(name) {
  const tag = document.querySelector(`meta[name="${name}"]`);
  return tag ? tag.content : "";
}

export const csrfToken = meta("csrf-token");
export const role = meta("role");

// Sends the browser to sign-in with next= this page; `form` is kept in sessionStorage first.
export function toSignIn(form) {
  if (form) saveForm(form);
  const here = window.location.pathname + window.location.search;
  window.location.assign(`/ui/sign-in?next=${encodeURIComponent(here)}`);
}
