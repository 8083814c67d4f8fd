// Mapping tester: a destination, an event, overrides (key = JMESPath rows); the exact request
// it would send, live as you type; the TOML snippet; "send for real" behind a confirmation.

import { ApiError, describeError, get, post } from "./api.js";
import { confirmDialog } from "./dialog.js";
import { copyButton, debounce, field, h, replace, uid } from "./dom.js";
import { clock, eventTitle, eventUser, pretty, prettyBody } from "./format.js";
import * as stream from "./stream.js";

// The tester keeps its state while the operator looks at other pages.
const state = {
  destination: "",
  eventText: "",
  overrides: [{ key: "", expr: "" }],
};

const SAMPLE = {
  type: "track",
  event: "Order Completed",
  userId: "user-1",
  properties: { order_id: "A-1", revenue: 25.0, currency: "EUR" },
  context: { traits: { email: "ana@example.com" } },
};

/** Open the tester with an event (from the event page). */
export function openInTester(event) {
  state.eventText = pretty(event);
  location.hash = "#/tester";
}

/** The overrides object from the rows (empty keys ignored). */
export function overridesOf(rows) {
  const out = {};
  for (const row of rows) {
    const key = row.key.trim();
    if (key) out[key] = row.expr;
  }
  return out;
}

function headersTable(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return h("p", { class: "muted", text: "No headers." });
  return h(
    "table",
    { class: "table headers-table" },
    h("caption", { class: "visually-hidden", text: "Request headers (secrets masked)" }),
    h("tbody", {}, entries.map(([name, value]) => h("tr", {}, h("th", { scope: "row", text: name }), h("td", {}, h("code", { text: String(value) }))))),
  );
}

