// A confirmation dialog on the native <dialog> (focus trapped, Escape cancels).

import { h } from "./dom.js";

/**
 * Ask for confirmation. Resolves to true when the operator confirms.
 * options: {title, message, confirm: "Replay", danger: bool, details: Node|string}
 */
export function confirmDialog({ title, message, confirm = "Confirm", danger = false, details }) {
  return new Promise((resolve) => {
    const titleId = `dialog-title-${Date.now()}`;
    const ok = h("button", {
      type: "submit",
      value: "ok",
      class: danger ? "btn btn-danger" : "btn btn-primary",
      text: confirm,
    });
    const cancel = h("button", { type: "submit", value: "cancel", class: "btn", text: "Cancel" });
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": titleId },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: titleId, text: title }),
        h("p", { text: message }),
        details ? h("div", { class: "dialog-details" }, details) : null,
        h("div", { class: "dialog-actions" }, cancel, ok),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
