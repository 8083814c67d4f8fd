"""The console under ``crossdock run --workers 2``: whichever process a browser's connection
reaches, the page shows the whole daemon (recent events, the live stream, journeys, destination
cards, DLQ jobs, pause and resume), and an open stream does not hold SIGTERM.

Every console request goes on a fresh connection, so the kernel (SO_REUSEPORT) spreads them over
both processes; each answer names the process that answered (``process``), and the test checks
that both did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crossdock.testing.daemon import ADMIN_TOKEN, Daemon, free_port
from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, wait_until
from crossdock.web.console.peers import DIR_ENV as PEERS_DIR
from crossdock.web.console.peers import TOKEN_ENV as PEER_TOKEN

WRITE_KEY = "wk-console-workers-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EVENTS = 40
ROUNDS = 16
"""Fresh connections per check (both processes answer some of them)."""


SQLITE = '[queue]\npath = "queue.db"'


def config(
    port: int, sink: str, strict: str, queue: str = SQLITE, shutdown_timeout: int = 5
) -> str:
    return f"""
[server]
listen = "127.0.0.1:{port}"
admin_token = "{ADMIN_TOKEN}"
shutdown_timeout = {shutdown_timeout}

{queue}

[log]
level = "info"
format = "json"

[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "sink"
plugin = "webhook"
[destinations.settings]
url = "{sink}/in"
[destinations.delivery]
max_wait_ms = 20

[[destinations]]
id = "strict"
plugin = "webhook"
[destinations.settings]
url = "{strict}/in"
[destinations.delivery]
max_wait_ms = 20
"""


def listening(daemon: Daemon) -> int:
    return sum(
        1 for r in daemon.log_records() if r.get("message", "").startswith("======== Running")
    )


async def fresh(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One console API request on a new connection (Bearer: a script's credentials)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, url, json=body, headers=BEARER) as r,
    ):
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw else None


async def post_events(url: str, ids: list[str]) -> None:
    """One event per request, each on a fresh connection."""

    async def one(message_id: str) -> None:
        event = {"type": "track", "event": "W", "userId": "u1", "messageId": message_id}
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                url + "/v1/track", json=event, headers={"Authorization": basic_auth(WRITE_KEY)}
            ) as r,
        ):
            assert r.status == 200

    await asyncio.gather(*(one(m) for m in ids))


async def read_stream(url: str, seen: set[str], opened: asyncio.Event) -> None:
    """Collect the messageIds of one console stream (one connection) into ``seen``."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url + "/console/api/events/stream", headers=BEARER) as r,
    ):
        assert r.status == 200
        opened.set()
        async for line in r.content:
            if line.startswith(b"data: "):
                doc = orjson.loads(line[6:])
                if "event" in doc:
                    seen.add(doc["event"]["messageId"])


async def everywhere(check: Any, reachable: set[int], rounds: int = ROUNDS) -> set[int]:
    """Run ``check()`` (an answer with ``process``) ``rounds`` times and until every process in
    ``reachable`` answered; the processes that did."""
    answered: set[int] = set()
    for n in range(rounds * 10):
        if n >= rounds and answered == reachable:
            break
        doc = await check()
        assert doc["partial"] is False, doc
        assert doc["processes"] == [0, 1]
        answered.add(doc["process"])
    return answered


def message_ids(fake: FakeVendor) -> set[str]:
    found = set()
    for request in fake.requests:
        body = request.json()
        for event in body if isinstance(body, list) else [body]:
            found.add(event["messageId"])
    return found


