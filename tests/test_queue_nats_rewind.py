"""``NatsQueue.rewind`` against a real ``nats-server -js``, and a reload on the NATS backend.

A reload that changes a destination stops its worker and rewinds its queue position: what the
old worker fetched and did not settle must be handed out again at once (not after
``ack_wait``), to this instance or another, new events and retry records alike, and nothing of
another destination. Then the daemon: a destination changed and one added by a reload under
ingest load, every accepted event delivered once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from crossdock.queue import Retry
from crossdock.queue.nats import NatsQueue
from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, post_json, wait_until

# Far longer than any wait below: an event that comes again did so because of rewind.
ACK_WAIT = 60.0


def ev(mid: str) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "userId": "u", "messageId": mid}


def mids(got: list[Any]) -> list[str]:
    return sorted(g.event["messageId"] for g in got)


@pytest.fixture
async def make(nats_url: str) -> AsyncIterator[Callable[..., Any]]:
    stream = "rw" + uuid.uuid4().hex[:12]
    opened: list[NatsQueue] = []

    async def factory(destinations: tuple[str, ...] = ("a",)) -> NatsQueue:
        q = NatsQueue(nats_url, stream=stream, ack_wait=ACK_WAIT, retry_poll=0.0)
        await q.open(destinations)
        opened.append(q)
        return q

    yield factory
    for q in opened:
        await q.close()


async def fetch_all(q: NatsQueue, dest: str, n: int, within: float = 10.0) -> list[Any]:
    """Fetch until ``n`` events came or ``within`` seconds passed."""
    got: list[Any] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        got += await q.fetch(dest, n - len(got), time.time())
        if len(got) < n:
            await q.wait(dest, 0.2)
    return got


async def test_rewind_hands_the_unsettled_events_out_again(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(6)])
    got = await fetch_all(q, "a", 6)
    assert len(got) == 6
    await q.settle("a", [got[0].seq, got[3].seq])
    assert await q.fetch("a", 10, time.time()) == []  # in flight: not handed out twice

    await q.rewind("a")
    again = await fetch_all(q, "a", 4)
    assert mids(again) == ["m1", "m2", "m4", "m5"]
    assert {g.seq for g in again} == {got[i].seq for i in (1, 2, 4, 5)}
    assert [g.attempts for g in again] == [0, 0, 0, 0]
    await q.settle("a", [g.seq for g in again])
    assert (await q.stats("a")).pending == 0
    assert await fetch_all(q, "a", 1, within=1.0) == []


async def test_rewind_hands_a_retry_record_out_again_with_its_attempts(make) -> None:
    q = await make()
    await q.append([ev("r1")])
    (first,) = await fetch_all(q, "a", 1)
    now = time.time()
    await q.settle("a", [], [Retry(first.seq, first.event, now, 1, now, "http 503")])
    (retry,) = await fetch_all(q, "a", 1)
    assert (retry.event["messageId"], retry.attempts) == ("r1", 1)

    await q.rewind("a")
    (again,) = await fetch_all(q, "a", 1)
    assert (again.event["messageId"], again.attempts, again.seq) == ("r1", 1, retry.seq)
    await q.settle("a", [again.seq])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying) == (0, 0)


async def test_rewind_touches_only_its_destination(make) -> None:
    q = await make(("a", "b"))
    await q.append([ev(f"m{i}") for i in range(3)])
    a = await fetch_all(q, "a", 3)
    b = await fetch_all(q, "b", 3)
    assert mids(a) == mids(b) == ["m0", "m1", "m2"]
    await q.rewind("a")
    assert mids(await fetch_all(q, "a", 3)) == ["m0", "m1", "m2"]
    assert await fetch_all(q, "b", 1, within=1.0) == []
    await q.settle("b", [g.seq for g in b])
    assert (await q.stats("b")).pending == 0


async def test_rewound_events_go_to_another_instance(make) -> None:
    one = await make()
    two = await make()
    await one.append([ev(f"m{i}") for i in range(5)])
    held = await fetch_all(one, "a", 5)
    assert len(held) == 5
    assert await two.fetch("a", 10, time.time()) == []
    await one.rewind("a")
    taken = await fetch_all(two, "a", 5)
    assert mids(taken) == [f"m{i}" for i in range(5)]
    await two.settle("a", [g.seq for g in taken])
    assert (await two.stats("a")).pending == 0


# ---------------------------------------------------------------------------------------------
# A reload on the NATS backend, under load

WRITE_KEY = "wk-nats-reload-0123456789"
AUTH = basic_auth(WRITE_KEY)
SOURCE = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]
"""


