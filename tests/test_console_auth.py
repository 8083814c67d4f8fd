"""Console sign-in and request authorisation (issue 13): the stateless signed session cookie,
CSRF tokens, the Origin check, the sign-in rate limit, the page when the console is off, the
static files and the security headers of every console answer.

The daemon's own application on a real socket (``make_app``, a real SQLite file), and for the
fuzzing a real ``crossdock run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock.config.load import load_config
from crossdock.plugins.registry import load_registry
from crossdock.secrets import Secret
from crossdock.testing.daemon import ADMIN_TOKEN, Daemon, free_port
from crossdock.testing.helpers import basic_auth
from crossdock.web import keys
from crossdock.web.app import make_app
from crossdock.web.console.auth import COOKIE, SESSION_SECONDS, Signer, SignInLimiter
from crossdock.web.console.pages import CSP

EXAMPLES = int(os.environ.get("CROSSDOCK_FUZZ_EXAMPLES", "25"))
WRITE_KEY = "wk-console-auth-0123456789"

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
"""


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, *, token: str | None = ADMIN_TOKEN, extra: str = ""
) -> AsyncIterator[tuple[web.Application, str]]:
    """The daemon's application on a free port of 127.0.0.1."""
    head = "[server]\n" + (f'admin_token = "{token}"\n' if token else "") + extra
    path = tmp_path / "crossdock.toml"
    body = CONFIG.replace("{workdir}", str(tmp_path))
    path.write_text(head + '[queue]\npath = "q.db"\n' + body)
    registry = load_registry()
    app = make_app(load_config(path, registry), registry)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client() -> aiohttp.ClientSession:
    # unsafe: the cookie jar keeps cookies of an IP address (127.0.0.1)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def set_cookie(response: aiohttp.ClientResponse) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


