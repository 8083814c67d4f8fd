"""The web console in a real browser: headless Chromium, driven by Playwright, on ``crossdock run``.

One daemon with a ``segment`` source and two ``webhook`` destinations: ``sink`` (a local fake that
answers 200) and ``vendor`` (a local fake that answers 500 to the event under test, with a JSON
body echoing the ``Authorization`` header it got, and holds its second answer until the test
releases it, so the page is seen in each state without any timing assumption). The scenario an
operator follows: sign in (a wrong token is refused), watch an event posted to ``/v1/track``
appear live (pause, filter), open it and see it delivered to ``sink`` and retrying at ``vendor``
with the vendor's answer, see it dead-lettered (``max_attempts = 2``, ``max_age = "1ms"``),
replay it from the dead-letters page once the vendor is healthy and see it delivered, try the
mapping with an override (and send for real), sign out; all by visible labels and roles, the
sign-in and the opening of an event by keyboard. Every response body the page received (the
event stream's messages included, read through the DevTools protocol) is checked for every form
of every secret: the write key (also posted inside the event as ``writeKey``), the admin token,
the vendor's token (echoed back in its error body) and its signing secret. Markup in an event
field must stay text. The console is also checked at a phone's width and in dark mode, and the
page it shows when no admin token is set; a static check keeps what the console's
Content-Security-Policy would refuse (inline code, style attributes) and HTML sinks out of its
files.

With ``CROSSDOCK_SCREENSHOTS=1`` the test writes ``docs/images/console-*.png`` (the operator
guide's pictures); otherwise it writes nothing outside its temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crossdock.secrets import variants
from crossdock.testing.daemon import Daemon, free_port
from crossdock.testing.fakes import FakeVendor, RecordedRequest
from crossdock.testing.helpers import basic_auth, wait_until

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (it is in the dev extra)"
)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "images"
SCREENSHOTS = os.environ.get("CROSSDOCK_SCREENSHOTS") == "1"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
WRITE_KEY = "wk-console-7f3a9c21d4"
VENDOR_TOKEN = "vendor-token-5be8e1c0a7"
VENDOR_SECRET = "vendor-signing-secret-9d2f"
# A limit against a hung browser or daemon; nothing waits for it to pass.
TIMEOUT_MS = 20_000
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "sink"
plugin = "webhook"
[destinations.settings]
url = "{{sink}}/hook"
[destinations.delivery]
max_wait_ms = 20

[[destinations]]
id = "vendor"
plugin = "webhook"
[destinations.settings]
url = "{{vendor}}/v1/events"
secret = "{VENDOR_SECRET}"
headers = {{ Authorization = "Bearer ${{CROSSDOCK_TEST_VENDOR_TOKEN}}" }}
[destinations.delivery]
max_wait_ms = 20
max_attempts = 2
max_age = "1ms"
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium (Playwright's own browsers are not downloaded)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no Chromium on PATH (tried {', '.join(CHROMIUM_NAMES)}); .ci/run installs it")
    raise AssertionError  # unreachable


class FlakyVendor(FakeVendor):
    """Answers 500 to the events in :attr:`failing` (by ``messageId``) with a JSON body that
    echoes the request's ``Authorization`` (as some vendors do: the console must mask it); from
    an event's second failure on, holds the answer until :attr:`release` is set. Other events,
    and every event once :attr:`healthy`, get 200."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = False
        self.failing: set[str] = set()
        self.failures = 0
        self.release = asyncio.Event()

    async def answer(self, request: RecordedRequest) -> web.Response:
        """500 (held after the first) for a failing event until healthy, else 200."""
        message_id = request.json().get("messageId")
        if self.healthy or message_id not in self.failing:
            return web.json_response({"success": True})
        self.failures += 1
        if self.failures > 1:
            await self.release.wait()
        body = {
            "error": "upstream unavailable",
            "echo": {"authorization": request.headers.get("Authorization", "")},
        }
        return web.json_response(body, status=500)

    def message_ids(self) -> list[str]:
        """messageIds of the requests received (the webhook sends the whole event)."""
        ids = []
        for recorded in self.requests:
            try:
                ids.append(recorded.json().get("messageId"))
            except ValueError:
                continue
        return ids


@pytest.fixture
async def sink() -> AsyncIterator[FakeVendor]:
    """The healthy webhook receiver."""
    async with FakeVendor() as fake:
        yield fake


@pytest.fixture
async def vendor() -> AsyncIterator[FlakyVendor]:
    """The failing vendor."""
    fake = FlakyVendor()
    await fake.start()
    try:
        yield fake
    finally:
        fake.release.set()
        await fake.close()