async def run_console(tmp_path: Path, queue: str = SQLITE) -> None:
    async with FakeVendor() as sink, FakeVendor() as strict:
        strict.respond(400, {"error": "invalid email"})
        port = free_port()
        daemon = Daemon(
            config(port, sink.url, strict.url, queue), tmp_path / "d", port=port,
            extra_args=("--workers", "2"),
        ).start(timeout=60)  # fmt: skip
        stream_task: asyncio.Task[None] | None = None
        # On sqlite, process 0 stores and delivers and takes no connections on the port; the
        # console of the process that does still shows both.
        reachable = {1} if queue == SQLITE else {0, 1}
        try:
            await wait_until(lambda: listening(daemon) == 2, timeout=30, what="both listen")
            # both processes answer their peers before anything is checked
            await wait_until(
                lambda: _complete(daemon.url), timeout=20, what="every process reachable"
            )
            seen: set[str] = set()
            opened = asyncio.Event()
            stream_task = asyncio.create_task(read_stream(daemon.url, seen, opened))
            await asyncio.wait_for(opened.wait(), 10)
            await asyncio.sleep(1.5)  # the stream's peer connections open (they retry too)
            ids = [f"cw-{uuid.uuid4().hex[:8]}-{n}" for n in range(EVENTS)]
            await post_events(daemon.url, ids)
            await wait_until(
                lambda: set(ids) <= message_ids(sink), timeout=30, what="all delivered"
            )

            # the live stream opened on one connection got every process's events
            await wait_until(lambda: set(ids) <= seen, timeout=15, what="stream has them all")

            async def recent() -> dict[str, Any]:
                status, doc = await fresh(
                    "GET", daemon.url + "/console/api/events/recent?limit=500"
                )
                assert status == 200
                listed = {row["event"]["messageId"] for row in doc["events"]}
                assert set(ids) <= listed, set(ids) - listed
                return doc

            assert await everywhere(recent, reachable) == reachable

            async def journeys() -> dict[str, Any]:
                doc: dict[str, Any] = {}
                for message_id in ids[:: EVENTS // 8]:
                    url = f"{daemon.url}/console/api/events/{message_id}/journey"
                    status, doc = await fresh("GET", url)
                    assert status == 200
                    assert doc["event"]["messageId"] == message_id
                    rows = {row["destination"]: row for row in doc["destinations"]}
                    assert rows["sink"]["state"] == "delivered", rows
                    assert rows["strict"]["state"] == "dead_lettered", rows
                    assert rows["strict"]["status"] == 400
                return doc

            # dead letters land a moment after the attempts
            await wait_until(lambda: _dead(daemon.url, EVENTS), timeout=30, what="dead letters")
            assert await everywhere(journeys, reachable) == reachable

            async def cards() -> dict[str, Any]:
                status, doc = await fresh("GET", daemon.url + "/console/api/destinations")
                assert status == 200
                by_id = {card["id"]: card for card in doc["destinations"]}
                assert by_id["sink"]["delivered"] == EVENTS, by_id["sink"]
                assert by_id["sink"]["state"] == "running"
                assert sum(b["delivered"] for b in by_id["sink"]["throughput"]) == EVENTS
                assert by_id["strict"]["dead_letters"] == EVENTS
                assert by_id["strict"]["last_errors"][0]["status"] == 400
                return doc

            assert await everywhere(cards, reachable) == reachable

            # a replay job started on one process is readable from every process
            status, started = await fresh(
                "POST", daemon.url + "/console/api/dlq/replay",
                {"destination": "strict", "filter": {}},
            )  # fmt: skip
            assert status == 202
            assert started["total"] == EVENTS
            job_url = f"{daemon.url}/console/api/jobs/{started['job']}"
            answered: set[int] = set()
            for _ in range(ROUNDS * 10):
                status, doc = await fresh("GET", job_url)
                assert status == 200, doc
                assert doc["job"] == started["job"]
                assert doc["total"] == EVENTS
                answered.add(doc["process"])
                if doc["finished"] and answered == reachable:
                    break
            assert doc["finished"]
            assert doc["done"] == EVENTS
            assert doc["error"] is None
            assert answered == reachable

            # pause, then every process's answer shows it paused; resume likewise
            status, card = await fresh(
                "POST", daemon.url + "/console/api/destinations/sink/pause", {}
            )
            assert status == 200
            assert card["state"] == "paused"
            assert card["paused_by_operator"] is True
            assert card["processes"] == [0, 1]

            async def paused() -> dict[str, Any]:
                _status, doc = await fresh("GET", daemon.url + "/console/api/destinations")
                by_id = {c["id"]: c for c in doc["destinations"]}
                assert by_id["sink"]["state"] == "paused", by_id["sink"]
                assert by_id["sink"]["pause_reason"] == "paused by operator"
                # NATS: every delivering process has it (merged cards say so only then)
                assert by_id["sink"]["paused_by_operator"] is True
                return doc

            assert await everywhere(paused, reachable) == reachable
            # the admin API's status: the delivering processes' workers, wherever it lands
            for _ in range(ROUNDS):
                status, doc = await fresh("GET", daemon.url + "/admin/destinations/sink")
                assert status == 200, doc
                assert (doc["running"], doc["paused_by_operator"]) == (True, True), doc
            status, doc = await fresh("GET", daemon.url + "/admin/destinations")
            assert {row["id"] for row in doc["destinations"]} == {"sink", "strict"}
            status, doc = await fresh("GET", daemon.url + "/admin/destinations/nope")
            assert (status, doc["code"]) == (404, "not_found")

            async def probe() -> dict[str, Any]:
                url = daemon.url + "/console/api/destinations/sink/probe"
                status, doc = await fresh("POST", url, {})
                assert status == 200
                # the delivering processes answer it, not "this process does not deliver"
                assert doc["ok"] is True, doc
                assert "does not deliver" not in doc["message"]
                return doc

            assert await everywhere(probe, reachable, rounds=6) == reachable
            status, card = await fresh(
                "POST", daemon.url + "/console/api/destinations/sink/resume", {}
            )
            assert status == 200
            assert card["state"] == "running", card
        finally:
            if stream_task is not None:
                stream_task.cancel()
                with contextlib.suppress(BaseException):
                    await stream_task
            daemon.stop()
            daemon.kill()


async def _complete(url: str) -> bool:
    status, doc = await fresh("GET", url + "/console/api/events/recent?limit=1")
    return status == 200 and doc.get("partial") is False


async def _dead(url: str, count: int) -> bool:
    status, doc = await fresh("GET", url + "/console/api/dlq?destination=strict&limit=1")
    return status == 200 and doc["total"] >= count


@pytest.mark.slow
async def test_console_shows_both_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    await run_console(tmp_path)


@pytest.mark.slow
async def test_console_shows_both_processes_on_nats(tmp_path: Path, nats_url: str) -> None:
    stream = "cw" + uuid.uuid4().hex[:10]
    await run_console(
        tmp_path, f'[queue]\nbackend = "nats"\nurl = "{nats_url}"\nstream = "{stream}"'
    )


@pytest.mark.slow
async def test_sigterm_does_not_wait_for_an_open_stream_under_workers(tmp_path: Path) -> None:
    async with FakeVendor() as sink, FakeVendor() as strict:
        port = free_port()
        # a long shutdown timeout: stopping well within it shows nothing waited for the stream
        daemon = Daemon(
            config(port, sink.url, strict.url, shutdown_timeout=60), tmp_path / "d", port=port,
            extra_args=("--workers", "2"),
        ).start(timeout=60)  # fmt: skip
        try:
            await wait_until(lambda: listening(daemon) == 2, timeout=30, what="both listen")
            await wait_until(lambda: _complete(daemon.url), timeout=20, what="peers reachable")
            opened = asyncio.Event()
            task = asyncio.create_task(read_stream(daemon.url, set(), opened))
            await asyncio.wait_for(opened.wait(), 10)
            await asyncio.sleep(1.5)  # its peer connections are open too
            code = await asyncio.to_thread(daemon.stop, 20.0)
            assert code == 0
            stopped = [r for r in daemon.log_records() if r.get("message") == "crossdock stopped"]
            assert len(stopped) == 2
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        finally:
            daemon.kill()


def child_pids(pid: int) -> dict[int, int]:
    """worker index → pid of the supervisor's ``crossdock run`` children (from /proc)."""
    out = {}
    for child in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"--worker-index" in argv:
            out[int(argv[argv.index(b"--worker-index") + 1])] = child
    return out


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


def peer_dir(directory: Path) -> tuple[int, list[str]] | None:
    """The peers directory's mode and sockets; ``None`` when it is gone."""
    if not directory.exists():
        return None
    return directory.stat().st_mode & 0o777, sorted(p.name for p in directory.glob("*.sock"))


async def on_socket(path: str, url: str, headers: dict[str, str]) -> int:
    connector = aiohttp.UnixConnector(path=path)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://peer" + url, headers=headers) as r,
    ):
        return r.status


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the processes from /proc")
async def test_peer_sockets_are_private_token_checked_and_a_silent_process_is_skipped(
    tmp_path: Path,
) -> None:
    async with FakeVendor() as sink, FakeVendor() as strict:
        port = free_port()
        daemon = Daemon(
            config(port, sink.url, strict.url), tmp_path / "d", port=port,
            extra_args=("--workers", "2"),
        ).start(timeout=60)  # fmt: skip
        stopped: int | None = None
        try:
            await wait_until(lambda: listening(daemon) == 2, timeout=30, what="both listen")
            await wait_until(lambda: _complete(daemon.url), timeout=20, what="peers reachable")
            assert daemon.process is not None
            pids = child_pids(daemon.process.pid)
            env = environ(pids[1])
            directory = Path(env[PEERS_DIR])
            # Process 0 also serves the SQLite queue's writer there (queue._sqlite_shared), and
            # its HTTP application (it takes no connections on the port).
            sockets = ["queue_writer.sock", "store_http.sock", "worker_0.sock", "worker_1.sock"]
            assert peer_dir(directory) == (0o700, sockets)
            for name in sockets:
                assert (directory / name).stat().st_mode & 0o777 == 0o600, name
            socket = str(directory / "worker_0.sock")
            token = env[PEER_TOKEN]
            assert await on_socket(socket, "/peer/cards", {}) == 403
            wrong = {"X-Crossdock-Peer": token[:-1] + ("x" if token[-1] != "x" else "y")}
            assert await on_socket(socket, "/peer/cards", wrong) == 403
            assert await on_socket(socket, "/peer/cards", {"X-Crossdock-Peer": token}) == 200

            # process 0 stops answering: process 1's answers leave it out and say so
            stopped = pids[0]
            os.kill(stopped, signal.SIGSTOP)
            partial: dict[str, Any] | None = None
            for _ in range(40):
                with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                    async with asyncio.timeout(5):
                        status, doc = await fresh("GET", daemon.url + "/console/api/destinations")
                    if status == 200:
                        partial = doc
                        break
            assert partial is not None
            assert partial["process"] == 1
            assert partial["partial"] is True
            assert partial["processes"] == [1]
            assert {c["id"] for c in partial["destinations"]} == {"sink", "strict"}
            # the admin API's status comes from the delivering process: unavailable meanwhile
            status, doc = await fresh("GET", daemon.url + "/admin/destinations")
            assert (status, doc["code"]) == (503, "unavailable")
            status, doc = await fresh("GET", daemon.url + "/admin/tail?destination=sink")
            assert (status, doc["code"]) == (503, "unavailable")
            os.kill(stopped, signal.SIGCONT)
            stopped = None
            assert daemon.stop() == 0
            assert peer_dir(directory) is None  # removed at exit
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
            daemon.kill()