/** Render the tester view. */
export function render(container) {
  let stopped = false;
  let sequence = 0;
  let controller = null;
  let lastGood = null; // the body of the last successful /try (for send)

  if (!state.eventText) {
    const newest = stream.records()[0];
    state.eventText = pretty(newest ? newest.event : SAMPLE);
  }

  const destSelect = h("select", { name: "destination" });
  const recentSelect = h("select", { name: "recent" });
  const eventArea = h("textarea", { name: "event", rows: "14", spellcheck: "false", class: "code-input" });
  eventArea.value = state.eventText;
  const eventError = h("p", { class: "form-error", role: "alert" });
  const rowsBox = h("div", { class: "override-rows" });
  const addButton = h("button", { type: "button", class: "btn btn-small", text: "Add override" });
  const resultStatus = h("p", { class: "result-status", id: "tester-status", "aria-live": "polite" });
  const resultBox = h("div", { class: "result" });
  const tomlBox = h("div", { class: "toml" });
  const sendButton = h("button", { type: "button", class: "btn btn-danger", text: "Send for real…", disabled: true });
  const sendResult = h("div", { class: "send-result", "aria-live": "polite" });

  function fillRecent() {
    const records = stream.records().slice(0, 50);
    replace(
      recentSelect,
      h("option", { value: "", text: records.length ? "Pick a recent event…" : "No recent events yet" }),
      records.map((record, index) =>
        h("option", { value: String(index), text: `${clock(record.received_at)}  ${eventTitle(record.event)}  ${eventUser(record.event)}` }),
      ),
    );
    recentSelect.disabled = !records.length;
    recentSelect._records = records;
  }
  recentSelect.addEventListener("change", () => {
    const record = recentSelect._records?.[Number(recentSelect.value)];
    if (record) {
      eventArea.value = pretty(record.event);
      state.eventText = eventArea.value;
      schedule.cancel();
      run();
    }
    recentSelect.value = "";
  });

  function renderRows() {
    rowsBox.replaceChildren(
      ...state.overrides.map((row, index) => {
        const keyInput = h("input", { type: "text", value: row.key, placeholder: "field, e.g. email", spellcheck: "false", class: "code-input" });
        const exprInput = h("input", { type: "text", value: row.expr, placeholder: "JMESPath, e.g. traits.email", spellcheck: "false", class: "code-input" });
        const keyId = uid("ovk");
        const exprId = uid("ove");
        keyInput.id = keyId;
        exprInput.id = exprId;
        keyInput.addEventListener("input", () => {
          row.key = keyInput.value;
          schedule();
        });
        exprInput.addEventListener("input", () => {
          row.expr = exprInput.value;
          schedule();
        });
        const remove = h("button", {
          type: "button",
          class: "btn btn-small btn-quiet",
          text: "Remove",
          "aria-label": `Remove override ${index + 1}`,
          onclick: () => {
            state.overrides.splice(index, 1);
            if (!state.overrides.length) state.overrides.push({ key: "", expr: "" });
            renderRows();
            schedule();
          },
        });
        return h(
          "div",
          { class: "override-row" },
          h("label", { for: keyId, class: "visually-hidden", text: `Override ${index + 1} field` }),
          keyInput,
          h("span", { class: "equals", "aria-hidden": "true", text: "=" }),
          h("label", { for: exprId, class: "visually-hidden", text: `Override ${index + 1} expression` }),
          exprInput,
          remove,
        );
      }),
    );
  }
  addButton.addEventListener("click", () => {
    state.overrides.push({ key: "", expr: "" });
    renderRows();
    rowsBox.querySelector(".override-row:last-child input")?.focus();
  });

  function parseEvent() {
    try {
      const value = JSON.parse(eventArea.value);
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        throw new Error("it must be a JSON object (one event)");
      }
      eventError.textContent = "";
      return value;
    } catch (error) {
      eventError.textContent = `The event is not valid JSON: ${error.message}`;
      return null;
    }
  }

  function showRequests(data) {
    const requests = data.requests || [];
    resultStatus.textContent = `Would send ${requests.length} request${requests.length === 1 ? "" : "s"} (nothing was sent).`;
    resultStatus.dataset.outcome = "send";
    replace(
      resultBox,
      requests.map((request, index) =>
        h(
          "section",
          { class: "request", "aria-label": `Request ${index + 1}` },
          h("p", { class: "request-line" }, h("span", { class: "method", text: request.method }), " ", h("code", { class: "url", text: request.url })),
          h("h3", { text: "Headers" }),
          headersTable(request.headers),
          h("div", { class: "panel-head" }, h("h3", { text: "Body" }), copyButton(() => prettyBody(request.body), "Copy body")),
          h("pre", { class: "code request-body" }, h("code", { text: prettyBody(request.body) })),
        ),
      ),
    );
  }

  function showToml(toml) {
    if (!toml) {
      tomlBox.hidden = true;
      return;
    }
    tomlBox.hidden = false;
    const code = h("code", { text: toml });
    replace(
      tomlBox,
      h("div", { class: "panel-head" }, h("h3", { text: "For crossdock.toml" }), copyButton(() => code.textContent, "Copy TOML")),
      h("p", { class: "hint", text: `Paste under this destination's [[destinations]] entry (id = "${state.destination}").` }),
      h("pre", { class: "code toml-snippet" }, code),
    );
  }

  async function run() {
    state.eventText = eventArea.value;
    const event = parseEvent();
    if (!event || !state.destination) {
      sendButton.disabled = true;
      if (!state.destination) resultStatus.textContent = "No destination is configured.";
      return;
    }
    const overrides = overridesOf(state.overrides);
    const body = { event };
    if (Object.keys(overrides).length) body.overrides = overrides;
    sequence += 1;
    const mine = sequence;
    if (controller) controller.abort();
    controller = new AbortController();
    resultStatus.textContent = "Working…";
    try {
      const data = await post(`/destinations/${encodeURIComponent(state.destination)}/try`, body, { signal: controller.signal });
      if (stopped || mine !== sequence) return;
      lastGood = data.dropped ? null : body;
      sendButton.disabled = Boolean(data.dropped);
      if (data.dropped) {
        resultStatus.textContent = `Dropped: ${data.reason || "the mapping drops this event"}. Nothing would be sent.`;
        resultStatus.dataset.outcome = "dropped";
        replace(resultBox);
      } else {
        showRequests(data);
      }
      showToml(Object.keys(overrides).length ? data.toml : "");
    } catch (error) {
      if (error.name === "AbortError" || stopped || mine !== sequence) return;
      lastGood = null;
      sendButton.disabled = true;
      resultStatus.dataset.outcome = "error";
      if (error instanceof ApiError && error.status === 422) {
        resultStatus.textContent = `${error.code === "invalid_override" ? "Invalid override" : "Cannot be sent"}: ${error.message}`;
      } else {
        resultStatus.textContent = `Could not try the mapping: ${describeError(error)}`;
      }
      replace(resultBox);
      showToml("");
    }
  }
  const schedule = debounce(run, 300);

  eventArea.addEventListener("input", () => {
    state.eventText = eventArea.value;
    schedule();
  });
  destSelect.addEventListener("change", () => {
    state.destination = destSelect.value;
    replace(sendResult);
    run();
  });

  sendButton.addEventListener("click", async () => {
    // Send exactly what the result shows: first try any edit still waiting for the debounce.
    schedule.cancel();
    await run();
    if (!lastGood || stopped) return;
    const body = lastGood;
    const ok = await confirmDialog({
      title: `Send this event to ${state.destination}?`,
      message: `It is really sent to the vendor now, once, outside the queue (no retry). ${body.overrides ? "Your overrides are applied to this one send only; the configuration does not change." : ""}`,
      confirm: "Send for real",
      danger: true,
    });
    if (!ok) return;
    sendButton.disabled = true;
    replace(sendResult, h("p", { text: "Sending…" }));
    try {
      const data = await post(`/destinations/${encodeURIComponent(state.destination)}/send`, { ...body, confirm: true });
      replace(
        sendResult,
        h(
          "p",
          {},
          "Vendor answered ",
          h("strong", { text: data.status ? `HTTP ${data.status}` : "nothing" }),
          `: ${data.outcome}${data.reason ? ` (${data.reason})` : ""}.`,
        ),
        data.body ? h("pre", { class: "code vendor-body" }, h("code", { text: prettyBody(data.body) })) : null,
      );
    } catch (error) {
      replace(sendResult, h("p", { class: "form-error", text: `Not sent: ${describeError(error)}` }));
    } finally {
      sendButton.disabled = false;
    }
  });

  const unsubscribe = stream.subscribe((kind) => {
    if (kind === "add" || kind === "reset") fillRecent();
  });

  container.append(
    h("div", { class: "view-head" }, h("h1", { text: "Mapping tester" })),
    h("p", { class: "lead", text: "See the exact request a destination would send for an event, with your mapping overrides. Nothing is sent unless you press \"Send for real\" and confirm." }),
    h(
      "div",
      { class: "tester-grid" },
      h(
        "section",
        { class: "panel tester-input", "aria-label": "Input" },
        field("Destination", destSelect),
        field("Recent events", recentSelect),
        field("Event (JSON)", eventArea),
        eventError,
        h(
          "fieldset",
          { class: "overrides" },
          h("legend", { text: "Mapping overrides" }),
          h("p", { class: "hint", text: "field = JMESPath over the event, like [destinations.mapping] in crossdock.toml. Use section.field for a section's field; an empty expression removes the field." }),
          rowsBox,
          addButton,
        ),
      ),
      h(
        "section",
        { class: "panel tester-output", "aria-labelledby": "tester-result-title" },
        h("h2", { id: "tester-result-title", text: "Result" }),
        resultStatus,
        resultBox,
        tomlBox,
        h("div", { class: "send-box" }, sendButton, sendResult),
      ),
    ),
  );

  fillRecent();
  renderRows();
  tomlBox.hidden = true;

  (async () => {
    try {
      const data = await get("/destinations");
      if (stopped) return;
      const list = data.destinations || [];
      replace(destSelect, list.map((card) => h("option", { value: card.id, text: `${card.id} (${card.plugin})` })));
      if (!list.some((card) => card.id === state.destination)) state.destination = list[0]?.id || "";
      destSelect.value = state.destination;
      run();
    } catch (error) {
      resultStatus.textContent = `Could not load the destinations: ${describeError(error)}`;
    }
  })();

  return () => {
    stopped = true;
    schedule.cancel();
    unsubscribe();
    if (controller) controller.abort();
  };
}