@pytest.fixture
def daemon(sink: FakeVendor, vendor: FlakyVendor, tmp_path: Path) -> Iterator[Daemon]:
    """``crossdock run`` with the console on (the helper sets an admin token)."""
    config = CONFIG.replace("{sink}", sink.url).replace("{vendor}", vendor.url)
    process = Daemon(
        config, tmp_path / "crossdock", env={"CROSSDOCK_TEST_VENDOR_TOKEN": VENDOR_TOKEN}
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


class Recorder:
    """Every response body a page received, and every message of its event stream (through the
    DevTools protocol: an EventSource body never ends, so Playwright cannot read it); page
    errors, CSP violations and JavaScript dialogs (an injected ``alert``) as problems."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        self.pending: set[asyncio.Task[None]] = set()
        self.problems: list[str] = []

    async def attach(self, page: Any) -> None:
        """Listen on ``page``: responses, stream messages, console errors and CSP reports."""
        page.on("response", self._on_response)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._on_console)
        page.on("dialog", self._on_dialog)
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Network.enable")
        cdp.on(
            "Network.eventSourceMessageReceived",
            lambda message: self.bodies.append(
                ("event-stream", str(message.get("data", "")).encode())
            ),
        )

    def _on_dialog(self, dialog: Any) -> None:
        # The console never calls alert/confirm/prompt: its confirmations are <dialog>s.
        self.problems.append(f"javascript dialog: {dialog.message}")
        task = asyncio.get_running_loop().create_task(dialog.dismiss())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def _on_console(self, message: Any) -> None:
        text = message.text
        # "Failed to load resource" is the browser noting a 401/403 the page expects.
        unexpected = message.type == "error" and not text.startswith("Failed to load resource")
        if "Content Security Policy" in text or unexpected:
            self.problems.append(f"console {message.type}: {text}")

    def _on_response(self, response: Any) -> None:
        if "text/event-stream" in (response.headers.get("content-type") or ""):
            return
        task = asyncio.get_running_loop().create_task(self._read(response))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _read(self, response: Any) -> None:
        try:
            self.bodies.append((response.url, await response.body()))
        except Exception as exc:  # a page that navigated away, or a 204/redirect: no body
            if response.status not in (204, 301, 302, 303, 307, 308):
                self.bodies.append((response.url, f"(unreadable: {exc})".encode()))

    async def settle(self) -> None:
        """Wait for the bodies still being read."""
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        """``name in url`` for every secret (any form: plain, URL-encoded, base64) found."""
        found = []
        for url, body in self.bodies:
            text = body.decode("utf-8", "replace")
            for name, value in secrets.items():
                if any(form in text for form in variants(value)):
                    found.append(f"{name} in {url}")
        return found


async def _launch(playwright: Any, chromium: str) -> Any:
    return await playwright.chromium.launch(
        executable_path=chromium, args=CHROMIUM_ARGS, headless=True
    )


async def _new_page(browser: Any, recorder: Recorder, **options: Any) -> Any:
    context = await browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await recorder.attach(page)
    return page


async def _sign_in(page: Any, base: str, token: str) -> None:
    await page.goto(f"{base}/console")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def _shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)


async def _no_horizontal_overflow(page: Any, where: str) -> None:
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{where}: the page is {overflow}px wider than the phone's screen"


async def _track(http: aiohttp.ClientSession, base: str, **fields: Any) -> str:
    body = {"messageId": f"console-{uuid.uuid4()}", "writeKey": WRITE_KEY, **fields}
    message_id = body["messageId"]
    headers = {"Authorization": basic_auth(WRITE_KEY)}
    async with http.post(f"{base}/v1/{body.pop('kind', 'track')}", json=body,
                         headers=headers) as response:  # fmt: skip
        assert response.status == 200, await response.text()
    return message_id


def _row(page: Any, destination: str, state: str | None = None) -> Any:
    selector = f'.journey-row[data-destination="{destination}"]'
    if state:
        selector += f'[data-state="{state}"]'
    return page.locator(selector)


async def test_console_scenario(
    chromium: str, daemon: Daemon, sink: FakeVendor, vendor: FlakyVendor
) -> None:
    """Sign in, live events, an event's journey, dead letter, replay, mapping tester, sign out;
    no secret in anything the page received."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    base = daemon.url
    recorder = Recorder()
    async with async_playwright() as playwright, aiohttp.ClientSession() as http:
        browser = await _launch(playwright, chromium)
        page = await _new_page(browser, recorder, viewport=DESKTOP, color_scheme="light")

        # --- sign in: a wrong token gets a clear message and no session ----------------------
        await _sign_in(page, base, "not-the-admin-token")
        await expect(page.locator("#signin-error")).to_contain_text("Wrong admin token")
        assert not [c for c in await page.context.cookies() if c["name"] == "crossdock_console"]
        await page.get_by_label("Admin token").fill(daemon.admin_token)
        await page.get_by_label("Admin token").press("Enter")  # the keyboard is enough
        await expect(page.get_by_role("heading", name="Live events")).to_be_visible()
        cookie = next(c for c in await page.context.cookies() if c["name"] == "crossdock_console")
        assert cookie["httpOnly"], cookie
        assert cookie["sameSite"] == "Strict", cookie
        await expect(page.locator(".empty-state")).to_contain_text(f"{base}/v1/track")
        await expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")

        # --- live: an event posted now appears at the top, newest first ----------------------
        # Event fields are the sender's: markup in them must stay text.
        markup = "<img src=x onerror=alert(document.domain)>"
        await _track(http, base, kind="identify", userId="user-7", traits={"name": markup})
        order = f"console-{uuid.uuid4()}"
        vendor.failing.add(order)
        await _track(
            http, base, messageId=order, userId="user-42", event="Order Completed",
            properties={"order_id": "o-42", "revenue": 19.99, "plan": "pro"},
        )  # fmt: skip
        rows = page.locator(".event-row")
        await expect(rows.first).to_have_attribute("data-message-id", order)
        await expect(rows).to_have_count(2)
        await rows.last.locator("a").click()
        await expect(page.locator("pre.json")).to_contain_text(markup)
        assert await page.locator("main img").count() == 0
        await page.go_back()
        await expect(rows).to_have_count(2)

        # pause: what arrives meanwhile is counted (matching the filter or not), not shown
        await page.get_by_role("button", name="Pause").click()
        await page.get_by_label("Type").select_option("track")
        await expect(rows).to_have_count(1)
        await expect(page.locator("#live-count")).to_contain_text("1 hidden by the filter")
        await _track(http, base, kind="page", userId="user-7", name="Pricing")
        await expect(page.locator(".paused-note")).to_contain_text("1 new event")
        await expect(page.locator(".paused-note")).to_contain_text("1 filtered out")
        await expect(rows).to_have_count(1)
        await page.get_by_role("button", name="Resume").click()
        await page.get_by_role("button", name="Clear filter").click()
        await expect(rows).to_have_count(3)
        await _shot(page, "live")

        # --- the event: delivered to sink, retrying at vendor with the vendor's answer -------
        await page.locator(f'.event-row[data-message-id="{order}"] a').press("Enter")
        await expect(page.get_by_role("heading", name="Order Completed")).to_be_visible()
        await expect(page.locator("pre.json")).to_contain_text('"order_id": "o-42"')
        await expect(_row(page, "sink", "delivered")).to_contain_text("Delivered at")
        retrying = _row(page, "vendor", "retrying")
        await expect(retrying).to_contain_text("HTTP 500")
        await expect(retrying).to_contain_text("upstream unavailable")
        await expect(retrying).to_contain_text("Attempt 1 failed")
        await _shot(page, "event")

        # --- dead-lettered after the second failure (max_attempts = 2, max_age = "1ms") ----------
        vendor.release.set()
        dead = _row(page, "vendor", "dead_lettered")
        await expect(dead).to_contain_text("Dead-lettered after 2 attempts")
        await expect(dead).to_contain_text("HTTP 500")

        # --- destinations: counts, the vendor's last error, pause and resume -----------------
        await page.get_by_role("link", name="Destinations").click()
        vendor_card = page.locator('.dest-card[data-destination="vendor"]')
        await expect(vendor_card.locator(".last-errors")).to_contain_text("HTTP 500")
        await expect(vendor_card.locator(".stat", has_text="Dead letters")).to_contain_text("1")
        sink_card = page.locator('.dest-card[data-destination="sink"]')
        await expect(sink_card.locator(".chart")).to_be_visible()
        await sink_card.get_by_role("button", name="Pause").click()
        await expect(sink_card.locator(".card-head .state")).to_have_text("paused")
        await sink_card.get_by_role("button", name="Resume").click()
        await expect(sink_card.locator(".card-head .state")).to_have_text("running")
        await _shot(page, "destinations")

        # --- dead letters: replay it once the vendor is healthy ------------------------------
        vendor.healthy = True
        await page.goto(f"{base}/console#/event/{order}")
        await page.get_by_role("link", name="See it in dead letters").click()
        entry = page.locator(f'tr[data-message-id="{order}"]')
        await expect(entry).to_contain_text("upstream unavailable")
        await expect(page.locator(".dlq-status")).to_contain_text("1 dead letter")
        await entry.get_by_role("checkbox").check()
        await page.get_by_role("button", name="Replay 1").click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text("Replay 1 dead letter?")
        await _shot(page, "dlq")
        await dialog.get_by_role("button", name="Replay 1").click()
        await expect(page.locator(".job-label")).to_contain_text("Replayed 1 dead letter")
        await wait_until(lambda: order in vendor.message_ids(), what="the replayed event")
        await page.goto(f"{base}/console#/event/{order}")
        await expect(_row(page, "vendor", "delivered")).to_contain_text("Delivered at")
        await expect(_row(page, "sink", "delivered")).to_be_visible()

        # --- mapping tester: an override changes the request at once; TOML to paste ----------
        await page.get_by_role("button", name="Try in the mapping tester").click()
        await expect(page.get_by_role("heading", name="Mapping tester")).to_be_visible()
        await page.get_by_label("Destination").select_option("vendor")
        status = page.locator("#tester-status")
        await expect(status).to_contain_text("Would send 1 request")
        headers = page.locator(".headers-table")
        await expect(headers).to_contain_text("Authorization")
        await page.get_by_label("Destination").select_option("sink")
        await page.get_by_label("Override 1 field").fill("plan_copy")
        await page.get_by_label("Override 1 expression").fill("properties.[")
        await expect(status).to_contain_text("Invalid override")
        await page.get_by_label("Override 1 expression").fill("properties.plan")
        await expect(page.locator(".request-body")).to_contain_text('"plan_copy": "pro"')
        toml = page.locator(".toml-snippet")
        await expect(toml).to_contain_text("[destinations.mapping]")
        await expect(toml).to_contain_text("plan_copy")
        await expect(toml).to_contain_text("properties.plan")
        await _shot(page, "tester")

        # nothing is sent until "send for real" is confirmed
        before = len(sink.requests)
        await page.get_by_role("button", name="Send for real").click()
        await page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        await page.get_by_role("button", name="Send for real").click()
        await page.get_by_role("dialog").get_by_role("button", name="Send for real").click()
        await expect(page.locator(".send-result")).to_contain_text("HTTP 200")
        sent = [r.json() for r in sink.requests[before:]]
        assert [s.get("plan_copy") for s in sent] == ["pro"], sent

        # --- dark mode and the phone's width: readable, nothing wider than the screen --------
        dark = await _new_page(browser, recorder, viewport=DESKTOP, color_scheme="dark")
        await _sign_in(dark, base, daemon.admin_token)
        await dark.goto(f"{base}/console#/event/{order}")
        await expect(_row(dark, "vendor", "delivered")).to_be_visible()
        background = await dark.evaluate("getComputedStyle(document.body).backgroundColor")
        assert _luminance(background) < 0.2, background
        await _shot(dark, "event-dark")
        await dark.context.close()

        phone = await _new_page(browser, recorder, viewport=PHONE, color_scheme="light")
        await _sign_in(phone, base, daemon.admin_token)
        for route, ready in (
            ("live", ".event-row"),
            (f"event/{order}", ".journey-row"),
            ("destinations", ".dest-card"),
            ("dlq", ".dlq-table, .table-wrap .empty-state"),
            ("tester", ".request-body"),
        ):
            await phone.goto(f"{base}/console#/{route}")
            await expect(phone.locator(ready).first).to_be_visible()
            await _no_horizontal_overflow(phone, route)
            if route == "live":
                await _shot(phone, "phone")
        await phone.context.close()

        # --- sign out: the session is gone ---------------------------------------------------
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_label("Admin token")).to_be_visible()
        answer = await page.request.get(f"{base}/console/api/destinations")
        assert answer.status == 401

        await recorder.settle()
        await browser.close()

    assert vendor.failures >= 2
    secrets = {
        "write key": WRITE_KEY,
        "admin token": daemon.admin_token,
        "vendor token": VENDOR_TOKEN,
        "vendor secret": VENDOR_SECRET,
    }
    streamed = [body for url, body in recorder.bodies if url == "event-stream"]
    assert any(order.encode() in body for body in streamed), "no stream message was recorded"
    # The vendor's echo of its token reached the page, masked.
    assert any(b"Bearer ***" in body for _, body in recorder.bodies)
    assert recorder.leaks(secrets) == []
    assert recorder.problems == []


