// The console API client: JSON in and out, the CSRF header on every state change, and a
// sign-in prompt whenever the session is gone (401).

/** Base path of the console API, derived from the page's own path (/console → /console/api). */
export const BASE = `${location.pathname.replace(/\/+$/, "")}/api`;

let csrf = null;
const unauthorizedListeners = new Set();

/** An API error: HTTP status, the server's code and message (or a network failure: status 0). */
export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const message = (body && body.message) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = (body && body.code) || (status === 0 ? "network" : "http_error");
    this.body = body;
    this.retryAfter = retryAfter ? Number(retryAfter) : null;
  }
}

const partialListeners = new Set();

/** Call fn(partial, processes) with every answer merged across `crossdock run --workers N`
 * processes: partial is true when one of them did not answer in time. */
export function onPartial(fn) {
  partialListeners.add(fn);
}

/** Call fn() whenever a request is answered 401 (session expired or token changed). */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

/** Call the API: method, path under /console/api, optional JSON body. Resolves to the JSON. */
export async function request(method, path, body, { signal } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store", signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && csrf) headers["X-Crossdock-CSRF"] = csrf;
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { message: "the daemon did not answer (is it running?)" });
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: text.slice(0, 300) };
    }
  }
  if (response.status === 401 && !path.startsWith("/session")) {
    csrf = null;
    for (const fn of unauthorizedListeners) fn();
  }
  if (!response.ok) {
    throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  }
  if (data && typeof data === "object" && "partial" in data) {
    for (const fn of partialListeners) fn(data.partial === true, data.processes || []);
  }
  return data;
}

export const get = (path, options) => request("GET", path, undefined, options);
export const post = (path, body = {}, options) => request("POST", path, body, options);

/** Sign in with the admin token; keeps the CSRF token in memory only. */
export async function signIn(token) {
  const data = await request("POST", "/session", { token });
  csrf = data.csrf;
  return data;
}

/** Regain the CSRF token from the session cookie (page reload); null when not signed in. */
export async function currentSession() {
  try {
    const data = await request("GET", "/session");
    csrf = data.csrf;
    return data;
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

/** Sign out: the server clears the cookie. */
export async function signOut() {
  try {
    await request("DELETE", "/session");
  } finally {
    csrf = null;
  }
}

/** Build a query string from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A short human sentence for an error, for status lines. */
export function describeError(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return error.message;
    return `${error.message} (${error.code}, HTTP ${error.status})`;
  }
  return String(error && error.message ? error.message : error);
}
