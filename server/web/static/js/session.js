// The signed-in page's session: CSRF token and role from <meta>, and the way back to
// sign-in when the session ends, keeping whatever form was being filled in.
import { saveForm } from "./forms.js";

function meta(name) {
  const tag = document.querySelector(`meta[name="${name}"]`);
  return tag ? tag.content : "";
}

export const csrfToken = meta("csrf-token");
export const role = meta("role");

// Sends the browser to sign-in with next= this page. Every form on the page is kept in
// sessionStorage first: the one being submitted, and any the operator was filling in
// when the live stream found the session over.
export function toSignIn() {
  for (const form of document.querySelectorAll("form[id]")) saveForm(form);
  const here = window.location.pathname + window.location.search;
  window.location.assign(`/ui/sign-in?next=${encodeURIComponent(here)}`);
}
