"""Real browser analytics.js (Segment's analytics-next) against Crossdock, unchanged.

A page on one 127.0.0.1 origin loads analytics-next with its CDN pointed at Crossdock (another
port, so every call is cross-origin: CORS with preflight). analytics.js fetches
``GET {cdn}/v1/projects/{writeKey}/settings`` from Crossdock, follows the settings' ``Segment.io``
``apiHost``/``protocol`` back to Crossdock and posts ``text/plain`` JSON bodies to the short paths
``/v1/{i,t,p,b}``. Headless Chromium (Debian's) drives the page; the bundle is the pinned npm
tarball, fetched once with ``npm pack`` into ``.cache/`` and verified against its integrity hash.

Two pages: the Segment snippet (``window.analytics`` stub with ``_writeKey`` and ``_cdn``, then
``standalone.js``) and the npm/UMD way (``AnalyticsBrowser.load({writeKey, cdnURL})``, here in
batching mode so ``/v1/b`` is exercised too). The stub-backed test checks the harness itself and
spells out, as executable reference, what analytics-next needs from the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossdock.testing.daemon import Daemon

pytestmark = pytest.mark.browser

AJS_VERSION = "1.84.3"
AJS_INTEGRITY = (
    "sha512-5l7cPBzScxhfJ0zdcKQI4daDvMIWWUk7hClT1xGRelnHUltIEoQ9w8+"
    "ZpFPoWJMpX8D7IA1nVAfJbpiKi3XaKw=="
)
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "analytics-next" / AJS_VERSION
PAGE = Path(__file__).resolve().parent / "browser" / "page.html"
WRITE_KEY = "wk-browser-0123456789"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Virtual time stops while fetches are pending, so the budget is not a wall-clock wait; the
# subprocess timeout only guards against a hung browser.
VIRTUAL_TIME_BUDGET_MS = 15000
BROWSER_TIMEOUT = 90.0
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# --- analytics.js: the pinned npm tarball, cached ------------------------------------------------


def _verify_integrity(tarball: Path) -> None:
    algo, _, expected = AJS_INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        msg = f"{tarball.name}: integrity {algo}-{digest} is not the pinned {AJS_INTEGRITY}"
        raise AssertionError(msg)


def _fetch_analytics_js() -> Path:
    """The ``dist/umd`` directory of the pinned analytics-next, fetched once with ``npm pack``."""
    umd = CACHE / "umd"
    if (umd / "standalone.js").is_file() and (umd / "index.js").is_file():
        return umd
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not on PATH: cannot fetch @segment/analytics-next (CI has npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"@segment/analytics-next@{AJS_VERSION}", "--pack-destination", tmp],
                check=True,
                capture_output=True,
                timeout=180,
                cwd=tmp,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = getattr(exc, "stderr", b"") or b""
            pytest.skip(
                f"npm pack @segment/analytics-next@{AJS_VERSION} failed: {exc}; "
                f"{output.decode(errors='replace')[-500:]}"
            )
        tarball = Path(tmp) / f"segment-analytics-next-{AJS_VERSION}.tgz"
        _verify_integrity(tarball)
        staging = Path(tmp) / "umd"
        staging.mkdir()
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                name = member.name
                if (
                    member.isfile()
                    and name.startswith("package/dist/umd/")
                    and name.endswith(".js")
                ):
                    member.name = name.removeprefix("package/dist/umd/")
                    archive.extract(member, staging, filter="data")
        try:
            staging.rename(umd)
        except OSError:
            if not (umd / "standalone.js").is_file():  # not just another run winning the race
                raise
    return umd


@pytest.fixture(scope="session")
def analytics_js() -> Path:
    """Path of the analytics-next UMD directory (standalone.js, index.js and its chunks)."""
    return _fetch_analytics_js()


# --- Chromium ------------------------------------------------------------------------------------


def _find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no Chromium on PATH (tried {', '.join(CHROMIUM_NAMES)}); .ci/run installs it")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable."""
    return _find_chromium()


async def dump_dom(chromium: str, url: str, profile: Path) -> str:
    """Load ``url`` in headless Chromium and return the DOM once virtual time ran out."""
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        # Nothing but 127.0.0.1: the page must not reach Segment (or anything) on the internet.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--dump-dom",
        url,
    ]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), BROWSER_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chromium did not finish loading {url}") from None
    dom = stdout.decode(errors="replace")
    if process.returncode != 0 or "<html" not in dom:
        msg = f"chromium exited {process.returncode}:\n{stderr.decode(errors='replace')[-3000:]}"
        raise AssertionError(msg)
    return dom