def test_cards_merge_the_delivering_processes() -> None:
    """NATS: every process delivers its share; SQLite: only process 0's card counts."""
    from crossdock.web.console.api import merge_cards

    def card(state: str, delivered: int, **extra: Any) -> dict[str, Any]:
        return {"id": "sink", "state": state, "paused": False, "delivered": delivered,
                "pending": 7, "dead_letters": 3, "lag_seconds": 1.5,
                "throughput": [{"t": 10, "delivered": delivered, "failed": 1},
                               {"t": 20, "delivered": 0, "failed": 0}],
                "last_errors": [{"at": float(delivered), "status": 500}], **extra}  # fmt: skip

    sqlite = merge_cards([card("running", 5), card("stopped", 0)])
    assert sqlite["delivered"] == 5
    assert sqlite["state"] == "running"
    nats = merge_cards([card("running", 5), card("paused", 2, paused=True, pause_reason="x")])
    assert nats["delivered"] == 7
    assert nats["pending"] == 7  # the shared queue's numbers are not summed
    assert nats["dead_letters"] == 3
    assert nats["state"] == "paused"
    assert nats["pause_reason"] == "x"
    assert nats["paused_by_operator"] is False  # one process only
    both = merge_cards([card("paused", 1, paused_by_operator=True),
                        card("paused", 1, paused_by_operator=True)])  # fmt: skip
    assert both["paused_by_operator"] is True
    assert nats["throughput"] == [{"t": 10, "delivered": 7, "failed": 2},
                                  {"t": 20, "delivered": 0, "failed": 0}]  # fmt: skip
    assert [e["at"] for e in nats["last_errors"]] == [5.0, 2.0]


