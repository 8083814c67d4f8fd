"""A wrong method answers 405 with ``Allow`` and the API's JSON error body; an unknown path 404.

Every path reaches the catch-all route of the swappable source routes
(:mod:`crossdock.web.routing`), so aiohttp alone would answer 404 for ``POST /ready``; these
tests hold the fixed routes (health, metrics, admin), the source routes and a source a reload
adds or removes to the same answers, on the real daemon.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from crossdock.testing.daemon import Daemon
from crossdock.testing.helpers import basic_auth

WRITE_KEY = "wk-methods-0123456789"
WEB = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]
"""
HOOK = """
[[sources]]
id = "hook"
type = "webhook"
path = "/hooks/app"
"""
OUT = """
[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{workdir}/out.ndjson"
"""

# method, path, the methods ``Allow`` must list (exactly)
WRONG_METHODS = [
    ("POST", "/ready", {"GET", "HEAD"}),
    ("DELETE", "/health", {"GET", "HEAD"}),
    ("POST", "/metrics", {"GET", "HEAD"}),
    ("DELETE", "/admin/destinations", {"GET", "HEAD"}),
    ("PUT", "/admin/destinations/out", {"GET", "HEAD"}),
    ("GET", "/admin/reload", {"POST"}),
    ("GET", "/admin/destinations/out/dry-run", {"POST"}),
    ("GET", "/v1/batch", {"POST", "OPTIONS"}),
    ("PUT", "/v1/track", {"POST", "OPTIONS"}),
    ("DELETE", f"/v1/projects/{WRITE_KEY}/settings", {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/hooks/app", {"POST"}),
    # the segment source answers CORS preflights on every /v1 path
    ("GET", "/v1/nope", {"OPTIONS"}),
]
UNKNOWN_PATHS = [
    ("GET", "/nope"),
    ("POST", "/ready/"),
    ("GET", "/v2/track"),
    ("POST", "/hooks/other"),
    ("GET", "/admin/nope"),
    ("DELETE", "/admin/dlq/nope"),
]


async def answer(
    daemon: Daemon, method: str, path: str
) -> tuple[int, dict[str, str], dict[str, Any] | None]:
    headers = daemon.admin_headers() if path.startswith("/admin") else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, daemon.url + path, headers=headers) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, dict(r.headers), body


def allow(headers: dict[str, str]) -> set[str]:
    return {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}


async def test_wrong_method_is_405_with_allow_and_unknown_path_is_404(crossdock_daemon) -> None:
    daemon = crossdock_daemon(WEB + HOOK + OUT)
    for method, path, methods in WRONG_METHODS:
        status, headers, body = await answer(daemon, method, path)
        assert status == 405, (method, path, status)
        assert allow(headers) == methods, (method, path, headers.get("Allow"))
        assert body is not None, (method, path, "not a JSON body")
        assert body["success"] is False
        assert body["code"] == "method_not_allowed"
        assert body["message"]
        # The path may hold a write key: never echoed.
        assert WRITE_KEY not in body["message"]
    for method, path in UNKNOWN_PATHS:
        status, headers, body = await answer(daemon, method, path)
        assert status == 404, (method, path, status)
        assert "Allow" not in headers
        assert body == {"success": False, "code": "not_found", "message": "no such path"}
    # The right methods still reach their handlers.
    assert (await answer(daemon, "GET", "/ready"))[0] == 200
    assert (await answer(daemon, "HEAD", "/health"))[0] == 200
    assert (await answer(daemon, "GET", "/admin/destinations"))[0] == 200
    async with aiohttp.ClientSession() as session:
        event = {"type": "track", "userId": "u", "event": "E"}
        async with session.post(
            daemon.url + "/v1/track", json=event, headers={"Authorization": basic_auth(WRITE_KEY)}
        ) as r:
            assert r.status == 200


async def test_admin_auth_comes_before_the_method_check(crossdock_daemon) -> None:
    """Without the admin token an admin path answers 401, whatever the method: the admin
    API's routes are not revealed to a caller without the token."""
    daemon = crossdock_daemon(WEB + OUT)
    async with (
        aiohttp.ClientSession() as session,
        session.delete(daemon.url + "/admin/destinations") as r,
    ):
        assert r.status == 401
        assert "Allow" not in r.headers


async def test_source_routes_a_reload_adds_or_removes(crossdock_daemon) -> None:
    daemon = crossdock_daemon(WEB + OUT)
    assert (await answer(daemon, "GET", "/hooks/app"))[0] == 404
    head = daemon.config_path.read_text().split("[[sources]]")[0]
    daemon.config_path.write_text(head + WEB + HOOK + OUT.replace("{workdir}", str(daemon.workdir)))
    status, _, body = await answer(daemon, "POST", "/admin/reload")
    assert status == 200, body
    status, headers, _ = await answer(daemon, "GET", "/hooks/app")
    assert (status, allow(headers)) == (405, {"POST"})

    # Segment source removed: its paths are unknown, the fixed routes keep their 405.
    daemon.config_path.write_text(head + HOOK + OUT.replace("{workdir}", str(daemon.workdir)))
    status, _, body = await answer(daemon, "POST", "/admin/reload")
    assert status == 200, body
    assert (await answer(daemon, "GET", "/v1/batch"))[0] == 404
    assert (await answer(daemon, "POST", "/v1/batch"))[0] == 404
    status, headers, _ = await answer(daemon, "POST", "/ready")
    assert (status, allow(headers)) == (405, {"GET", "HEAD"})
