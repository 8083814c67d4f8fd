"""Configuration reload under ``crossdock run --workers 2`` (SQLite), with ingest running.

``POST /admin/reload`` reaches one process, which checks the file and has the supervisor
signal every process; ``SIGHUP`` to the supervisor is forwarded to every process. Each process
must then run the new configuration. Each process's own destinations are read on its private
peer socket: with SQLite only process 0 delivers, so its destinations are ``running`` and
process 1's are not. Every event accepted
during the reloads reaches the destinations configured when it was accepted.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, post_json, wait_until

WRITE_KEY = "wk-reload-workers-0123456789"
AUTH = basic_auth(WRITE_KEY)
SOURCE = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]
"""


def destination(id: str, url: str) -> str:
    return f"""
[[destinations]]
id = "{id}"
plugin = "webhook"
[destinations.settings]
url = "{url}"
batch = true
[destinations.delivery]
max_wait_ms = 20
batch_size = 50
"""


def ids_at(fake: FakeVendor) -> Counter[str]:
    return Counter(event["messageId"] for r in fake.requests for event in r.json())


def fresh() -> aiohttp.ClientSession:
    """A session whose every request opens a new connection (so both processes get some)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


class Load:
    """Batches of 5 events from 4 lanes, each request on a new connection, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, float, int, list[str]]] = []
        self.stopping = False

    async def run(self) -> None:
        async with fresh() as session:
            await asyncio.gather(*(self._lane(session, lane) for lane in range(4)))

    async def _lane(self, session: aiohttp.ClientSession, lane: int) -> None:
        n = 0
        while not self.stopping:
            ids = [f"l{lane}-{n}-{i}" for i in range(5)]
            batch = [{"type": "track", "userId": "u", "event": "E", "messageId": m} for m in ids]
            started = time.monotonic()
            status, _ = await post_json(session, self.url + "/v1/batch", {"batch": batch},
                                        auth=AUTH)  # fmt: skip
            self.answers.append((started, time.monotonic(), status, ids))
            n += 1
            await asyncio.sleep(0.01)  # light load

    def acked(self, *, started_after: float = 0.0, answered_before: float = float("inf")) -> set:
        return {
            m
            for started, answered, status, ids in self.answers
            if status == 200 and started >= started_after and answered <= answered_before
            for m in ids
        }


