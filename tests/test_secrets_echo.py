"""Defect 2 (issue 15): a vendor that echoes the credentials it received must leave no trace.

A fake vendor answers every request with a 400 whose body repeats the ``Authorization`` header
and the full URL (query token included). The destinations take their credentials from
``${VAR}`` values (a header, a URL query token, a URL password), which are plain strings once
the config is read, not :class:`crossdock.Secret` settings. The real daemon dead-letters the
events; nothing of the credentials may be in the dead letters (API and SQLite file bytes), the
log, or the output of ``crossdock test --send``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossdock.cli.main import main
from crossdock.testing.daemon import free_port
from crossdock.testing.helpers import wait_until

BEARER = "vk_live_BEARER_7f3a9c21"
QUERY_TOKEN = "qt/secret+token=42ab"  # needs URL-encoding: the echo carries the encoded form
PASSWORD = "pw_SECRET_55aa11"
SOURCE_TOKEN = "src-token-0123456789"

ENV = {"VENDOR_BEARER": BEARER, "VENDOR_QT": quote(QUERY_TOKEN, safe=""), "VENDOR_PW": PASSWORD}

CONFIG = """
[[sources]]
id = "hook"
type = "webhook"
token = "${{SOURCE_TOKEN}}"

[[destinations]]
id = "bearer"
plugin = "webhook"
[destinations.settings]
url = "http://127.0.0.1:{port}/in?token=${{VENDOR_QT}}"
[destinations.settings.headers]
Authorization = "Bearer ${{VENDOR_BEARER}}"
[destinations.delivery]
max_wait_ms = 20

[[destinations]]
id = "basic"
plugin = "webhook"
[destinations.settings]
url = "http://shop:${{VENDOR_PW}}@127.0.0.1:{port}/basic"
[destinations.delivery]
max_wait_ms = 20
"""


def forms(value: str) -> list[str]:
    """Every form a credential may take in an echo: clear, URL-encoded, base64."""
    out = [value, quote(value, safe=""), quote(value, safe="/")]
    for raw in (value, f"shop:{value}"):
        out.append(base64.b64encode(raw.encode()).decode().rstrip("="))
    return out


SECRET_FORMS = [f for v in (BEARER, QUERY_TOKEN, PASSWORD, SOURCE_TOKEN) for f in forms(v)]


def assert_clean(text: str | bytes, where: str) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    for form in SECRET_FORMS:
        assert form.encode() not in data, f"{form!r} in {where}"


def assert_files_clean(workdir: Path) -> None:
    """The SQLite queue's files (database, WAL, shared memory) hold no form of a credential."""
    files = list(workdir.glob("queue.db*"))
    assert files
    for file in files:
        assert_clean(file.read_bytes(), file.name)


async def echo(request: web.Request) -> web.Response:
    """A vendor that repeats the credentials it received in its error answer."""
    body = {
        "error": "invalid credentials",
        "authorization": request.headers.get("Authorization"),
        "url": str(request.url),
        "query": dict(request.query),
    }
    return web.json_response(body, status=400)


@pytest.fixture
async def vendor() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_post("/in", echo)
    app.router.add_post("/basic", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def dead_letters(session: aiohttp.ClientSession, daemon) -> list[dict]:
    async with session.get(daemon.url + "/admin/dlq", headers=daemon.admin_headers()) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert_clean(text, "/admin/dlq")
    return orjson.loads(text)["entries"]


async def test_echoed_credentials_never_stored_served_or_logged(crossdock_daemon, vendor) -> None:
    env = {**ENV, "SOURCE_TOKEN": SOURCE_TOKEN}
    daemon = crossdock_daemon(CONFIG.format(port=vendor), env=env)
    event = {"type": "track", "event": "Paid", "userId": "u-1", "messageId": "m-1"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            daemon.url + "/hooks/hook",
            json=event,
            headers={"Authorization": f"Bearer {SOURCE_TOKEN}"},
        ) as resp:
            assert resp.status == 200
        entries = await wait_until(
            lambda: _two(session, daemon), what="both destinations dead-lettered"
        )
    by_destination = {e["destination"]: e for e in entries}
    assert set(by_destination) == {"bearer", "basic"}
    for entry in entries:
        assert entry["status"] == 400
        assert "invalid credentials" in entry["body"]
        assert "***" in entry["body"]  # the echo is there, masked
    daemon.stop()
    assert_files_clean(Path(daemon.workdir))
    assert_clean(daemon.log(), "the daemon's log")


async def _two(session: aiohttp.ClientSession, daemon) -> list[dict] | None:
    entries = await dead_letters(session, daemon)
    return entries if len(entries) == 2 else None


@pytest.mark.parametrize("destination", ["bearer", "basic"])
async def test_test_send_masks_request_and_echoed_answer(
    destination, vendor, tmp_path, monkeypatch, capsys
) -> None:
    for name, value in {**ENV, "SOURCE_TOKEN": SOURCE_TOKEN}.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "crossdock.toml"
    config.write_text('[queue]\npath = "q.db"\n' + CONFIG.format(port=vendor))
    event = tmp_path / "event.json"
    event.write_text('{"type": "track", "event": "Paid", "userId": "u-1"}')
    argv = ["test", destination, "--event", str(event), "--send", "-c", str(config)]
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    assert code == 1  # the vendor refused the event
    assert "--> 400" in out
    assert "invalid credentials" in out
    assert_clean(out + err, "crossdock test --send")
