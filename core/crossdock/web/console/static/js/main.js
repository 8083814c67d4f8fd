// The console's entry point: session handling, the hash router and the page shell.

import {
  ApiError,
  currentSession,
  describeError,
  onPartial,
  onUnauthorized,
  signIn,
  signOut,
} from "./api.js";
import { h, replace } from "./dom.js";
import * as destinations from "./destinations.js";
import * as dlq from "./dlq.js";
import * as eventPage from "./event.js";
import * as live from "./live.js";
import * as stream from "./stream.js";
import * as tester from "./tester.js";

const main = document.getElementById("main");
const nav = document.getElementById("mainnav");
const session = document.getElementById("session");
const streamState = document.getElementById("stream-state");

const ROUTES = {
  live: { view: live, title: "Live events" },
  destinations: { view: destinations, title: "Destinations" },
  dlq: { view: dlq, title: "Dead letters" },
  tester: { view: tester, title: "Mapping tester" },
  event: { view: eventPage, title: "Event" },
};

let signedIn = false;
let cleanup = null;
let lastRoute = null;

/** Parse "#/dlq?destination=x" → {name: "dlq", arg: undefined, params: URLSearchParams}. */
export function parseHash(hash) {
  const text = (hash || "").replace(/^#\/?/, "");
  const [path, search = ""] = text.split("?", 2);
  const [name, ...rest] = path.split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  return { name: ROUTES[name] ? name : "live", arg, params: new URLSearchParams(search) };
}

function render() {
  if (!signedIn) return;
  const route = parseHash(location.hash);
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  cleanup = null;
  for (const link of nav.querySelectorAll("a")) {
    const current = link.dataset.route === route.name;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const { view, title } = ROUTES[route.name];
  document.title = `${title} · Crossdock console`;
  const container = h("div", { class: `view view-${route.name}` });
  replace(main, container);
  cleanup = view.render(container, route) || null;
  // Move focus to the new view for keyboard and screen-reader users (not on first load).
  if (lastRoute !== null && lastRoute !== location.hash) main.focus({ preventScroll: true });
  lastRoute = location.hash;
}

function showSignIn(message) {
  signedIn = false;
  if (cleanup) cleanup();
  cleanup = null;
  stream.stop();
  nav.hidden = true;
  session.hidden = true;
  document.title = "Sign in · Crossdock console";
  const input = h("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const error = h("p", { class: "form-error", id: "signin-error", role: "alert" });
  if (message) error.textContent = message;
  const submit = h("button", { type: "submit", class: "btn btn-primary", text: "Sign in" });
  const form = h(
    "form",
    { class: "signin-form", novalidate: true },
    // For password managers: the token belongs to no user name, "admin" stands in.
    h("input", { type: "text", name: "username", autocomplete: "username", value: "admin", hidden: true, tabindex: "-1" }),
    h("label", { for: "token", text: "Admin token" }),
    input,
    h("p", {
      class: "hint",
      text: "The value of server.admin_token in crossdock.toml. It is sent once; the browser then keeps a session cookie until you sign out or close it.",
    }),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!input.value) {
      error.textContent = "Enter the admin token.";
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await signIn(input.value);
      input.value = "";
      enter();
    } catch (failure) {
      error.textContent = signInError(failure);
      input.select();
      input.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  replace(
    main,
    h(
      "div",
      { class: "signin-page" },
      h(
        "section",
        { class: "card signin-card", "aria-labelledby": "signin-title" },
        h("h1", { id: "signin-title", text: "Sign in to the Crossdock console" }),
        form,
      ),
    ),
  );
  input.focus();
}

function signInError(failure) {
  if (failure instanceof ApiError) {
    if (failure.status === 401) return "Wrong admin token. Check server.admin_token and try again.";
    if (failure.status === 429) {
      const wait = failure.retryAfter ? ` in ${failure.retryAfter} s` : " in a minute";
      return `Too many failed attempts from this address. Try again${wait}.`;
    }
    if (failure.code === "console_disabled") {
      return "The console is off: this daemon has no server.admin_token.";
    }
  }
  return `Could not sign in: ${describeError(failure)}`;
}

function enter() {
  signedIn = true;
  nav.hidden = false;
  session.hidden = false;
  stream.start();
  if (!location.hash || location.hash === "#" || location.hash === "#/") {
    history.replaceState(null, "", "#/live");
  }
  lastRoute = null;
  render();
}

const STREAM_LABELS = {
  idle: "not connected",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  closed: "disconnected",
};

stream.subscribe((kind, payload) => {
  if (kind === "status") {
    streamState.textContent = STREAM_LABELS[payload] || payload;
    streamState.dataset.state = payload;
  }
  if (kind === "closed" && signedIn) {
    // The server refused the stream: the session may be gone. Ask, then reconnect or sign in.
    currentSession().then((data) => {
      if (data) setTimeout(() => signedIn && stream.restart(), 3000);
      else showSignIn("Your session ended. Sign in again.");
    });
  }
});

onPartial((partial, processes) => {
  const note = document.getElementById("partial-note");
  note.hidden = !partial;
  note.textContent = partial
    ? `Only ${processes.length === 1 ? "one worker process" : `${processes.length} worker processes`} answered in time (one is busy or restarting): what this page shows may be incomplete.`
    : "";
});

onUnauthorized(() => {
  if (signedIn) showSignIn("Your session ended (expired, or the admin token changed). Sign in again.");
});

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await signOut();
  } catch {
    // the cookie is cleared server-side or expires with the browser session anyway
  }
  history.replaceState(null, "", "#/live");
  showSignIn("");
  const error = document.getElementById("signin-error");
  if (error) error.textContent = "";
  const status = document.querySelector(".signin-form .hint");
  if (status) status.textContent = "Signed out. Sign in again with the admin token.";
});

window.addEventListener("hashchange", render);

async function boot() {
  try {
    const data = await currentSession();
    if (data) enter();
    else showSignIn("");
  } catch (error) {
    if (error instanceof ApiError && error.code === "console_disabled") {
      showSignIn("The console is off: this daemon has no server.admin_token.");
    } else {
      showSignIn(`The daemon did not answer: ${describeError(error)}`);
    }
  }
}

boot();