async def sign_in(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(url + "/console/api/session", json={"token": ADMIN_TOKEN}) as r:
        assert r.status == 200
        return (await r.json())["csrf"]


async def test_wrong_token_is_refused_with_nothing_set(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), client() as session:
        async with session.post(url + "/console/api/session", json={"token": "nope"}) as r:
            assert r.status == 401
            assert await r.json() == {
                "success": False, "code": "unauthorized", "message": "wrong admin token",
            }  # fmt: skip
            assert "Set-Cookie" not in r.headers
        assert len(session.cookie_jar) == 0
        async with session.get(url + "/console/api/destinations") as r:
            assert r.status == 401
            assert (await r.json())["code"] == "unauthorized"


async def test_session_cookie_flags_and_round_trip(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), client() as session:
        async with session.post(url + "/console/api/session", json={"token": ADMIN_TOKEN}) as r:
            assert r.status == 200
            body = await r.json()
            [header] = r.headers.getall("Set-Cookie")
        attributes = [part.strip().lower() for part in header.split(";")]
        assert attributes[0].startswith(COOKIE + "=")
        assert "httponly" in attributes
        assert "samesite=strict" in attributes
        assert "path=/console" in attributes
        assert "secure" not in attributes  # plain http here
        assert not any(a.startswith(("max-age", "expires")) for a in attributes)
        assert ADMIN_TOKEN not in header
        value = header.split(";")[0].split("=", 1)[1]
        issued = int(value.split(".")[0])
        assert body["expires_at"] == issued + SESSION_SECONDS
        assert isinstance(body["csrf"], str)
        assert len(body["csrf"]) >= 32
        # a reloaded page gets its CSRF token back
        async with session.get(url + "/console/api/session") as r:
            assert r.status == 200
            assert await r.json() == body
        async with session.get(url + "/console/api/destinations") as r:
            assert r.status == 200
        async with session.delete(url + "/console/api/session") as r:
            assert r.status == 204
            cleared = r.headers["Set-Cookie"].lower()
            assert "max-age=0" in cleared
            assert "path=/console" in cleared
        async with session.get(url + "/console/api/session") as r:
            assert r.status == 401


async def test_cookie_is_secure_behind_https(tmp_path: Path) -> None:
    async with (
        running(tmp_path) as (_app, url),
        client() as session,
        session.post(
            url + "/console/api/session",
            json={"token": ADMIN_TOKEN},
            headers={"X-Forwarded-Proto": "https"},
        ) as r,
    ):
        assert r.status == 200
        assert "secure" in [p.strip().lower() for p in r.headers["Set-Cookie"].split(";")]


@pytest.mark.parametrize("kind", ["forged", "expired", "old_token", "garbage", "future"])
async def test_bad_cookies_are_refused(tmp_path: Path, kind: str) -> None:
    import time

    good = Signer(Secret(ADMIN_TOKEN))
    now = time.time()
    value = {
        "forged": good.issue(now)[:-4] + "beef",
        "expired": good.issue(now - SESSION_SECONDS - 5),
        "old_token": Signer(Secret("an-older-admin-token-000")).issue(now),
        "garbage": "not-a-cookie",
        "future": good.issue(now + 3600),
    }[kind]
    async with running(tmp_path) as (_app, url), client() as session:
        headers = {"Cookie": f"{COOKIE}={value}", "X-Crossdock-CSRF": good.csrf(value)}
        async with session.get(url + "/console/api/destinations", headers=headers) as r:
            assert r.status == 401
        async with session.get(url + "/console/api/session", headers=headers) as r:
            assert r.status == 401
        async with session.post(
            url + "/console/api/destinations/out/pause", json={}, headers=headers
        ) as r:
            assert r.status == 401


async def test_csrf_origin_and_json_are_required_for_changes(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, url), client() as session:
        csrf = await sign_in(session, url)
        pause = url + "/console/api/destinations/out/pause"
        async with session.post(pause, json={}) as r:
            assert r.status == 403
            assert (await r.json())["code"] == "csrf"
        async with session.post(pause, json={}, headers={"X-Crossdock-CSRF": "0" * 64}) as r:
            assert r.status == 403
        foreign = {"X-Crossdock-CSRF": csrf, "Origin": "https://evil.example"}
        async with session.post(pause, json={}, headers=foreign) as r:
            assert r.status == 403
            assert (await r.json())["code"] == "csrf"
        assert not app[keys.WORKERS]["out"].status()["paused"]
        text = {"X-Crossdock-CSRF": csrf, "Content-Type": "text/plain"}
        async with session.post(pause, data=b"{}", headers=text) as r:
            assert r.status == 415
            assert (await r.json())["code"] == "unsupported_media_type"
        own = {"X-Crossdock-CSRF": csrf, "Origin": url}
        async with session.post(pause, json={}, headers=own) as r:
            assert r.status == 200
            assert (await r.json())["pause_reason"] == "paused by operator"
        assert app[keys.WORKERS]["out"].status()["paused"]
        # sign-in from another site is refused too
        async with session.post(
            url + "/console/api/session",
            json={"token": ADMIN_TOKEN},
            headers={"Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403


async def test_bearer_token_works_for_scripts(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), aiohttp.ClientSession() as session:
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with session.get(url + "/console/api/destinations", headers=bearer) as r:
            assert r.status == 200
        async with session.post(
            url + "/console/api/destinations/out/resume", json={}, headers=bearer
        ) as r:
            assert r.status == 200
        wrong = {"Authorization": "Bearer wrong-token"}
        async with session.get(url + "/console/api/destinations", headers=wrong) as r:
            assert r.status == 401
        foreign = {**bearer, "Origin": "https://evil.example"}
        async with session.post(
            url + "/console/api/destinations/out/resume", json={}, headers=foreign
        ) as r:
            assert r.status == 403


async def test_brute_force_is_rate_limited(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), client() as session:
        for _ in range(10):
            async with session.post(url + "/console/api/session", json={"token": "guess"}) as r:
                assert r.status == 401
        async with session.post(url + "/console/api/session", json={"token": "guess"}) as r:
            assert r.status == 429
            assert (await r.json())["code"] == "too_many_attempts"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        # the right token does not get through while the address is locked out
        async with session.post(url + "/console/api/session", json={"token": ADMIN_TOKEN}) as r:
            assert r.status == 429
            assert "Set-Cookie" not in r.headers


def test_sign_in_limiter_window_and_bound() -> None:
    limiter = SignInLimiter(limit=3, window=60.0, max_clients=2)
    for i in range(3):
        assert limiter.retry_after("a", 100.0 + i) == 0
        limiter.failed("a", 100.0 + i)
    assert limiter.retry_after("a", 103.0) == 57
    assert limiter.retry_after("a", 160.5) == 0  # the first failure left the window
    limiter.failed("b", 104.0)
    limiter.failed("c", 105.0)
    assert len(limiter._failures) == 2  # bounded: the oldest address was forgotten


async def test_console_off_without_admin_token(tmp_path: Path) -> None:
    async with running(tmp_path, token=None) as (_app, url), client() as session:
        async with session.get(url + "/console") as r:
            assert r.status == 403
            assert r.headers["Content-Type"].startswith("text/html")
            page = await r.text()
            assert "admin_token" in page
            assert r.headers["Content-Security-Policy"] == CSP
        async with session.post(url + "/console/api/session", json={"token": "x"}) as r:
            assert r.status == 403
            assert (await r.json())["code"] == "console_disabled"
        async with session.get(url + "/console/api/destinations") as r:
            assert r.status == 403
            assert (await r.json())["code"] == "console_disabled"


async def test_page_static_files_and_security_headers(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), client() as session:
        async with session.get(url + "/console") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/html")
            assert '<script type="module" src="/console/static/js/main.js">' in await r.text()
            page_headers = r.headers
        async with session.get(url + "/console/", allow_redirects=False) as r:
            assert r.status in (301, 302)
            assert r.headers["Location"] == "/console"
        async with session.get(url + "/console/static/js/main.js") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/javascript")
            js_headers = r.headers
        async with session.get(url + "/console/api/session") as r:
            api_headers = r.headers
        for headers in (page_headers, js_headers, api_headers):
            assert headers["Content-Security-Policy"] == CSP
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
        assert api_headers["Cache-Control"] == "no-store"
        for path in (
            "/console/static/",
            "/console/static/js",
            "/console/static/../auth.py",
            "/console/static/%2e%2e/auth.py",
            "/console/static/js/%2e%2e/%2e%2e/auth.py",
            "/console/static/..%2fauth.py",
            "/console/static/auth.py",
            "/console/static/nope.js",
            "/console/static/.hidden.js",
        ):
            async with session.get(url + path, allow_redirects=False) as r:
                assert r.status == 404, path
        # the rest of the daemon does not get the console's headers
        async with session.get(url + "/health") as r:
            assert "Content-Security-Policy" not in r.headers


# ---------------------------------------------------------------------------------------------
# Fuzzing the sign-in body against a real daemon: always a precise 4xx, never a 5xx.


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = Daemon(CONFIG, tmp_path_factory.mktemp("console-fuzz")).start()
    yield d
    d.kill()


def _post(port: int, body: bytes, content_type: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST", "/console/api/session", body=body, headers={"Content-Type": content_type}
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
BODIES = (
    st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(["token", "csrf", "x"]), JSON, max_size=3).map(
        lambda v: json.dumps(v).encode()
    )
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=BODIES,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form"]),
)
def test_fuzz_sign_in_body(daemon: Daemon, body: bytes, content_type: str) -> None:
    status, raw = _post(daemon.port, body, content_type)
    assert status in (400, 401, 415, 429), (status, raw)
    answer = json.loads(raw)
    assert answer["success"] is False
    assert answer["code"]
    assert answer["message"]
    assert ADMIN_TOKEN.encode() not in raw


@pytest.mark.slow
async def test_one_sign_in_works_on_every_process_of_workers_n(
    tmp_path: Path, nats_url: str
) -> None:
    """``crossdock run --workers 2``: the cookie is checked by whichever process answers (no
    shared state); each answers with both processes' recent events. On NATS, where both
    processes take connections (on SQLite process 0 takes none)."""
    queue = f'[queue]\nbackend = "nats"\nurl = "{nats_url}"\nstream = "auth{os.getpid()}"\n\n'
    daemon = Daemon(queue + CONFIG, tmp_path / "w", extra_args=("--workers", "2"))
    daemon.start(timeout=60)
    try:
        async with client() as session:
            csrf = await sign_in(session, daemon.url)
            headers = {"Authorization": basic_auth(WRITE_KEY), "Content-Type": "application/json"}
            body = b'{"type": "track", "event": "Hi", "userId": "u", "messageId": "m-workers"}'
            async with session.post(daemon.url + "/v1/track", data=body, headers=headers) as r:
                assert r.status == 200
            seen: list[bool] = []
            answered: set[int] = set()
            # until both processes answered (the second may still be starting at first)
            for _ in range(300):
                if answered == {0, 1}:
                    break
                await asyncio.sleep(0.05)
                # a fresh connection each time: the kernel spreads them over both processes
                connector = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(
                    connector=connector, cookie_jar=session.cookie_jar
                ) as fresh:
                    async with fresh.get(daemon.url + "/console/api/events/recent") as r:
                        assert r.status == 200
                        doc = await r.json()
                        ids = [row["event"]["messageId"] for row in doc["events"]]
                        if doc.get("partial") is False:  # both processes are up
                            answered.add(doc["process"])
                            seen.append("m-workers" in ids)
                    async with fresh.post(
                        daemon.url + "/console/api/destinations/out/resume",
                        json={},
                        headers={"X-Crossdock-CSRF": csrf},
                    ) as r:
                        assert r.status == 200
        # both processes answered, both accepted the one cookie, and both listed the event
        assert answered == {0, 1}
        assert seen
        assert all(seen)
    finally:
        daemon.stop()
        daemon.kill()
