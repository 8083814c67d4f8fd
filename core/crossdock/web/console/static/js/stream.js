// The live event buffer, shared by the live view, the event page and the mapping tester.
// One EventSource while signed in; at most MAX_EVENTS kept (oldest dropped), newest first.

import { BASE, get } from "./api.js";

export const MAX_EVENTS = 500;

const state = {
  records: [], // newest first: {seq, source, received_at, event}
  seen: new Set(), // messageIds in records, to merge /events/recent with the stream
  dropped: 0, // events the server left out of this stream (load or a slow reader)
  status: "idle", // idle | connecting | live | reconnecting | closed
  source: null,
  listeners: new Set(),
  seq: 0,
};

/** Subscribe to changes: fn(kind, payload), kind = "add" | "reset" | "status" | "dropped". */
export function subscribe(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

function emit(kind, payload) {
  for (const fn of state.listeners) fn(kind, payload);
}

function setStatus(status) {
  state.status = status;
  emit("status", status);
}

/** Newest-first records currently buffered. */
export function records() {
  return state.records;
}

/** The buffered record of a messageId, or undefined. */
export function findRecord(messageId) {
  return state.records.find((record) => record.event && record.event.messageId === messageId);
}

/** The sequence number of the newest event received (counts every event, kept or not). */
export function lastSeq() {
  return state.seq;
}

export function streamStatus() {
  return state.status;
}

export function droppedCount() {
  return state.dropped;
}

function add(record, { atEnd = false } = {}) {
  const id = record.event && record.event.messageId;
  if (id && state.seen.has(id)) return null;
  state.seq += 1;
  const item = { ...record, seq: state.seq };
  if (atEnd) state.records.push(item);
  else state.records.unshift(item);
  if (id) state.seen.add(id);
  while (state.records.length > MAX_EVENTS) {
    const old = state.records.pop();
    if (old.event && old.event.messageId) state.seen.delete(old.event.messageId);
  }
  return item;
}

/** Open the stream (once) and load the recent events. */
export function start() {
  if (state.source) return;
  setStatus("connecting");
  const source = new EventSource(`${BASE}/events/stream`, { withCredentials: true });
  state.source = source;
  source.addEventListener("open", () => setStatus("live"));
  source.addEventListener("accepted", (message) => {
    let record;
    try {
      record = JSON.parse(message.data);
    } catch {
      return;
    }
    const item = add(record);
    if (item) emit("add", item);
  });
  source.addEventListener("dropped", (message) => {
    try {
      state.dropped += Number(JSON.parse(message.data).count) || 0;
    } catch {
      return;
    }
    emit("dropped", state.dropped);
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself unless the server refused (401): then it is CLOSED.
    setStatus(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      state.source = null;
      emit("closed");
    }
  });
  loadRecent();
}

async function loadRecent() {
  try {
    const data = await get(`/events/recent?limit=${MAX_EVENTS}`);
    // The answer is newest first; append after what the stream already delivered.
    for (const record of data.events || []) add(record, { atEnd: true });
    state.records.sort((a, b) => (b.received_at ?? 0) - (a.received_at ?? 0));
    emit("reset");
  } catch {
    // the stream still works; the list just starts empty
  }
}

/** Close the stream and forget every event (sign-out). */
export function stop() {
  if (state.source) state.source.close();
  state.source = null;
  state.records = [];
  state.seen.clear();
  state.dropped = 0;
  setStatus("idle");
  emit("reset");
}

/** Reconnect after the server closed the stream (e.g. after signing in again). */
export function restart() {
  if (state.source) state.source.close();
  state.source = null;
  start();
}
