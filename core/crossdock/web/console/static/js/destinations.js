// Destination cards: state, counts, lag, throughput chart, last errors; pause/resume/probe.

import { describeError, get, post } from "./api.js";
import { throughputChart } from "./chart.js";
import { h, replace } from "./dom.js";
import { duration, num, prettyBody, timeElement } from "./format.js";

const REFRESH_MS = 5000;

function stateOf(card) {
  if (card.credentials_rejected) return { key: "rejected", label: "credentials rejected" };
  if (card.state === "paused") return { key: "paused", label: "paused" };
  if (card.state === "stopped") return { key: "stopped", label: "stopped" };
  if (card.down) return { key: "down", label: "vendor down" };
  return { key: "running", label: "running" };
}

function stat(label, value, extra) {
  return h("div", { class: "stat" }, h("dt", { text: label }), h("dd", {}, value, extra || null));
}

class Card {
  constructor(id, onChange) {
    this.id = id;
    this.onChange = onChange;
    this.title = h("h2", { class: "card-title", text: id });
    this.plugin = h("span", { class: "plugin" });
    this.badge = h("span", { class: "state" });
    this.reason = h("p", { class: "card-reason" });
    this.stats = h("dl", { class: "stats" });
    this.chart = h("div", { class: "chart-box" });
    this.errors = h("div", { class: "last-errors" });
    this.message = h("p", { class: "card-message", role: "status" });
    this.pauseButton = h("button", { type: "button", class: "btn", text: "Pause", onclick: () => this.act("pause") });
    this.resumeButton = h("button", { type: "button", class: "btn", text: "Resume", onclick: () => this.act("resume") });
    this.probeButton = h("button", { type: "button", class: "btn", text: "Probe now", onclick: () => this.probe() });
    const titleId = `dest-${id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    this.title.id = titleId;
    this.el = h(
      "article",
      { class: "card dest-card", "aria-labelledby": titleId, dataset: { destination: id } },
      h("header", { class: "card-head" }, this.title, this.plugin, this.badge),
      this.reason,
      this.stats,
      h("div", { class: "chart-wrap" }, h("p", { class: "chart-label" }, h("span", { text: "Throughput, last 10 min" }), h("span", { class: "legend" }, h("span", { class: "legend-delivered", text: "delivered" }), h("span", { class: "legend-failed", text: "failed" }))), this.chart),
      this.errors,
      h("div", { class: "card-actions" }, this.pauseButton, this.resumeButton, this.probeButton),
      this.message,
    );
  }

  update(card) {
    this.card = card;
    const state = stateOf(card);
    this.plugin.textContent = card.plugin ?? "";
    this.badge.className = `state state-${state.key}`;
    this.badge.textContent = state.label;
    const reason = card.pause_reason || card.down_reason || "";
    this.reason.textContent = reason;
    this.reason.hidden = !reason;
    const deadLink = h("a", {
      href: `#/dlq?destination=${encodeURIComponent(this.id)}`,
      text: num(card.dead_letters),
      "aria-label": `${num(card.dead_letters)} dead letters: open`,
    });
    replace(
      this.stats,
      stat("Delivered", num(card.delivered)),
      stat("Retrying", num(card.retrying)),
      stat("Dead letters", card.dead_letters ? deadLink : "0"),
      stat("Queued", num(card.pending)),
      stat("Lag", card.lag_seconds ? duration(card.lag_seconds) : "none"),
    );
    replace(this.chart, throughputChart(card.throughput, { label: `${this.id} throughput` }));
    const errors = card.last_errors || [];
    if (errors.length) {
      replace(
        this.errors,
        h("h3", { text: "Last vendor errors" }),
        h(
          "ul",
          { class: "error-list" },
          errors.map((error, index) => {
            const status = error.status ? `HTTP ${error.status}` : "no answer";
            // The reason often just repeats the status ("HTTP 500"): say it once.
            const reason = error.reason && error.reason !== status ? error.reason : "";
            const body = error.body ? h("pre", { class: "code vendor-body" }, h("code", { text: prettyBody(error.body) })) : null;
            return h(
              "li",
              {},
              h(
                "p",
                { class: "error-head" },
                timeElement(error.at),
                h("span", { class: "error-status", text: status }),
                reason ? h("span", { class: "error-reason", text: reason }) : null,
              ),
              // The newest answer is shown; older ones open on demand.
              body && index > 0 ? h("details", {}, h("summary", { text: "vendor answer" }), body) : body,
            );
          }),
        ),
      );
    } else {
      replace(this.errors, h("p", { class: "muted", text: "No vendor errors recently." }));
    }
    const paused = card.state === "paused";
    this.pauseButton.hidden = paused;
    this.resumeButton.hidden = !paused;
    // Keep keyboard focus on the button that replaced the one just pressed.
    if (document.activeElement === this.pauseButton && paused) this.resumeButton.focus();
    if (document.activeElement === this.resumeButton && !paused) this.pauseButton.focus();
  }

  async act(action) {
    const button = action === "pause" ? this.pauseButton : this.resumeButton;
    button.disabled = true;
    this.message.textContent = action === "pause" ? "Pausing…" : "Resuming…";
    try {
      const card = await post(`/destinations/${encodeURIComponent(this.id)}/${action}`);
      this.update(card);
      this.message.textContent = action === "pause" ? "Paused: events stay queued until you resume." : "Resumed.";
      this.onChange();
    } catch (error) {
      this.message.textContent = `Could not ${action}: ${describeError(error)}`;
    } finally {
      button.disabled = false;
    }
  }

  async probe() {
    this.probeButton.disabled = true;
    this.message.textContent = "Probing…";
    try {
      const result = await post(`/destinations/${encodeURIComponent(this.id)}/probe`);
      const status = result.status ? ` (HTTP ${result.status})` : "";
      const message = result.message || (result.ok ? "the vendor accepted it" : "refused");
      this.message.textContent = `Probe ${result.ok ? "OK" : "failed"}${status}: ${message}`;
      this.message.dataset.ok = String(Boolean(result.ok));
      this.onChange();
    } catch (error) {
      this.message.textContent = `Could not probe: ${describeError(error)}`;
    } finally {
      this.probeButton.disabled = false;
    }
  }
}

