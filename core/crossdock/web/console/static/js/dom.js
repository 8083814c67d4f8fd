// Safe DOM building: every text goes through textContent or setAttribute, never parsed as HTML
// (event fields are attacker-controlled). No inline style attributes either (CSP style-src).

const PROPS = new Set(["value", "checked", "disabled", "selected", "indeterminate", "open"]);

/** Create an element: h("a", {class: "x", href: "#/live", onclick: fn}, "text", child...). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element with attributes (no children helper needed beyond append). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (PROPS.has(key)) {
      el[key] = value;
    } else if (key === "style") {
      throw new Error("inline styles are refused by the console's CSP: use a class");
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** Append children (nodes, strings, numbers; arrays flattened; null/false skipped). */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace all children of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Debounce fn by ms; the returned function has .cancel() and .flush(). */
export function debounce(fn, ms) {
  let timer = null;
  let lastArgs = [];
  const run = (...args) => {
    lastArgs = args;
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...lastArgs);
    }, ms);
  };
  run.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  run.flush = () => {
    if (timer !== null) {
      run.cancel();
      fn(...lastArgs);
    }
  };
  return run;
}

/** A labelled form field: <div class="field"><label for=id>text</label>control</div>. */
export function field(label, control, hint) {
  const id = control.id || uid("f");
  control.id = id;
  const children = [h("label", { for: id, text: label }), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    children.push(h("p", { class: "hint", id: hintId, text: hint }));
  }
  return h("div", { class: "field" }, children);
}

let counter = 0;
/** A page-unique id with a prefix. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** Copy text to the clipboard; falls back to a hidden textarea on plain-http origins. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection-based copy
    }
  }
  const area = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A "Copy" button copying getText(); says "Copied" for a moment (announced politely). */
export function copyButton(getText, label = "Copy") {
  const status = h("span", { class: "copy-status", role: "status" });
  const button = h("button", {
    type: "button",
    class: "btn btn-small",
    text: label,
    onclick: async () => {
      const ok = await copyText(getText());
      status.textContent = ok ? "Copied" : "Copy failed: select the text and copy it";
      setTimeout(() => {
        status.textContent = "";
      }, 2000);
    },
  });
  return h("span", { class: "copy" }, button, status);
}
