// Live events: newest first, pause/resume, a filter, a bounded buffer (stream.js).

import { debounce, field, h, replace } from "./dom.js";
import { eventTitle, eventUser, num, timeElement } from "./format.js";
import * as stream from "./stream.js";

const TYPES = ["track", "identify", "page", "screen", "group", "alias"];

// Kept across visits of the view, like a real tab's state.
const filter = { source: "", type: "", name: "", user: "", messageId: "" };
const SUMMARY_EVERY_MS = 1000; // the count is announced politely: not at every event
let paused = false;
let pausedAtSeq = 0;

/** Does a record pass the filter? Empty fields match everything; text is case-insensitive. */
export function matches(record, f = filter) {
  const event = record.event || {};
  if (f.source && record.source !== f.source) return false;
  if (f.type && event.type !== f.type) return false;
  if (f.name && !contains(event.event ?? event.name, f.name)) return false;
  if (f.user && !(contains(event.userId, f.user) || contains(event.anonymousId, f.user))) {
    return false;
  }
  if (f.messageId && !contains(event.messageId, f.messageId)) return false;
  return true;
}

function contains(value, needle) {
  return value !== undefined && value !== null && String(value).toLowerCase().includes(needle.toLowerCase());
}

function filterActive() {
  return Boolean(filter.source || filter.type || filter.name || filter.user || filter.messageId);
}

function row(record) {
  const event = record.event || {};
  const id = event.messageId || "";
  return h(
    "li",
    { class: "event-row", dataset: { messageId: id } },
    h(
      "a",
      { href: `#/event/${encodeURIComponent(id)}`, class: "event-link" },
      h("span", { class: "event-time" }, timeElement(record.received_at ?? event.receivedAt)),
      h("span", { class: `type-badge type-${TYPES.includes(event.type) ? event.type : "other"}`, text: event.type ?? "?" }),
      h("span", { class: "event-name", text: eventTitle(event) }),
      h("span", { class: "event-user", title: "userId or anonymousId", text: eventUser(event) }),
      h("span", { class: "event-source", title: "source", text: record.source ?? "" }),
      h("code", { class: "event-id", title: id, text: id }),
    ),
  );
}

function curlExample() {
  const origin = location.origin;
  return [
    `curl -u YOUR_WRITE_KEY: ${origin}/v1/track \\`,
    "  -H 'Content-Type: application/json' \\",
    `  -d '{"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}}'`,
  ].join("\n");
}