/** Render the destinations view. */
export function render(container) {
  const grid = h("div", { class: "card-grid" });
  const status = h("p", { class: "muted", "aria-live": "polite" });
  const cards = new Map();
  let timer = null;
  let stopped = false;

  container.append(
    h("div", { class: "view-head" }, h("h1", { text: "Destinations" }), status),
    grid,
  );

  async function refresh() {
    clearTimeout(timer);
    timer = null;
    try {
      const data = await get("/destinations");
      if (stopped) return;
      const list = data.destinations || [];
      if (!list.length) {
        replace(grid, h("div", { class: "empty-state" }, h("h2", { text: "No destinations" }), h("p", { text: "Add a [[destinations]] table to crossdock.toml and reload." })));
        cards.clear();
      } else {
        const ids = new Set(list.map((card) => card.id));
        for (const [id, card] of cards) {
          if (!ids.has(id)) {
            card.el.remove();
            cards.delete(id);
          }
        }
        list.forEach((data, index) => {
          let card = cards.get(data.id);
          if (!card) {
            card = new Card(data.id, () => refresh());
            cards.set(data.id, card);
          }
          card.update(data);
          if (grid.children[index] !== card.el) grid.insertBefore(card.el, grid.children[index] || null);
        });
        for (const child of [...grid.children]) if (!child.classList.contains("dest-card")) child.remove();
      }
      status.textContent = "";
    } catch (error) {
      if (stopped) return;
      status.textContent = `Could not load the destinations: ${describeError(error)}`;
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