def peer_env(supervisor: int) -> dict[str, str]:
    """The environment of one of the supervisor's children (/proc)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    pid = int(children.read_text().split()[0])
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


async def per_process(daemon: Any) -> dict[bool, set[str]]:
    """Each process's own destinations, asked on its private peer socket (the admin API of
    either process answers with process 0's): ``running`` (process 0, the delivering one) →
    its destination ids, and the same for the ingest-only process 1."""
    assert daemon.process is not None
    env = peer_env(daemon.process.pid)
    directory, token = env["CROSSDOCK_PEERS_DIR"], env["CROSSDOCK_PEER_TOKEN"]
    seen: dict[bool, set[str]] = {}
    for index in (0, 1):
        connector = aiohttp.UnixConnector(path=f"{directory}/worker_{index}.sock")
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://peer/peer/status", headers={"X-Crossdock-Peer": token}) as r,
        ):
            assert r.status == 200
            rows = (await r.json())["destinations"]
        kinds = {row["running"] for row in rows}
        assert len(kinds) == 1, rows  # one process: all running or none
        seen[kinds.pop()] = {row["id"] for row in rows}
    return seen


def applied(daemon: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in daemon.log_records()
        if r.get("message") == "configuration reloaded" and not r.get("forwarded")
    ]


def listening(daemon: Any) -> int:
    return sum(1 for r in daemon.log_records() if r.get("message", "").startswith("======== Run"))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the processes from /proc")
async def test_reload_reaches_every_worker_process_and_loses_nothing(crossdock_daemon) -> None:
    async with FakeVendor() as a, FakeVendor() as gone, FakeVendor() as new, FakeVendor() as third:
        v1 = SOURCE + destination("a", a.url + "/in") + destination("gone", gone.url + "/in")
        daemon = crossdock_daemon(v1, extra_args=("--workers", "2"))
        await wait_until(lambda: listening(daemon) == 2, timeout=20, what="both processes up")
        head = daemon.config_path.read_text().split("[[sources]]")[0]
        assert await per_process(daemon) == {True: {"a", "gone"}, False: {"a", "gone"}}

        load = Load(daemon.url)
        posting = asyncio.create_task(load.run())
        await wait_until(lambda: len(load.answers) >= 40, timeout=30, what="load running")

        # Reload 1, POST /admin/reload: "new" added, "gone" removed.
        daemon.config_path.write_text(
            head + SOURCE + destination("a", a.url + "/in") + destination("new", new.url + "/in")
        )
        before_first = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.post(daemon.url + "/admin/reload", headers=daemon.admin_headers()) as r,
        ):
            assert r.status == 202, await r.text()
            assert (await r.json())["forwarded"] is True
        await wait_until(lambda: len(applied(daemon)) == 2, timeout=20,
                         what="both processes applied reload 1")  # fmt: skip
        after_first = time.monotonic()
        assert await per_process(daemon) == {True: {"a", "new"}, False: {"a", "new"}}
        await wait_until(lambda: len(load.answers) >= 120, timeout=30, what="load after reload 1")
        # "new" delivers what was accepted since both processes ran it (before reload 2 removes
        # it: a removed destination's queued events are not sent).
        during = load.acked(started_after=after_first)
        assert during
        await wait_until(lambda: set(ids_at(new)) >= during, timeout=60,
                         what="new: every event accepted while configured")  # fmt: skip

        # Reload 2, SIGHUP to the supervisor: "third" added, "new" removed.
        daemon.config_path.write_text(
            head
            + SOURCE
            + destination("a", a.url + "/in")
            + destination("third", third.url + "/in")
        )
        before_second = time.monotonic()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        await wait_until(lambda: len(applied(daemon)) == 4, timeout=20,
                         what="both processes applied reload 2")  # fmt: skip
        after_second = time.monotonic()
        assert await per_process(daemon) == {True: {"a", "third"}, False: {"a", "third"}}
        await wait_until(lambda: len(load.answers) >= 200, timeout=30, what="load after reload 2")
        load.stopping = True
        await posting

        statuses = Counter(status for _, _, status, _ in load.answers)
        assert set(statuses) == {200}, statuses
        acked = load.acked()
        # "a" ran all along: every accepted event, once.
        await wait_until(lambda: set(ids_at(a)) >= acked, timeout=60,
                         what="a: every acknowledged event")  # fmt: skip
        assert max(ids_at(a).values()) == 1
        # "new" got nothing accepted before its reload, nor anything twice.
        assert not set(ids_at(new)) & load.acked(answered_before=before_first)
        assert max(ids_at(new).values()) == 1
        # "third" got everything accepted after reload 2 was applied everywhere.
        after = load.acked(started_after=after_second)
        assert after
        await wait_until(lambda: set(ids_at(third)) >= after, timeout=60,
                         what="third: every event accepted after its reload")  # fmt: skip
        assert not set(ids_at(third)) & load.acked(answered_before=before_second)
        # "gone" got nothing accepted after its removal.
        assert not set(ids_at(gone)) & load.acked(started_after=after_first)

        # Multiprocess exposition: the total of both processes, and the zero series of what
        # reload 2 added (the reasons of its mapping too) and of the source's type.
        async with fresh() as session, session.get(daemon.url + "/metrics") as r:
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(await r.text())
                for s in family.samples
            }
        assert samples[("crossdock_events_received_total", frozenset({("source", "web")}))] == len(
            acked
        )
        owner = ("destination", "third")
        for name, reason in (
            ("crossdock_delivery_requests_total", ("outcome", "timeout")),
            ("crossdock_events_dead_lettered_total", ("reason", "max_attempts")),
            ("crossdock_events_dropped_total", ("reason", "null payload")),
        ):
            assert samples[(name, frozenset({owner, reason}))] == 0, name
        web = frozenset({("source", "web"), ("reason", "unauthorized")})
        assert samples[("crossdock_requests_rejected_total", web)] == 0
        assert daemon.stop() == 0
