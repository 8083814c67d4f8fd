// Formatting helpers: times, numbers, event summaries.

const numberFormat = new Intl.NumberFormat();
const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** 12,345 */
export function num(value) {
  return numberFormat.format(value ?? 0);
}

/** Epoch seconds (or an ISO string) → Date, or null. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** 14:03:22 today, else "Nov 30, 2026, 14:03:22". */
export function clock(value) {
  const date = toDate(value);
  if (!date) return "—";
  const today = new Date().toDateString() === date.toDateString();
  return today ? timeFormat.format(date) : dateTimeFormat.format(date);
}

/** Full date and time, for title attributes and <time datetime>. */
export function fullTime(value) {
  const date = toDate(value);
  return date ? dateTimeFormat.format(date) : "";
}

/** A <time> element: short clock text, full time as title, ISO in datetime. */
export function timeElement(value) {
  const el = document.createElement("time");
  const date = toDate(value);
  el.textContent = clock(value);
  if (date) {
    el.dateTime = date.toISOString();
    el.title = fullTime(value);
  }
  return el;
}

/** "3 s", "4 min", "2 h 5 min" for a duration in seconds. */
export function duration(seconds) {
  const exact = Math.max(0, seconds ?? 0);
  if (exact < 10) return `${exact.toFixed(1)} s`;
  const s = Math.round(exact);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60 ? `${s % 60} s` : ""}`.trim();
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
}

/** "in 12 s" / "12 s ago" relative to now, for epoch seconds. */
export function relative(epochSeconds) {
  if (!epochSeconds) return "";
  const delta = epochSeconds - Date.now() / 1000;
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

/** The headline of an event: its name for track, else name/type. */
export function eventTitle(event) {
  if (!event || typeof event !== "object") return "(no event)";
  if (event.type === "track") return String(event.event ?? "(unnamed track)");
  if ((event.type === "page" || event.type === "screen") && event.name) {
    return `${event.type} ${event.name}`;
  }
  return String(event.type ?? "(no type)");
}

/** userId, else anonymousId, else a dash. */
export function eventUser(event) {
  if (!event) return "—";
  return String(event.userId ?? event.anonymousId ?? "—");
}

/** Pretty JSON with two spaces. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** Vendor answer bodies: pretty JSON when they parse, else the text as is. */
export function prettyBody(body) {
  if (body === null || body === undefined) return "";
  if (typeof body !== "string") return pretty(body);
  try {
    return pretty(JSON.parse(body));
  } catch {
    return body;
  }
}
