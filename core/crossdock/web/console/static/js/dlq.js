// Dead letters per destination: filter, select some or all matching, replay or purge with a
// confirmation, and a progress bar while the job runs.

import { describeError, get, post, query } from "./api.js";
import { confirmDialog } from "./dialog.js";
import { debounce, field, h, replace } from "./dom.js";
import { eventTitle, num, prettyBody, timeElement } from "./format.js";

const PAGE = 100;
const JOB_POLL_MS = 500;

/** Render the dead-letter view; route.params may carry destination, reason and q. */
export function render(container, route) {
  const params = route.params;
  const view = {
    destination: params.get("destination") || "",
    reason: params.get("reason") || "",
    q: params.get("q") || "",
    offset: 0,
    entries: [],
    total: 0,
    selected: new Set(),
    allMatching: false,
  };
  let stopped = false;
  let loadController = null;

  const destSelect = h("select", { name: "destination" });
  const reasonInput = h("input", { type: "search", name: "reason", placeholder: "e.g. HTTP 400", value: view.reason });
  const qInput = h("input", { type: "search", name: "q", placeholder: "messageId, user or event name", value: view.q });
  const status = h("p", { class: "dlq-status", "aria-live": "polite" });
  const selectionNote = h("div", { class: "selection-note", "aria-live": "polite" });
  const replayButton = h("button", { type: "button", class: "btn btn-primary", text: "Replay", disabled: true });
  const purgeButton = h("button", { type: "button", class: "btn btn-danger", text: "Purge", disabled: true });
  const progressBox = h("div", { class: "job", hidden: true });
  const tableBox = h("div", { class: "table-wrap" });
  const pager = h("div", { class: "pager" });
  const pageAll = h("input", { type: "checkbox", "aria-label": "Select every dead letter on this page" });

  container.append(
    h("div", { class: "view-head" }, h("h1", { text: "Dead letters" })),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter dead letters", onsubmit: (e) => e.preventDefault() },
      field("Destination", destSelect),
      field("Reason contains", reasonInput),
      field("Search", qInput),
    ),
    h("div", { class: "bulk-bar" }, h("div", { class: "bulk-text" }, status, selectionNote), h("div", { class: "bulk-actions" }, replayButton, purgeButton)),
    progressBox,
    tableBox,
    pager,
  );

  function syncHash() {
    const hash = `#/dlq${query({ destination: view.destination, reason: view.reason, q: view.q })}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  function selectionCount() {
    return view.allMatching ? view.total : view.selected.size;
  }

  function updateSelection() {
    const count = selectionCount();
    replayButton.disabled = purgeButton.disabled = count === 0 || !view.destination;
    replayButton.textContent = count ? `Replay ${num(count)}` : "Replay";
    purgeButton.textContent = count ? `Purge ${num(count)}` : "Purge";
    const pageIds = view.entries.map((entry) => entry.id);
    const onPage = pageIds.filter((id) => view.selected.has(id)).length;
    pageAll.checked = view.allMatching || (pageIds.length > 0 && onPage === pageIds.length);
    pageAll.indeterminate = !view.allMatching && onPage > 0 && onPage < pageIds.length;
    for (const box of tableBox.querySelectorAll("input[data-id]")) {
      box.checked = view.allMatching || view.selected.has(Number(box.dataset.id));
      box.disabled = view.allMatching;
    }
    selectionNote.replaceChildren();
    if (view.allMatching) {
      selectionNote.append(
        h("span", { text: `All ${num(view.total)} dead letters matching the filter are selected. ` }),
        h("button", { type: "button", class: "btn-link", text: "Clear selection", onclick: clearSelection }),
      );
    } else if (view.total > pageIds.length) {
      if (onPage === pageIds.length) {
        selectionNote.append(h("span", { text: `All ${num(onPage)} on this page are selected. ` }));
      }
      selectionNote.append(
        h("button", {
          type: "button",
          class: "btn-link",
          text: `Select all ${num(view.total)} matching`,
          onclick: () => {
            view.allMatching = true;
            updateSelection();
          },
        }),
      );
    }
    if (!view.allMatching && view.selected.size) {
      if (selectionNote.childNodes.length) selectionNote.append(" · ");
      selectionNote.append(h("button", { type: "button", class: "btn-link", text: "Clear selection", onclick: clearSelection }));
    }
  }

  function clearSelection() {
    view.allMatching = false;
    view.selected.clear();
    updateSelection();
  }

  pageAll.addEventListener("change", () => {
    view.allMatching = false;
    for (const entry of view.entries) {
      if (pageAll.checked) view.selected.add(entry.id);
      else view.selected.delete(entry.id);
    }
    updateSelection();
  });

  function renderTable() {
    if (!view.destination) {
      replace(tableBox, h("div", { class: "empty-state" }, h("h2", { text: "No destination" }), h("p", { text: "There is no destination configured." })));
      return;
    }
    if (!view.entries.length) {
      const filtered = view.reason || view.q;
      replace(
        tableBox,
        h(
          "div",
          { class: "empty-state" },
          h("h2", { text: filtered ? "No dead letter matches the filter" : `No dead letters for ${view.destination}` }),
          h("p", { text: filtered ? "Change or clear the filter." : "Events the vendor refused, or that kept failing past max_attempts and max_age, land here with the vendor's answer." }),
        ),
      );
      return;
    }
    const rows = view.entries.map((entry) => {
      const box = h("input", { type: "checkbox", dataset: { id: String(entry.id) }, "aria-label": `Select dead letter ${entry.id}` });
      box.addEventListener("change", () => {
        if (box.checked) view.selected.add(entry.id);
        else view.selected.delete(entry.id);
        updateSelection();
      });
      const event = entry.event || {};
      const body = entry.body ? prettyBody(entry.body) : "";
      return h(
        "tr",
        { dataset: { id: String(entry.id), messageId: entry.messageId ?? "" } },
        h("td", { class: "col-check" }, box),
        h("td", { class: "col-time" }, timeElement(entry.failed_at)),
        h(
          "td",
          { class: "col-event" },
          h("a", { href: `#/event/${encodeURIComponent(entry.messageId ?? "")}`, text: eventTitle({ type: entry.type, ...event }) }),
          h("code", { class: "small-id", text: entry.messageId ?? "" }),
        ),
        h("td", { class: "col-reason", text: entry.reason ?? "" }),
        h(
          "td",
          { class: "col-answer" },
          h("span", { class: "error-status", text: entry.status ? `HTTP ${entry.status}` : "no answer" }),
          body ? h("details", {}, h("summary", { text: "vendor answer" }), h("pre", { class: "code vendor-body" }, h("code", { text: body }))) : null,
        ),
        h("td", { class: "col-attempts", text: num(entry.attempts) }),
      );
    });
    replace(
      tableBox,
      h(
        "table",
        { class: "table dlq-table" },
        h("caption", { class: "visually-hidden", text: `Dead letters of ${view.destination}` }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { class: "col-check", scope: "col" }, pageAll),
            h("th", { scope: "col", text: "Failed" }),
            h("th", { scope: "col", text: "Event" }),
            h("th", { scope: "col", text: "Reason" }),
            h("th", { scope: "col", text: "Vendor answer" }),
            h("th", { scope: "col", text: "Attempts" }),
          ),
        ),
        h("tbody", {}, rows),
      ),
    );
  }

  function renderPager() {
    pager.replaceChildren();
    if (view.total <= PAGE) return;
    const first = view.offset + 1;
    const last = Math.min(view.offset + PAGE, view.total);
    pager.append(
      h("button", { type: "button", class: "btn", text: "Previous", disabled: view.offset === 0, onclick: () => { view.offset = Math.max(0, view.offset - PAGE); load(); } }),
      h("span", { text: `${num(first)}–${num(last)} of ${num(view.total)}` }),
      h("button", { type: "button", class: "btn", text: "Next", disabled: last >= view.total, onclick: () => { view.offset += PAGE; load(); } }),
    );
  }

  async function load() {
    if (!view.destination) {
      renderTable();
      return;
    }
    if (loadController) loadController.abort();
    loadController = new AbortController();
    status.textContent = "Loading…";
    try {
      const data = await get(
        `/dlq${query({ destination: view.destination, reason: view.reason, q: view.q, limit: PAGE, offset: view.offset })}`,
        { signal: loadController.signal },
      );
      if (stopped) return;
      view.entries = data.entries || [];
      view.total = data.total ?? view.entries.length;
      const plural = view.total !== 1;
      const matching = view.reason || view.q ? ` match${plural ? "" : "es"} the filter` : "";
      status.textContent = `${num(view.total)} dead letter${plural ? "s" : ""}${matching}.`;
      renderTable();
      renderPager();
      updateSelection();
    } catch (error) {
      if (error.name === "AbortError" || stopped) return;
      status.textContent = `Could not load the dead letters: ${describeError(error)}`;
    }
  }

  function filterChanged() {
    view.reason = reasonInput.value.trim();
    view.q = qInput.value.trim();
    view.offset = 0;
    clearSelection();
    syncHash();
    load();
  }
  const debounced = debounce(filterChanged, 250);
  reasonInput.addEventListener("input", debounced);
  qInput.addEventListener("input", debounced);
  destSelect.addEventListener("change", () => {
    view.destination = destSelect.value;
    filterChanged();
  });

  async function runJob(kind) {
    const count = selectionCount();
    const verb = kind === "replay" ? "Replay" : "Purge";
    const ok = await confirmDialog({
      title: `${verb} ${num(count)} dead letter${count === 1 ? "" : "s"}?`,
      message:
        kind === "replay"
          ? `${num(count)} event${count === 1 ? "" : "s"} will be queued again for ${view.destination} and delivered like new ones.`
          : `${num(count)} dead letter${count === 1 ? "" : "s"} of ${view.destination} will be deleted for good. This cannot be undone.`,
      confirm: `${verb} ${num(count)}`,
      danger: kind === "purge",
    });
    if (!ok) return;
    const body = { destination: view.destination };
    if (view.allMatching) body.filter = { reason: view.reason, q: view.q };
    else body.ids = [...view.selected];
    replayButton.disabled = purgeButton.disabled = true;
    const bar = h("progress", { max: "1", value: "0" });
    const label = h("p", { class: "job-label", role: "status", text: `${verb === "Replay" ? "Replaying" : "Purging"}…` });
    replace(progressBox, label, bar);
    progressBox.hidden = false;
    try {
      const started = await post(`/dlq/${kind}`, body);
      let job = { done: 0, total: started.total, finished: started.total === 0, error: null };
      while (!job.finished && !stopped) {
        bar.max = Math.max(1, job.total);
        bar.value = job.done;
        label.textContent = `${verb === "Replay" ? "Replaying" : "Purging"}: ${num(job.done)} of ${num(job.total)}`;
        await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
        try {
          job = await get(`/jobs/${encodeURIComponent(started.job)}`);
        } catch (error) {
          // The job finished more than 10 minutes ago and was forgotten, or its process was
          // restarted (with --workers N any process answers for the one running the job).
          if (error.status !== 404) throw error;
          label.textContent = `${verb} of ${num(started.total)} started; its progress is no longer known (the process running it restarted?). Refresh the list in a moment.`;
          bar.removeAttribute("value");
          clearSelection();
          load();
          return;
        }
      }
      bar.max = Math.max(1, job.total);
      bar.value = job.done;
      label.textContent = job.error
        ? `${verb} stopped after ${num(job.done)} of ${num(job.total)}: ${job.error}`
        : `${verb === "Replay" ? "Replayed" : "Purged"} ${num(job.done)} dead letter${job.done === 1 ? "" : "s"}.`;
    } catch (error) {
      label.textContent = `${verb} failed: ${describeError(error)}`;
    }
    clearSelection();
    load();
  }
  replayButton.addEventListener("click", () => runJob("replay"));
  purgeButton.addEventListener("click", () => runJob("purge"));

  async function loadDestinations() {
    try {
      const data = await get("/destinations");
      if (stopped) return;
      const list = data.destinations || [];
      replace(
        destSelect,
        list.map((card) => h("option", { value: card.id, text: `${card.id} (${num(card.dead_letters)})` })),
      );
      if (!view.destination || !list.some((card) => card.id === view.destination)) {
        const withLetters = list.find((card) => card.dead_letters > 0);
        view.destination = (withLetters || list[0] || {}).id || "";
      }
      destSelect.value = view.destination;
      syncHash();
      load();
    } catch (error) {
      status.textContent = `Could not load the destinations: ${describeError(error)}`;
    }
  }

  loadDestinations();
  return () => {
    stopped = true;
    if (loadController) loadController.abort();
  };
}