def destination(id: str, url: str, max_wait_ms: int = 20, batch_size: int = 50) -> str:
    return f"""
[[destinations]]
id = "{id}"
plugin = "webhook"
[destinations.settings]
url = "{url}"
batch = true
[destinations.delivery]
max_wait_ms = {max_wait_ms}
batch_size = {batch_size}
"""


def ids_at(fake: FakeVendor, path: str | None = None) -> Counter[str]:
    return Counter(
        event["messageId"]
        for r in fake.requests
        if path is None or r.path == path
        for event in r.json()
    )


class Load:
    """Batches of 5 events from 4 lanes (each pausing 50 ms), until stopped; each answer with
    its times."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, float, int, list[str]]] = []
        self.stopping = False

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._lane(session, lane) for lane in range(4)))

    async def _lane(self, session: aiohttp.ClientSession, lane: int) -> None:
        n = 0
        while not self.stopping:
            ids = [f"n{lane}-{n}-{i}" for i in range(5)]
            batch = [ev(m) for m in ids]
            started = time.monotonic()
            status, _ = await post_json(session, self.url + "/v1/batch", {"batch": batch},
                                        auth=AUTH)  # fmt: skip
            self.answers.append((started, time.monotonic(), status, ids))
            n += 1
            await asyncio.sleep(0.05)

    def acked(self, *, started_after: float = 0.0) -> set[str]:
        return {
            m
            for started, _, status, ids in self.answers
            if status == 200 and started >= started_after
            for m in ids
        }


@pytest.mark.slow
async def test_reload_on_nats_changes_a_destination_under_load_and_loses_nothing(
    crossdock_daemon, nats_url: str
) -> None:
    stream = "rl" + uuid.uuid4().hex[:10]
    # ack_wait far beyond the test: what the old worker held comes again only through rewind.
    queue = (
        f'[queue]\nbackend = "nats"\nurl = "{nats_url}"\nstream = "{stream}"\nack_wait = "10m"\n'
    )
    async with FakeVendor() as a, FakeVendor() as b:
        # The first version of "a" gathers events for 5 s before it sends them (the load sends
        # fewer than a batch meanwhile): the reload finds its worker holding fetched events it
        # never sent, which only rewind gives back.
        v1 = queue + SOURCE + destination("a", a.url + "/v1", 5000, 500)
        daemon = crossdock_daemon(v1)
        head = daemon.config_path.read_text().split("[queue]")[0]
        load = Load(daemon.url)
        posting = asyncio.create_task(load.run())
        await wait_until(lambda: len(load.answers) >= 40, timeout=30, what="load running")

        v2 = queue + SOURCE + destination("a", a.url + "/v2") + destination("b", b.url + "/in")
        daemon.config_path.write_text(head + v2)
        async with (
            aiohttp.ClientSession() as session,
            session.post(daemon.url + "/admin/reload", headers=daemon.admin_headers()) as r,
        ):
            body = await r.json()
            assert r.status == 200, body
        assert body["destinations"] == {"added": ["b"], "removed": [], "changed": ["a"]}
        after = time.monotonic()
        await wait_until(lambda: len(load.answers) >= 100, timeout=30, what="load after reload")
        load.stopping = True
        await posting

        assert {status for _, _, status, _ in load.answers} == {200}
        acked = load.acked()
        await wait_until(lambda: set(ids_at(a)) >= acked, timeout=60,
                         what="a: every acknowledged event")  # fmt: skip
        assert max(ids_at(a).values()) == 1, "an event delivered twice"
        assert ids_at(a, "/v2"), "the changed settings were not applied"
        # Nothing the old worker still held was lost: what it fetched and did not settle came
        # again to the new one (at /v2); and "b" has everything accepted after its reload.
        late = load.acked(started_after=after)
        await wait_until(lambda: set(ids_at(b)) >= late, timeout=60,
                         what="b: every event accepted after the reload")  # fmt: skip
        assert max(ids_at(b).values()) == 1
        async with (
            aiohttp.ClientSession() as session,
            session.get(daemon.url + "/admin/destinations", headers=daemon.admin_headers()) as r,
        ):
            stats = (await r.json())["destinations"]
        assert {row["id"] for row in stats} == {"a", "b"}
        assert daemon.stop() == 0