def _element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.DOTALL)
    return html.unescape(match.group(1)) if match else ""


def page_outcome(dom: str) -> dict[str, Any]:
    """The JSON the page wrote into #result; fails with the page's errors when there is none."""
    result = _element_text(dom, "result")
    errors = _element_text(dom, "errors")
    assert result, f"analytics.js calls did not complete in the page; page errors:\n{errors}"
    outcome: dict[str, Any] = orjson.loads(result)
    outcome["errors"] = errors
    return outcome


# --- the page's own origin -----------------------------------------------------------------------


@pytest.fixture
async def page_server(analytics_js: Path) -> AsyncIterator[PageServer]:
    """Serves the test page and analytics.js on its own 127.0.0.1 port (its own origin)."""
    server = PageServer(analytics_js)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class PageServer:
    """An aiohttp site serving ``/page?...`` (the template filled in) and ``/ajs/*`` (dist/umd)."""

    def __init__(self, umd: Path) -> None:
        self.umd = umd
        self.pages: dict[str, dict[str, Any]] = {}
        self.ajs_requests: list[str] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    def add_page(self, name: str, config: dict[str, Any]) -> str:
        """Register a page with its config; returns its URL."""
        self.pages[name] = {**config, "ajs": f"{self.url}/ajs"}
        return f"{self.url}/page/{name}"

    async def _page(self, request: web.Request) -> web.Response:
        config = self.pages[request.match_info["name"]]
        body = PAGE.read_text().replace(
            "__CONFIG__", orjson.dumps(config).decode().replace("</", "<\\/")
        )
        return web.Response(text=body, content_type="text/html")

    async def _ajs(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        self.ajs_requests.append(name)
        path = self.umd / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(path, headers={"Content-Type": "application/javascript"})

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application()
        app.router.add_get("/page/{name}", self._page)
        app.router.add_get("/ajs/{file}", self._ajs)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close the site."""
        if self.runner is not None:
            await self.runner.cleanup()


# --- a reference server: exactly what analytics-next needs ---------------------------------------


class StubCrossdock:
    """The minimum analytics-next needs, recorded request by request.

    - ``GET /v1/projects/{writeKey}/settings``: ``integrations["Segment.io"]`` with ``apiKey`` (the
      write key: analytics.js puts it in each body as ``writeKey`` and in ``Authorization: Basic``),
      ``apiHost`` (``host:port/v1``, no scheme) and ``protocol`` (``http`` here);
      ``metrics.sampleRate = 0`` so the browser does not post its telemetry to api.segment.io. The
      answer is
      cross-origin too, so it carries ``Access-Control-Allow-Origin``.
    - ``OPTIONS /v1/{t,i,p,...}``: the preflight, since analytics-next sends ``Authorization``.
      ``Access-Control-Allow-Headers`` must name ``Authorization`` explicitly (the ``*`` wildcard
      does not cover it), plus ``Content-Type`` and ``X-Retry-Count`` (sent on retries).
    - ``POST /v1/{t,i,p,...}``: ``Content-Type: text/plain`` JSON; 200 with CORS headers.
    """

    CORS = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Retry-Count",
        "Access-Control-Max-Age": "600",
    }

    def __init__(self) -> None:
        self.settings_requests: list[dict[str, str]] = []
        self.preflights: list[dict[str, str]] = []
        self.posts: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _settings(self, request: web.Request) -> web.Response:
        write_key = request.match_info["write_key"]
        self.settings_requests.append({"write_key": write_key, **request.headers})
        host = self.url.removeprefix("http://")
        document = {
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": f"{host}/v1",
                    "protocol": "http",
                    "unbundledIntegrations": [],
                    "addBundledMetadata": True,
                }
            },
            "plan": {},
            "edgeFunction": {},
            "analyticsNextEnabled": True,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0},
            "legacyVideoPluginsEnabled": False,
            "remotePlugins": [],
        }
        return web.json_response(document, headers=self.CORS)

    async def _preflight(self, request: web.Request) -> web.Response:
        self.preflights.append({"path": request.path, **request.headers})
        return web.Response(status=204, headers=self.CORS)

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append(
            {
                "path": request.path,
                "content_type": request.headers.get("Content-Type", ""),
                "authorization": request.headers.get("Authorization", ""),
                "origin": request.headers.get("Origin", ""),
                "body": orjson.loads(body),
            }
        )
        return web.json_response({"success": True}, headers=self.CORS)

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application()
        app.router.add_get("/v1/projects/{write_key}/settings", self._settings)
        app.router.add_route("OPTIONS", "/v1/{kind}", self._preflight)
        app.router.add_post("/v1/{kind}", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close the site."""
        if self.runner is not None:
            await self.runner.cleanup()

    def events(self) -> list[dict[str, Any]]:
        """Every event posted, batches unpacked."""
        events = []
        for post in self.posts:
            body = post["body"]
            events.extend(body.get("batch", [body]))
        return events


@pytest.fixture
async def stub() -> AsyncIterator[StubCrossdock]:
    """The reference server on its own port."""
    server = StubCrossdock()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --- shared expectations -------------------------------------------------------------------------

MODES = {
    "snippet": {},
    "npm": {
        "integrations": {
            "Segment.io": {
                "deliveryStrategy": {"strategy": "batching", "config": {"size": 3, "timeout": 500}}
            }
        }
    },
}


def _page_config(mode: str, cdn: str) -> dict[str, Any]:
    return {"mode": mode, "writeKey": WRITE_KEY, "cdn": cdn, "options": MODES[mode]}


def check_page(outcome: dict[str, Any], cdn: str) -> dict[str, dict[str, Any]]:
    """What the page saw: settings from ``cdn``, three delivered calls. Returns them by type."""
    assert outcome["cdnURL"] == cdn
    segmentio = outcome["segmentio"]
    assert segmentio is not None, "the settings document has no integrations['Segment.io']"
    host = cdn.removeprefix("http://")
    assert segmentio.get("apiKey") == WRITE_KEY, (
        "settings integrations['Segment.io'].apiKey must be the write key: analytics.js sends it "
        f"as body writeKey and Authorization; got {segmentio.get('apiKey')!r}"
    )
    assert segmentio.get("apiHost") == f"{host}/v1", segmentio
    assert segmentio.get("protocol") == "http", segmentio
    calls = {event["type"]: event for event in outcome["events"]}
    assert set(calls) == {"identify", "track", "page"}, outcome
    for event in calls.values():
        assert event["failed"] is None, (
            f"analytics.js failed to deliver: {event}\n{outcome['errors']}"
        )
        assert event["messageId"], event
    assert calls["track"]["event"] == "Order Completed"
    return calls


async def poll(condition: Callable[[], Any], what: Callable[[], str], limit: float = 20.0) -> Any:
    """Return ``condition()`` once truthy; fail with ``what()`` after ``limit`` seconds.

    The limit only guards against a hang; nothing here depends on how fast things are.
    """
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what()}")
        await asyncio.sleep(0.1)


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_harness_against_reference_server(
    mode: str, chromium: str, page_server: PageServer, stub: StubCrossdock, tmp_path: Path
) -> None:
    """The harness works: analytics-next loads settings from the stub and posts cross-origin."""
    url = page_server.add_page(mode, _page_config(mode, stub.url))
    outcome = page_outcome(await dump_dom(chromium, url, tmp_path / "profile"))
    calls = check_page(outcome, stub.url)

    assert stub.settings_requests
    assert stub.settings_requests[0]["write_key"] == WRITE_KEY
    assert stub.settings_requests[0].get("Origin") == page_server.url
    assert stub.preflights, "analytics-next sent no CORS preflight"
    requested = {
        h.strip().lower()
        for p in stub.preflights
        for h in p.get("Access-Control-Request-Headers", "").split(",")
    }
    assert "authorization" in requested, stub.preflights
    assert stub.posts
    paths = {post["path"] for post in stub.posts}
    assert paths == ({"/v1/b"} if mode == "npm" else {"/v1/i", "/v1/t", "/v1/p"}), paths
    for post in stub.posts:
        assert post["body"]["writeKey"] == WRITE_KEY
        assert post["content_type"].startswith("text/plain"), post
        assert post["origin"] == page_server.url
        expected_auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        assert post["authorization"] == expected_auth
    received = {event["messageId"]: event for event in stub.events()}
    for call in calls.values():
        event = received[call["messageId"]]
        assert event["type"] == call["type"]
        assert event["context"]["library"]["name"] == "analytics.js"
        assert event["writeKey"] == WRITE_KEY