/** Render the live view into container; returns the cleanup function. */
export function render(container) {
  const list = h("ol", { class: "event-list", "aria-label": "Accepted events, newest first" });
  const summary = h("p", { class: "live-summary", id: "live-count", "aria-live": "polite" });
  const pausedNote = h("p", { class: "paused-note", "aria-live": "polite" });
  const droppedNote = h("p", { class: "warning-note", hidden: true });
  const empty = h("div", { class: "empty-state" });

  const pauseButton = h("button", {
    type: "button",
    class: "btn",
    "aria-pressed": String(paused),
    onclick: () => (paused ? resume() : pause()),
  });

  const sourceSelect = h("select", { name: "source" });
  const knownSources = new Set();
  function updateSources() {
    const seen = new Set(stream.records().map((record) => record.source).filter(Boolean));
    if (filter.source) seen.add(filter.source);
    if (seen.size === knownSources.size && [...seen].every((s) => knownSources.has(s))) return;
    knownSources.clear();
    for (const source of [...seen].sort()) knownSources.add(source);
    replace(
      sourceSelect,
      h("option", { value: "", text: "all sources" }),
      [...knownSources].map((source) => h("option", { value: source, text: source })),
    );
    sourceSelect.value = filter.source;
  }
  updateSources();

  const typeSelect = h(
    "select",
    { name: "type" },
    h("option", { value: "", text: "all types" }),
    TYPES.map((type) => h("option", { value: type, text: type })),
  );
  typeSelect.value = filter.type;
  const nameInput = h("input", { type: "search", name: "name", placeholder: "e.g. Order Completed", value: filter.name });
  const userInput = h("input", { type: "search", name: "user", placeholder: "userId or anonymousId", value: filter.user });
  const idInput = h("input", { type: "search", name: "messageId", placeholder: "part of a messageId", value: filter.messageId });
  const clearButton = h("button", { type: "button", class: "btn btn-quiet", text: "Clear filter" });

  const applyFilter = () => {
    filter.source = sourceSelect.value;
    filter.type = typeSelect.value;
    filter.name = nameInput.value.trim();
    filter.user = userInput.value.trim();
    filter.messageId = idInput.value.trim();
    renderList();
  };
  const debounced = debounce(applyFilter, 150);
  typeSelect.addEventListener("change", applyFilter);
  sourceSelect.addEventListener("change", applyFilter);
  for (const input of [nameInput, userInput, idInput]) input.addEventListener("input", debounced);
  clearButton.addEventListener("click", () => {
    typeSelect.value = sourceSelect.value = "";
    nameInput.value = userInput.value = idInput.value = "";
    applyFilter();
  });

  const filterForm = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter events", onsubmit: (e) => e.preventDefault() },
    field("Source", sourceSelect),
    field("Type", typeSelect),
    field("Event name", nameInput),
    field("User", userInput),
    field("messageId", idInput),
    h("div", { class: "field field-actions" }, clearButton),
  );

  container.append(
    h(
      "div",
      { class: "view-head" },
      h("h1", { text: "Live events" }),
      h("div", { class: "view-actions" }, pauseButton),
    ),
    filterForm,
    h("div", { class: "live-status" }, summary, pausedNote, droppedNote),
    empty,
    list,
  );

  let pending = [];
  let frame = 0;
  let lastSummary = 0;
  let summaryTimer = 0;

  function updatePauseButton() {
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.classList.toggle("btn-primary", paused);
  }

  function counts() {
    const all = stream.records();
    let hidden = 0; // buffered, older than the pause (if any), not matching the filter
    let newKept = 0; // arrived while paused and still buffered
    let newHidden = 0;
    for (const record of all) {
      const visible = matches(record);
      if (paused && record.seq > pausedAtSeq) {
        newKept += 1;
        if (!visible) newHidden += 1;
      } else if (!visible) {
        hidden += 1;
      }
    }
    // Arrivals since the pause, exactly, even those already pushed out of the buffer.
    const newWhilePaused = paused ? stream.lastSeq() - pausedAtSeq : 0;
    return { total: all.length, shown: list.childElementCount, hidden, newWhilePaused, newKept, newHidden };
  }

  function updateSummary() {
    const c = counts();
    let text = `${num(c.shown)} event${c.shown === 1 ? "" : "s"} shown`;
    if (filterActive()) text += `, ${num(c.hidden)} hidden by the filter`;
    text += ` (the last ${num(stream.MAX_EVENTS)} are kept)`;
    summary.textContent = text;
    if (paused) {
      pausedNote.hidden = false;
      const matching = c.newKept - c.newHidden;
      const of = c.newWhilePaused > c.newKept ? ` Of the newest ${num(c.newKept)} kept,` : "";
      pausedNote.textContent =
        `Paused: ${num(c.newWhilePaused)} new event${c.newWhilePaused === 1 ? "" : "s"} since.${of} ` +
        `${num(matching)} match${matching === 1 ? "es" : ""} the filter, ${num(c.newHidden)} filtered out. Resume to see them.`;
    } else {
      pausedNote.hidden = true;
      pausedNote.textContent = "";
    }
    const dropped = stream.droppedCount();
    droppedNote.hidden = dropped === 0;
    droppedNote.textContent = dropped
      ? `${num(dropped)} accepted events were left out of this page's stream to keep it light (heavy traffic, or a slow connection); they were processed all the same.`
      : "";
    updateEmpty(c);
  }

  function updateEmpty(c) {
    if (c.total === 0) {
      replace(
        empty,
        h("h2", { text: "No events yet" }),
        h("p", { text: "Accepted events appear here as they arrive. Send one with curl (your source's write key as the user name):" }),
        h("pre", { class: "code" }, h("code", { text: curlExample() })),
        h("p", { class: "muted", text: "Any Segment SDK pointed at this address works too." }),
      );
      empty.hidden = false;
    } else if (c.shown === 0 && !paused) {
      replace(
        empty,
        h("h2", { text: "No event matches the filter" }),
        h("p", { text: `${num(c.total)} events are buffered. Change or clear the filter.` }),
      );
      empty.hidden = false;
    } else {
      empty.hidden = true;
      empty.replaceChildren();
    }
  }

  function renderList() {
    pending = [];
    const rows = [];
    for (const record of stream.records()) {
      if (paused && record.seq > pausedAtSeq) continue;
      if (matches(record)) rows.push(row(record));
    }
    list.replaceChildren(...rows);
    updateSummary();
  }

  // The count changes with every event: refresh it at most once a second (a trailing update
  // makes sure the last change shows), so screen readers are not flooded.
  function throttledSummary() {
    const wait = lastSummary + SUMMARY_EVERY_MS - performance.now();
    if (wait <= 0) {
      clearTimeout(summaryTimer);
      summaryTimer = 0;
      lastSummary = performance.now();
      updateSummary();
    } else if (!summaryTimer) {
      summaryTimer = setTimeout(() => {
        summaryTimer = 0;
        throttledSummary();
      }, wait);
    }
  }

  function flush() {
    frame = 0;
    updateSources();
    if (!paused && pending.length) {
      const rows = pending.filter((record) => matches(record)).map(row);
      pending = [];
      list.prepend(...rows.reverse());
      // Keep the DOM within the buffer's bound.
      const kept = new Set(stream.records().map((record) => record.event && record.event.messageId));
      while (list.lastElementChild && !kept.has(list.lastElementChild.dataset.messageId)) {
        list.lastElementChild.remove();
      }
    }
    throttledSummary();
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function pause() {
    paused = true;
    const newest = stream.records()[0];
    pausedAtSeq = newest ? newest.seq : 0;
    updatePauseButton();
    updateSummary();
  }

  function resume() {
    paused = false;
    updatePauseButton();
    renderList();
  }

  const unsubscribe = stream.subscribe((kind, payload) => {
    if (kind === "add") {
      pending.push(payload);
      // A background tab runs no animation frame: keep at most what the list can show.
      if (pending.length > stream.MAX_EVENTS) pending.splice(0, pending.length - stream.MAX_EVENTS);
      schedule();
    } else if (kind === "reset") {
      renderList();
    } else if (kind === "dropped") {
      schedule();
    }
  });

  updatePauseButton();
  renderList();

  return () => {
    unsubscribe();
    if (frame) cancelAnimationFrame(frame);
    clearTimeout(summaryTimer);
  };
}