def _luminance(css_color: str) -> float:
    """Relative brightness 0..1 of an ``rgb(r, g, b)`` computed colour."""
    numbers = [float(n) for n in css_color[css_color.index("(") + 1 : -1].split(",")[:3]]
    red, green, blue = (n / 255 for n in numbers)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


async def test_console_off_without_an_admin_token(chromium: str, tmp_path: Path) -> None:
    """No admin token: ``/console`` is a page saying how to turn the console on (styled: the CSS
    loads under the console's CSP), and the API refuses."""
    from playwright.async_api import async_playwright, expect

    port = free_port()
    config = (
        f'[server]\nlisten = "127.0.0.1:{port}"\nshutdown_timeout = 5\n\n'
        f'[[sources]]\nid = "web"\ntype = "segment"\nwrite_keys = ["{WRITE_KEY}"]\n\n'
        '[[destinations]]\nid = "out"\nplugin = "file"\n'
        '[destinations.settings]\npath = "{workdir}/events.ndjson"\n'
    )
    process = Daemon(config, tmp_path / "crossdock", port=port)
    process.start()
    try:
        recorder = Recorder()
        async with async_playwright() as playwright:
            browser = await _launch(playwright, chromium)
            page = await _new_page(browser, recorder, viewport=PHONE)
            response = await page.goto(f"{process.url}/console")
            assert response is not None
            assert response.status == 403
            await expect(page.get_by_role("heading", name="The console is off")).to_be_visible()
            await expect(page.locator("pre")).to_contain_text("admin_token")
            radius = await page.locator(".card").evaluate("e => getComputedStyle(e).borderRadius")
            assert radius == "8px", "console.css did not apply"
            await _no_horizontal_overflow(page, "off page")
            answer = await page.request.post(
                f"{process.url}/console/api/session", data={"token": "anything"}
            )
            assert answer.status == 403
            assert (await answer.json())["code"] == "console_disabled"
            await browser.close()
        assert recorder.problems == []
    finally:
        process.stop()


