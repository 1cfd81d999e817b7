// The one confirmation every operator action goes through (templates/confirm_dialog.html,
// rendered only for operators). Resolves to the reason typed (maybe "") or null if cancelled.
export function confirmAction({ title, text, askReason = false }) {
  const dialog = document.getElementById("confirm");
  const reason = document.getElementById("confirm-reason");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-reason-field").hidden = !askReason;
  reason.value = "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm" ? reason.value.trim() : null), {
      once: true,
    });
    dialog.showModal();
  });
}
