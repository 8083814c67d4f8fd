// One event: its stored JSON and, per destination, what happened to it (the journey).

import { describeError, get } from "./api.js";
import { copyButton, h, replace } from "./dom.js";
import { clock, duration, eventTitle, eventUser, fullTime, pretty, prettyBody, relative, timeElement } from "./format.js";
import * as stream from "./stream.js";
import { openInTester } from "./tester.js";

const FINAL = new Set(["delivered", "filtered", "dropped", "dead_lettered"]);
const REFRESH_MS = 2000;
const UNKNOWN_TRIES = 5; // "unknown" may become known once the journal catches up; not forever

const STATE_LABELS = {
  filtered: "filtered",
  dropped: "dropped",
  queued: "queued",
  delivered: "delivered",
  retrying: "retrying",
  dead_lettered: "dead-lettered",
  unknown: "unknown",
};

/** A state badge. */
export function stateBadge(state) {
  return h("span", { class: `state state-${state}`, text: STATE_LABELS[state] || state });
}

function filteredBy(reason) {
  if (reason === "where") return "the destination's where condition is false for it";
  if (reason === "sources") return "it came from a source this destination does not take (sources)";
  return reason ? `filtered out by the mapping (${reason})` : "filtered out";
}

function nextTry(at) {
  const when = h("time", { datetime: new Date(at * 1000).toISOString(), title: fullTime(at) });
  if (at <= Date.now() / 1000) {
    when.textContent = "now";
    return ["Next try due ", when, "."];
  }
  when.textContent = relative(at);
  return ["Next try ", when, "."];
}

function vendorAnswer(row) {
  const parts = [];
  if (row.status !== undefined && row.status !== null) {
    parts.push(h("p", { class: "vendor-status" }, "Vendor answered ", h("strong", { text: `HTTP ${row.status}` })));
  } else if (row.state === "retrying" || row.state === "dead_lettered") {
    parts.push(h("p", { class: "vendor-status", text: "No HTTP answer from the vendor." }));
  }
  if (row.body) {
    parts.push(h("pre", { class: "code vendor-body", "aria-label": "Vendor answer" }, h("code", { text: prettyBody(row.body) })));
  }
  return parts;
}

function detail(row, receivedAt) {
  switch (row.state) {
    case "filtered":
      return [h("p", { text: `Not sent: ${filteredBy(row.reason)}.` })];
    case "dropped":
      return [h("p", { text: `Not sent: the mapping dropped it${row.reason ? ` (${row.reason})` : ""}.` })];
    case "queued":
      return [h("p", { text: "Accepted and queued; not settled yet for this destination." })];
    case "delivered": {
      const after = row.at && receivedAt ? ` (${duration(row.at - receivedAt)} after it was received)` : "";
      return [h("p", {}, "Delivered at ", timeElement(row.at), after, ".")];
    }
    case "retrying":
      return [
        h(
          "p",
          {},
          `Attempt ${row.attempts ?? "?"} failed${row.reason ? `: ${row.reason}` : ""}. `,
          row.next_at ? nextTry(row.next_at) : "",
        ),
        ...vendorAnswer(row),
      ];
    case "dead_lettered":
      return [
        h("p", { text: `Dead-lettered after ${row.attempts ?? "?"} attempt${row.attempts === 1 ? "" : "s"}: ${row.reason ?? "no reason given"}.` }),
        ...vendorAnswer(row),
        h(
          "p",
          {},
          h("a", {
            href: `#/dlq?destination=${encodeURIComponent(row.destination)}&q=${encodeURIComponent(row.messageId ?? "")}`,
            text: "See it in dead letters (replay or purge)",
          }),
        ),
      ];
    case "unknown":
    default:
      return [h("p", { class: "muted", text: "Not known to this process: older than its journal, or handled by another worker process (--workers N)." })];
  }
}