async def test_console_says_when_a_worker_process_did_not_answer(
    chromium: str, daemon: Daemon
) -> None:
    """Under ``--workers N`` a merged answer says ``partial`` when a process did not answer in
    time (tests/test_console_workers.py makes a real one with SIGSTOP); the page then says its
    figures may be incomplete, and stops saying so once every process answers again. The
    answer is the daemon's own, with the flag set on its way to the page."""
    from playwright.async_api import async_playwright, expect

    partial = {"on": True}

    async def merged(route: Any) -> None:
        response = await route.fetch()
        data = await response.json()
        data.update(partial=partial["on"], processes=[0] if partial["on"] else [0, 1])
        await route.fulfill(response=response, json=data)

    recorder = Recorder()
    async with async_playwright() as playwright:
        browser = await _launch(playwright, chromium)
        page = await _new_page(browser, recorder, viewport=DESKTOP)
        await page.route("**/console/api/destinations", merged)
        await _sign_in(page, daemon.url, daemon.admin_token)
        await page.goto(f"{daemon.url}/console#/destinations")
        note = page.locator("#partial-note")
        await expect(note).to_be_visible()
        await expect(note).to_contain_text("Only one worker process answered in time")
        partial["on"] = False
        await expect(note).to_be_hidden(timeout=15_000)  # the cards refresh every 5 s
        await browser.close()
    assert recorder.problems == []