def test_journey_rows_keep_the_most_informative_state() -> None:
    from crossdock.web.console.api import better_row

    unknown = {"destination": "d", "state": "unknown"}
    queued = {"destination": "d", "state": "queued"}
    retrying = {"destination": "d", "state": "retrying", "at": 5.0}
    delivered = {"destination": "d", "state": "delivered", "at": 9.0}
    assert better_row(unknown, queued) is queued
    assert better_row(queued, unknown) is queued
    assert better_row(queued, retrying) is retrying
    assert better_row(delivered, retrying) is delivered
    assert better_row(retrying, delivered) is delivered
    later = {"destination": "d", "state": "retrying", "at": 8.0}
    assert better_row(retrying, later) is later


def peer_connections(daemon: Daemon) -> int:
    """Sockets bound to the peer sockets' paths (the listening ones and every accepted one)."""
    assert daemon.process is not None
    directory = environ(child_pids(daemon.process.pid)[1])[PEERS_DIR]
    table = Path("/proc/net/unix").read_text().splitlines()
    return sum(1 for line in table if line.endswith(".sock") and directory in line)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the processes from /proc")
async def test_a_closed_browser_stream_releases_its_peer_connections(tmp_path: Path) -> None:
    async with FakeVendor() as sink, FakeVendor() as strict:
        port = free_port()
        daemon = Daemon(
            config(port, sink.url, strict.url), tmp_path / "d", port=port,
            extra_args=("--workers", "2"),
        ).start(timeout=60)  # fmt: skip
        streams: list[asyncio.Task[None]] = []
        try:
            await wait_until(lambda: listening(daemon) == 2, timeout=30, what="both listen")
            await wait_until(lambda: _complete(daemon.url), timeout=20, what="peers reachable")
            before = peer_connections(daemon)
            for _ in range(5):
                opened = asyncio.Event()
                streams.append(asyncio.create_task(read_stream(daemon.url, set(), opened)))
                await asyncio.wait_for(opened.wait(), 10)
            # each browser stream holds one connection to the other process (idle pooled ones,
            # counted in ``before``, may be among them): two listening sockets, five followers
            await wait_until(
                lambda: peer_connections(daemon) >= 2 + 5, timeout=10, what="peers followed"
            )
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            await wait_until(
                lambda: peer_connections(daemon) <= before, timeout=10, what="peers released"
            )
        finally:
            for task in streams:
                task.cancel()
            daemon.stop()
            daemon.kill()