/** Render the event page for route.arg (a messageId). */
export function render(container, route) {
  const messageId = route.arg || "";
  const heading = h("h1", { text: "Event" });
  const meta = h("dl", { class: "meta" });
  const journeyStatus = h("p", { class: "muted", "aria-live": "polite" });
  const journeyBody = h("div", { class: "journey" });
  const jsonCode = h("code");
  const jsonBlock = h("pre", { class: "code json", tabindex: "0", "aria-label": "Stored event JSON" }, jsonCode);
  let eventData = stream.findRecord(messageId)?.event ?? null;
  const receivedRecord = stream.findRecord(messageId);

  const actions = h(
    "div",
    { class: "view-actions" },
    h("a", { class: "btn", href: "#/live", text: "Back to live events" }),
    h("button", {
      type: "button",
      class: "btn",
      text: "Try in the mapping tester",
      disabled: !eventData,
      onclick: () => eventData && openInTester(eventData),
    }),
  );
  const tryButton = actions.lastElementChild;

  container.append(
    h("div", { class: "view-head" }, heading, actions),
    meta,
    h(
      "section",
      { class: "panel", "aria-labelledby": "journey-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "journey-title", text: "Destinations" }), journeyStatus),
      journeyBody,
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "json-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "json-title", text: "Stored JSON" }), copyButton(() => jsonCode.textContent, "Copy JSON")),
      jsonBlock,
    ),
  );

  function showEvent() {
    if (!eventData) {
      heading.textContent = "Event";
      jsonCode.textContent = "The event itself is no longer in this process's memory.";
      replace(meta, h("dt", { text: "messageId" }), h("dd", {}, h("code", { text: messageId })));
      return;
    }
    heading.textContent = eventTitle(eventData);
    jsonCode.textContent = pretty(eventData);
    tryButton.disabled = false;
    const received = receivedRecord?.received_at ?? eventData.receivedAt;
    const source = receivedRecord?.source ?? eventData.context?.crossdock?.source;
    replace(
      meta,
      h("dt", { text: "Type" }), h("dd", { text: eventData.type ?? "—" }),
      h("dt", { text: "User" }), h("dd", { text: eventUser(eventData) }),
      h("dt", { text: "Received" }), h("dd", {}, timeElement(received)),
      source ? [h("dt", { text: "Source" }), h("dd", { text: source })] : null,
      h("dt", { text: "messageId" }), h("dd", {}, h("code", { text: messageId })),
    );
  }

  function showJourney(data) {
    const rows = data.destinations || [];
    if (!rows.length) {
      replace(journeyBody, h("p", { class: "empty-state", text: "No destination is configured." }));
      return;
    }
    const receivedAt = receivedRecord?.received_at ?? (eventData?.receivedAt ? Date.parse(eventData.receivedAt) / 1000 : null);
    replace(
      journeyBody,
      h(
        "ul",
        { class: "journey-list" },
        rows.map((row) =>
          h(
            "li",
            { class: `journey-row journey-${row.state}`, dataset: { destination: row.destination, state: row.state } },
            h(
              "div",
              { class: "journey-head" },
              h("a", { class: "journey-dest", href: "#/destinations", text: row.destination }),
              row.plugin ? h("span", { class: "plugin", text: row.plugin }) : null,
              stateBadge(row.state),
            ),
            h("div", { class: "journey-detail" }, detail({ ...row, messageId }, receivedAt)),
          ),
        ),
      ),
    );
  }

  let timer = null;
  let stopped = false;
  let unknownTries = 0;
  let controller = null;

  async function refresh() {
    timer = null;
    controller = new AbortController();
    try {
      const data = await get(`/events/${encodeURIComponent(messageId)}/journey`, { signal: controller.signal });
      if (stopped) return;
      if (data.event) {
        eventData = data.event;
        showEvent();
      }
      showJourney(data);
      const states = (data.destinations || []).map((row) => row.state);
      const waiting = states.some((state) => state === "queued" || state === "retrying");
      const unknown = states.some((state) => state === "unknown");
      if (unknown) unknownTries += 1;
      if (waiting || (unknown && unknownTries < UNKNOWN_TRIES)) {
        journeyStatus.textContent = `Updated ${clock(Date.now() / 1000)}; refreshing until every destination is settled.`;
        timer = setTimeout(refresh, REFRESH_MS);
      } else {
        journeyStatus.textContent = states.every((state) => FINAL.has(state)) ? "Settled everywhere." : `Updated ${clock(Date.now() / 1000)}.`;
      }
    } catch (error) {
      if (stopped || error.name === "AbortError") return;
      journeyStatus.textContent = `Could not load the journey: ${describeError(error)}. Retrying…`;
      timer = setTimeout(refresh, REFRESH_MS * 2);
    }
  }

  showEvent();
  replace(journeyBody, h("p", { class: "muted", text: "Loading…" }));
  refresh();

  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    if (controller) controller.abort();
  };
}