STATIC = REPO / "core" / "crossdock" / "web" / "console" / "static"
_HTML_SINKS = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval)\b")
_IMPORT = re.compile(r"""^import\s.*?from\s+["'](\.[^"']+)["'];""", re.MULTILINE | re.DOTALL)


def test_static_files_hold_no_inline_code_and_build_no_html() -> None:
    """What the CSP would refuse (inline scripts, style attributes, event-handler attributes) is
    not in the pages, no script turns text into markup, and every module import resolves."""
    pages = sorted(STATIC.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "off.html"}
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text), f"{page.name}: inline script"
        assert not re.search(r"\sstyle\s*=", text), f"{page.name}: a style attribute"
        assert not re.search(r"<style", text), f"{page.name}: an inline stylesheet"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{page.name}: an event-handler attribute"
        for ref in re.findall(r'(?:src|href)="/console/static/([^"]+)"', text):
            assert (STATIC / ref).is_file(), f"{page.name} refers to a missing {ref}"
    scripts = sorted((STATIC / "js").glob("*.js"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        sinks = _HTML_SINKS.findall(text)
        assert sinks == [], f"{script.name}: {sinks} (build the DOM with createElement)"
        assert '.setAttribute("style"' not in text, script.name
        for target in _IMPORT.findall(text):
            assert (script.parent / target).resolve().is_file(), f"{script.name}: {target}"
