"""Console live events (issue 13): the ring of recent events, the server-sent event stream
(secrets masked, source filter, bounded buffer with a dropped count, pings), and that a
disconnected stream (and a disconnected ``/admin/tail``) is released at once and never holds
the daemon's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossdock.config.load import load_config
from crossdock.plugins.registry import load_registry
from crossdock.testing.daemon import ADMIN_TOKEN, Daemon, free_port
from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock.web import keys
from crossdock.web.app import make_app
from crossdock.web.console import stream as stream_module
from crossdock.web.console.stream import ConsoleHub, sse_chunk

WRITE_KEY = "wk-console-stream-0123456789"
AUTH = basic_auth(WRITE_KEY)
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[sources]]
id = "hook"
type = "segment-webhook"
path = "/hooks/segment"

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
"""


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[web.Application, str]]:
    path = tmp_path / "crossdock.toml"
    body = CONFIG.replace("{workdir}", str(tmp_path))
    path.write_text(f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[queue]\npath = "q.db"\n' + body)
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


def track(name: str, message_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "userId": "u-1", "messageId": message_id, **extra}


async def read_message(response: aiohttp.ClientResponse, timeout: float = 10.0) -> list[str]:
    """The lines of the next server-sent message (comments included), up to the blank line."""
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(response.content.readline(), timeout)
        if not raw:
            return lines
        line = raw.decode().rstrip("\n")
        if line == "":
            if lines:
                return lines
            continue
        lines.append(line)


async def next_event(response: aiohttp.ClientResponse) -> tuple[str, Any]:
    while True:
        lines = await read_message(response)
        assert lines, "the stream ended"
        if lines[0].startswith(":"):
            continue
        kind = lines[0].removeprefix("event: ")
        data = orjson.loads(lines[1].removeprefix("data: "))
        return kind, data


async def test_stream_delivers_accepted_events_masked(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, url), aiohttp.ClientSession() as session:
        hub: ConsoleHub = app[keys.CONSOLE].hub
        async with session.get(url + "/console/api/events/stream", headers=BEARER) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert stream.headers["Cache-Control"] == "no-store"
            assert await read_message(stream) == [": connected"]
            assert len(hub.subscribers) == 1
            # a body that carries the write key (as some SDKs do) never shows it on the page
            event = track("Order Completed", "m-1", properties={"key": WRITE_KEY})
            status, _ = await post_json(session, url + "/v1/track", event, auth=AUTH)
            assert status == 200
            kind, data = await next_event(stream)
        assert kind == "accepted"
        assert data["source"] == "web"
        assert abs(data["received_at"] - time.time()) < 60
        assert data["event"]["messageId"] == "m-1"
        assert data["event"]["event"] == "Order Completed"
        assert data["event"]["properties"]["key"] == "***"
        async with session.get(url + "/console/api/events/recent", headers=BEARER) as r:
            raw = await r.read()
        assert WRITE_KEY.encode() not in raw
        [row] = orjson.loads(raw)["events"]
        assert row["event"]["messageId"] == "m-1"


async def test_stream_filters_by_source(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), aiohttp.ClientSession() as session:
        async with session.get(
            url + "/console/api/events/stream?source=hook", headers=BEARER
        ) as stream:
            await read_message(stream)
            await post_json(session, url + "/v1/track", track("From web", "m-web"), auth=AUTH)
            status, _ = await post_json(
                session, url + "/hooks/segment", track("From hook", "m-hook")
            )
            assert status == 200
            kind, data = await next_event(stream)
        assert kind == "accepted"
        assert data["source"] == "hook"
        assert data["event"]["messageId"] == "m-hook"


async def test_recent_is_newest_first_with_limit_and_source(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), aiohttp.ClientSession() as session:
        batch = [track("E", f"m-{i}") for i in range(5)]
        await post_json(session, url + "/v1/batch", {"batch": batch}, auth=AUTH)
        await post_json(session, url + "/hooks/segment", track("H", "m-h"))

        async def recent(query: str) -> list[str]:
            async with session.get(url + "/console/api/events/recent" + query, headers=BEARER) as r:
                assert r.status == 200
                return [row["event"]["messageId"] for row in (await r.json())["events"]]

        assert await recent("") == ["m-h", "m-4", "m-3", "m-2", "m-1", "m-0"]
        assert await recent("?limit=2") == ["m-h", "m-4"]
        assert await recent("?source=web&limit=3") == ["m-4", "m-3", "m-2"]
        async with session.get(url + "/console/api/events/recent?limit=x", headers=BEARER) as r:
            assert r.status == 400
            assert (await r.json())["code"] == "invalid_query"


def test_ring_is_bounded() -> None:
    hub = ConsoleHub(ring_size=500)
    for i in range(30):
        hub("web", [{"messageId": f"m-{i}-{j}"} for j in range(100)])
    assert len(hub.ring) == 500
    assert hub.recent(1)[0][2]["messageId"] == "m-29-99"
    assert hub.find("m-0-0") is None
    assert hub.find("m-29-0") is not None


def test_the_ring_keeps_bytes_when_no_stream_wants_events_and_decodes_on_demand() -> None:
    hub = ConsoleHub(ring_size=500)
    assert not hub.wants_events("web")  # the handler then hands over only the stored bytes
    tricky = 'm-"quoted"-\\'
    events = [{"messageId": f"m-{j}", "n": j} for j in range(3)] + [{"messageId": tricky}]
    hub.accept_encoded("web", [(e["messageId"], orjson.dumps(e)) for e in events])
    assert all(isinstance(row[2], bytes) for row in hub.ring)
    assert [row[2] for row in hub.recent(10)] == events[::-1]
    found = hub.find(tricky)
    assert found is not None
    assert found[2] == {"messageId": tricky}
    assert hub.find("m-1") == ("web", hub.ring[1][1], {"messageId": "m-1", "n": 1})
    assert hub.find("m-9") is None
    # An open stream takes the bytes too (never parsed batches held across a commit) and
    # decodes only what it writes.
    subscriber = hub.subscribe("app")
    assert not hub.wants_events("app")
    hub.accept_encoded("web", [("m-w", b'{"messageId":"m-w"}')])
    hub.accept_encoded("app", [("m-a", b'{"messageId":"m-a","k":"s3cr3t-value"}')])
    assert [row[2] for row in subscriber.buffer] == [b'{"messageId":"m-a","k":"s3cr3t-value"}']
    chunk = sse_chunk(list(subscriber.buffer), ["s3cr3t-value"])
    assert chunk.startswith(b"event: accepted\ndata: ")
    data = orjson.loads(chunk.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert data["source"] == "app"
    assert data["event"] == {"messageId": "m-a", "k": "***"}


async def test_a_slow_reader_loses_the_excess_and_is_told(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, url), aiohttp.ClientSession() as session:
        hub: ConsoleHub = app[keys.CONSOLE].hub
        hub.max_buffer = 5
        async with session.get(url + "/console/api/events/stream", headers=BEARER) as stream:
            await read_message(stream)
            batch = [track("E", f"m-{i}") for i in range(20)]
            status, _ = await post_json(session, url + "/v1/batch", {"batch": batch}, auth=AUTH)
            assert status == 200
            got = [await next_event(stream) for _ in range(6)]
        assert [kind for kind, _ in got] == ["accepted"] * 5 + ["dropped"]
        # the newest are kept, the oldest counted
        assert [data["event"]["messageId"] for _, data in got[:5]] == [
            f"m-{i}" for i in range(15, 20)
        ]
        assert got[5][1] == {"count": 15}


async def test_one_write_carries_the_newest_events(tmp_path: Path) -> None:
    async with (
        running(tmp_path) as (_app, url),
        aiohttp.ClientSession() as session,
        session.get(url + "/console/api/events/stream", headers=BEARER) as stream,
    ):
        await read_message(stream)
        batch = [track("E", f"m-{i}") for i in range(300)]
        status, _ = await post_json(session, url + "/v1/batch", {"batch": batch}, auth=AUTH)
        assert status == 200
        got = [await next_event(stream) for _ in range(stream_module.MAX_BUFFER + 1)]
    assert stream_module.MAX_BUFFER == 250  # the newest only
    assert [kind for kind, _ in got] == ["accepted"] * 250 + ["dropped"]
    assert [data["event"]["messageId"] for _, data in got[:250]] == [
        f"m-{i}" for i in range(50, 300)
    ]
    assert got[250][1] == {"count": 50}


async def test_idle_stream_pings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "PING_INTERVAL", 0.2)
    async with (
        running(tmp_path) as (_app, url),
        aiohttp.ClientSession() as session,
        session.get(url + "/console/api/events/stream", headers=BEARER) as stream,
    ):
        assert await read_message(stream) == [": connected"]
        assert await read_message(stream) == [": ping"]


async def test_disconnected_stream_and_tail_are_released_at_once(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, url), aiohttp.ClientSession() as session:
        hub: ConsoleHub = app[keys.CONSOLE].hub
        tail = app[keys.TAIL]
        stream = await session.get(url + "/console/api/events/stream", headers=BEARER)
        admin = await session.get(url + "/admin/tail?source=web", headers=BEARER)
        assert stream.status == 200
        assert admin.status == 200
        await wait_until(lambda: len(hub.subscribers) == 1 and len(tail.subscribers) == 1)
        # nothing is posted: the readers leave a quiet stream
        stream.close()
        admin.close()
        await wait_until(lambda: not hub.subscribers, timeout=5, what="stream released")
        await wait_until(lambda: not tail.subscribers, timeout=5, what="tail released")


async def test_admin_tail_by_source_still_streams(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, url), aiohttp.ClientSession() as session:
        async with session.get(url + "/admin/tail?source=web", headers=BEARER) as tail:
            assert tail.status == 200
            await post_json(session, url + "/hooks/segment", track("H", "m-h"))
            await post_json(session, url + "/v1/track", track("W", "m-w"), auth=AUTH)
            line = await asyncio.wait_for(tail.content.readline(), 10)
        assert orjson.loads(line)["messageId"] == "m-w"


@pytest.mark.slow
def test_sigterm_does_not_wait_for_open_streams(tmp_path: Path) -> None:
    """With a console stream and an admin tail open, SIGTERM stops the daemon well before
    its 30 s shutdown timeout (it used to wait for the whole timeout)."""
    port = free_port()
    config = (
        f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_token = "{ADMIN_TOKEN}"\n'
        "shutdown_timeout = 30\n\n" + CONFIG
    )
    daemon = Daemon(config, tmp_path / "d", port=port).start()
    try:

        async def hold_streams_then_stop() -> float:
            async with aiohttp.ClientSession() as session:
                stream = await session.get(
                    daemon.url + "/console/api/events/stream", headers=BEARER
                )
                tail = await session.get(daemon.url + "/admin/tail", headers=BEARER)
                assert stream.status == 200
                assert tail.status == 200
                await read_message(stream)
                started = time.monotonic()
                code = await asyncio.to_thread(daemon.stop, 60)
                elapsed = time.monotonic() - started
                assert code == 0
                # the streams were ended by the daemon, not left hanging
                assert await asyncio.wait_for(stream.content.read(), 10) is not None
                stream.close()
                tail.close()
                return elapsed

        elapsed = asyncio.run(hold_streams_then_stop())
    finally:
        daemon.kill()
    assert elapsed < 20, f"shutdown waited {elapsed:.1f} s for the open streams"
    assert "crossdock stopped" in daemon.log()


async def test_a_reader_that_stops_reading_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that keeps its connection but reads nothing (a frozen tab, a dead peer that
    never sent a FIN) is let go once a write waits for it longer than the write timeout: it
    holds neither memory nor its handler."""
    from crossdock.web import admin

    monkeypatch.setattr(admin, "WRITE_TIMEOUT", 1.0)
    async with running(tmp_path) as (app, url), aiohttp.ClientSession() as session:
        hub: ConsoleHub = app[keys.CONSOLE].hub
        tail = app[keys.TAIL]
        port = int(url.rsplit(":", 1)[1])
        readers = []
        for path in ("/console/api/events/stream", "/admin/tail"):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
            )
            await asyncio.get_running_loop().sock_sendall(sock, request.encode())
            readers.append(sock)  # never read from
        await wait_until(lambda: len(hub.subscribers) == 1 and len(tail.subscribers) == 1)
        big = "x" * 28_000
        for i in range(30):
            batch = [track("Big", f"m-{i}-{j}", properties={"blob": big}) for j in range(15)]
            status, _ = await post_json(session, url + "/v1/batch", {"batch": batch}, auth=AUTH)
            assert status == 200
        await wait_until(lambda: not hub.subscribers, timeout=20, what="stalled stream let go")
        await wait_until(lambda: not tail.subscribers, timeout=20, what="stalled tail let go")
        assert not tail.streams
        for sock in readers:
            sock.close()