# --- the real thing: `crossdock run` -------------------------------------------------------------

DAEMON_CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/events.ndjson"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """``crossdock run`` with a ``segment`` source and a file destination."""
    process = Daemon(DAEMON_CONFIG, tmp_path / "crossdock")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def stored_events(daemon: Daemon) -> list[dict[str, Any]]:
    """What the file destination wrote so far."""
    path = daemon.workdir / "events.ndjson"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def check_cors_contract(base: str, origin: str) -> None:
    """What analytics-next needs from Crossdock over CORS, checked first for a precise failure.

    The browser only says "blocked by CORS policy"; this names the missing header instead.
    """
    async with aiohttp.ClientSession() as http:
        url = f"{base}/v1/projects/{WRITE_KEY}/settings"
        async with http.get(url, headers={"Origin": origin}) as response:
            assert response.status == 200, f"GET {url}: {response.status} {await response.text()}"
            allow = response.headers.get("Access-Control-Allow-Origin")
            assert allow in ("*", origin), (
                f"GET {url}: Access-Control-Allow-Origin is {allow!r}; analytics.js fetches its "
                f"settings cross-origin, so it must be '*' or {origin!r}"
            )
        for letter in ("i", "t", "p", "b"):
            preflight = {
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,x-retry-count",
            }
            async with http.options(f"{base}/v1/{letter}", headers=preflight) as response:
                where = f"OPTIONS /v1/{letter} (preflight)"
                assert 200 <= response.status < 300, f"{where}: {response.status}"
                allow = response.headers.get("Access-Control-Allow-Origin")
                assert allow in ("*", origin), f"{where}: Access-Control-Allow-Origin {allow!r}"
                methods = response.headers.get("Access-Control-Allow-Methods", "")
                assert "POST" in methods.upper(), (
                    f"{where}: Access-Control-Allow-Methods {methods!r}"
                )
                allowed = {
                    h.strip().lower()
                    for h in response.headers.get("Access-Control-Allow-Headers", "").split(",")
                }
                # analytics-next sends Authorization: Basic <writeKey:> (and X-Retry-Count when
                # it retries). The Fetch standard's "*" wildcard does not cover Authorization
                # (Chromium 156 still lets it through, other browsers need it named).
                assert {"authorization", "x-retry-count"} <= allowed, (
                    f"{where}: Access-Control-Allow-Headers {sorted(allowed)} "
                    "must name Authorization and X-Retry-Count"
                )


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_analytics_js_through_crossdock(
    mode: str, chromium: str, page_server: PageServer, daemon: Daemon, tmp_path: Path
) -> None:
    """analytics-next, pointed at Crossdock's CDN URL only, lands identify/track/page in a file."""
    await check_cors_contract(daemon.url, page_server.url)

    url = page_server.add_page(mode, _page_config(mode, daemon.url))
    outcome = page_outcome(await dump_dom(chromium, url, tmp_path / "profile"))
    # The settings came from Crossdock (the page gave analytics.js nothing but cdnURL, and the
    # browser cannot resolve any other host) and point analytics.js back at Crossdock.
    calls = check_page(outcome, daemon.url)

    by_id = {call["messageId"]: call for call in calls.values()}

    def arrived() -> dict[str, dict[str, Any]]:
        events = {e.get("messageId"): e for e in stored_events(daemon)}
        return events if by_id.keys() <= events.keys() else {}

    def waiting() -> str:
        got = [(e.get("type"), e.get("messageId")) for e in stored_events(daemon)]
        return f"{sorted(by_id)} in the file destination; it holds {got}\n{daemon.log()[-3000:]}"

    events = await poll(arrived, waiting)
    for message_id, call in by_id.items():
        event = events[message_id]
        assert event["type"] == call["type"]
        assert event["context"]["library"]["name"] == "analytics.js"
        assert event["context"]["library"]["version"] == f"next-{AJS_VERSION}"
        assert event["context"]["crossdock"]["source"] == "web"
        assert event["userId"] == "user-1"
        assert event["anonymousId"]
        for field in ("receivedAt", "timestamp", "originalTimestamp", "sentAt"):
            assert TIMESTAMP.match(event.get(field) or ""), f"{field}: {event.get(field)!r}"
        # The client clock's skew is taken out: timestamp = receivedAt - (sentAt - original),
        # and the client sends after it stamps, so the corrected time never passes receivedAt.
        assert event["originalTimestamp"] <= event["sentAt"]
        assert event["timestamp"] <= event["receivedAt"]
    identify, track, page = (events[calls[t]["messageId"]] for t in ("identify", "track", "page"))
    assert identify["traits"] == {"email": "user-1@example.com", "plan": "pro"}
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"order_id": "o-42", "revenue": 19.99, "currency": "EUR"}
    assert page["name"] == "Checkout"
    assert page["category"] == "Docs"
    assert page["properties"]["path"] == "/checkout"
