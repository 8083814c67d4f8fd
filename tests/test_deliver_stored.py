"""The identity mapping sends events as stored: undecoded fetches, byte-exact payloads.

``SqliteQueue.fetch_stored`` hands new events out as ``StoredEvent`` (bytes split from one
SQLite aggregate, messageId from ``json_extract``); a worker whose mapping is the identity
sends those bytes as ``StoredItem.data`` and decodes an event only on a path that needs it
(retry, dead letter, a ``sources`` filter, per-user order, a deliverer reading ``event``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock import BatchItem, DeliverySettings, Destination
from crossdock.deliver.destinations.webhook import (
    DESTINATION_TYPE,
    WebhookDeliverer,
    WebhookSettings,
)
from crossdock.deliver.pacing import Backoff
from crossdock.deliver.stored import StoredItem, sends_stored_events
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue import StoredEvent
from crossdock.queue.sqlite import SqliteQueue
from crossdock.testing.fakes import FakeVendor
from crossdock.transform.mapping import compile_mapping


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"u{i % 7}",
        "messageId": f"m{i}",
        "properties": {"name": "Laufschuh ✓", "price": 89.5, "n": i},
        "context": {"crossdock": {"source": "web" if i % 2 else "app", "sources": ["web"]}},
        **extra,
    }


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "q.db")
    await q.open(["decoded", "stored"])
    yield q
    await q.close()


# -- the queue ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
events = st.lists(
    st.dictionaries(st.text(), json_values, max_size=5).map(
        lambda d: {**d, "messageId": d.get("messageId", None)}
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=events)
async def test_stored_bytes_are_what_decoding_and_encoding_give(
    queue: SqliteQueue, batch: list[dict[str, Any]]
) -> None:
    # Any JSON event: the bytes handed out are exactly orjson's encoding of the decoded event
    # (so sending them is sending the identity mapping's payload), in order, nothing decoded.
    await queue.append(batch)
    now = time.time()
    decoded = await queue.fetch("decoded", 100, now)
    stored = await queue.fetch_stored("stored", 100, now)
    assert [q.seq for q in stored] == [q.seq for q in decoded]
    for d, s in zip(decoded, stored, strict=True):
        assert type(s) is StoredEvent
        assert not s.decoded
        assert s.data == orjson.dumps(d.event)
        mid = d.event.get("messageId")
        assert s.message_id == (mid if isinstance(mid, str) else None)
        assert (s.enqueued_at, s.attempts, s.first_attempt_at) == (d.enqueued_at, 0, None)
        assert s.event == d.event
        assert s.decoded
    await queue.settle("decoded", [q.seq for q in decoded])
    await queue.settle("stored", [q.seq for q in stored])


async def test_text_rows_split_by_their_bytes(queue: SqliteQueue, tmp_path: Path) -> None:
    # A row stored as TEXT (not written by this version, but SQLite allows it) splits by its
    # UTF-8 length, not its character count.
    await queue.append([event(1)])
    conn = sqlite3.connect(tmp_path / "q.db")
    with conn:
        conn.execute(
            "INSERT INTO events (enqueued_at, data) VALUES (?, ?)",
            (time.time(), '{"messageId":"ü-1","x":"äöü✓"}'),
        )
    conn.close()
    await queue.append([event(2)])
    stored = await queue.fetch_stored("stored", 10, time.time())
    assert [s.event.get("x") for s in stored] == [None, "äöü✓", None]
    assert [s.message_id for s in stored] == ["m1", "ü-1", "m2"]


async def test_due_retries_come_decoded_before_new_stored_events(queue: SqliteQueue) -> None:
    from crossdock.queue import Retry

    await queue.append([event(i) for i in range(4)])
    now = time.time()
    first = await queue.fetch_stored("stored", 4, now)
    retry = Retry(first[1].seq, first[1].event, now - 1, 1, now - 5, "503")
    await queue.settle("stored", [first[0].seq, first[2].seq, first[3].seq], [retry])
    await queue.append([event(9)])
    again = await queue.fetch_stored("stored", 10, time.time())
    assert [type(q).__name__ for q in again] == ["QueuedEvent", "StoredEvent"]
    assert (again[0].event, again[0].attempts) == (event(1), 1)
    assert again[1].message_id == "m9"


async def test_events_settled_out_of_order_are_not_handed_out_again(tmp_path: Path) -> None:
    # Settled beyond the durable position, then a restart: the stored path skips them too.
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["stored"])
    await queue.append([event(i) for i in range(5)])
    first = await queue.fetch_stored("stored", 5, time.time())
    await queue.settle("stored", [first[1].seq, first[3].seq])
    await queue.close()
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["stored"])
    try:
        again = await queue.fetch_stored("stored", 10, time.time())
        assert [q.message_id for q in again] == ["m0", "m2", "m4"]
    finally:
        await queue.close()


# -- the worker --------------------------------------------------------------------------------


class Recording:
    """Wraps a deliverer and keeps every item it was handed."""

    def __init__(self, inner: WebhookDeliverer) -> None:
        self.inner = inner
        self.items: list[BatchItem] = []

    def request_cost(self, batch: Sequence[BatchItem]) -> int:
        return self.inner.request_cost(batch)

    async def deliver(self, batch: Sequence[BatchItem]) -> Any:
        self.items.extend(batch)
        return await self.inner.deliver(batch)

    async def close(self) -> None:
        await self.inner.close()


def destination(url: str, **delivery: Any) -> Destination:
    settings = WebhookSettings(url=url, batch=True)
    return Destination(
        id="stored", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
        mapping={".": "@"}, delivery=DeliverySettings(max_wait_ms=10, **delivery),
    )  # fmt: skip


async def run_worker(
    queue: Any, dest: Destination, sent: list[dict[str, Any]], until: Any
) -> tuple[DestinationWorker, Recording, Metrics]:
    """Run a worker with the identity mapping until ``until(metrics)``; it stores ``sent``."""
    async with aiohttp.ClientSession() as http:
        deliverer = Recording(WebhookDeliverer(dest.settings, http))
        metrics = Metrics()
        worker = DestinationWorker(
            dest, compile_mapping({".": "@"}), deliverer, queue, metrics,
            rng=lambda: 0.0, idle_poll=0.02,
            retry_backoff=Backoff(base=0.05, cap=0.05, jitter=False),
        )  # fmt: skip
        await worker.start()
        await queue.append(sent)
        deadline = time.monotonic() + 20
        while not until(metrics):
            assert time.monotonic() < deadline, worker.status()
            await asyncio.sleep(0.02)
        await worker.stop(5)
    return worker, deliverer, metrics


def dead_lettered(count: int) -> Any:
    def done(metrics: Metrics) -> bool:
        labels = ("stored", "vendor_rejected")
        return metrics.get("crossdock_events_dead_lettered_total", labels) >= count

    return done


def delivered(metrics: Metrics) -> float:
    return metrics.get("crossdock_events_delivered_total", ("stored",))


async def test_identity_mapping_sends_the_stored_bytes_undecoded(queue: SqliteQueue) -> None:
    sent = [event(i) for i in range(300)]
    async with FakeVendor() as fake:
        dest = destination(fake.url, batch_size=100)
        worker, deliverer, _ = await run_worker(queue, dest, sent, lambda m: delivered(m) >= 300)
        bodies = [r.content for r in fake.requests]
    # What the vendor got is what the decode-and-encode path would have sent, byte for byte
    # (one append of 300: three batches of 100, sent concurrently, so in any order).
    assert sorted(bodies) == sorted(
        b"[" + b",".join(orjson.dumps(e) for e in sent[i : i + 100]) + b"]"
        for i in range(0, 300, 100)
    )
    assert all(type(item) is StoredItem for item in deliverer.items)
    assert not any(item.queued.decoded for item in deliverer.items)  # type: ignore[attr-defined]
    # The journal knows every event by the messageId SQLite read.
    assert worker.journal.get("m0")["state"] == "delivered"  # type: ignore[index]
    assert worker.journal.get("m299")["state"] == "delivered"  # type: ignore[index]


async def test_stored_items_decode_for_a_deliverer_that_reads_them(queue: SqliteQueue) -> None:
    await queue.append([event(5)])
    (q,) = await queue.fetch_stored("stored", 1, time.time())
    assert isinstance(q, StoredEvent)
    item = StoredItem(q)
    assert not q.decoded
    assert item.event == event(5)
    assert item.payload is item.event
    assert q.decoded
    assert orjson.loads(item.data) == event(5)
    item.payload = {"changed": True}
    assert (item.payload, item.event) == ({"changed": True}, event(5))


async def test_stored_path_retries_whole_events(queue: SqliteQueue) -> None:
    sent = [event(i) for i in range(50)]
    async with FakeVendor() as fake:
        fake.script([503, 503])  # two failed rounds, then accepted
        dest = destination(fake.url, batch_size=50)
        await run_worker(queue, dest, sent, lambda m: delivered(m) >= 50)
        bodies = [r.json() for r in fake.requests]
    assert bodies[-1] == sent  # the retried events went out whole and in order
    assert len(bodies) == 3
    stats = await queue.stats("stored")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)


async def test_a_refused_stored_event_is_dead_lettered_with_its_event(queue: SqliteQueue) -> None:
    async with FakeVendor() as fake:
        fake.script([400] * 10)
        dest = destination(fake.url, batch_size=10)
        await run_worker(queue, dest, [event(i) for i in range(3)], dead_lettered(3))
    dead = await queue.dlq_list("stored")
    assert [d.event for d in dead] == [event(i) for i in range(3)]


async def test_sources_filter_and_other_mappings_keep_their_paths(queue: SqliteQueue) -> None:
    sent = [event(i) for i in range(20)]
    async with FakeVendor() as fake:
        dest = destination(fake.url, batch_size=100)
        dest = evolve(dest, sources=("web",))
        await run_worker(
            queue,
            dest,
            sent,
            lambda m: (
                m.get("crossdock_events_filtered_total", ("stored",)) >= 10 and delivered(m) >= 10
            ),
        )
        got = [e for r in fake.requests for e in r.json()]
    assert got == [e for e in sent if e["context"]["crossdock"]["source"] == "web"]

    assert sends_stored_events(compile_mapping({".": "@"}))
    assert not sends_stored_events(compile_mapping({".": "@"}, where="type == 'track'"))
    assert not sends_stored_events(compile_mapping({"event": "event"}))
    assert not sends_stored_events(lambda e: e)  # type: ignore[arg-type]


# -- NATS --------------------------------------------------------------------------------------


async def test_nats_hands_out_the_published_bytes(nats_url: str) -> None:
    import nats

    from crossdock.queue.nats import NatsQueue

    queue = NatsQueue(nats_url, stream="st" + uuid.uuid4().hex[:10])
    await queue.open(["decoded", "stored"])
    try:
        sent = [event(1), {**event(2), "messageId": None}, event(3)]
        await queue.append(sent)
        # A message that is not a JSON object (nothing of Crossdock's publishes one) is decoded
        # on the old path, found unreadable and dropped, never handed out as bytes.
        nc = await nats.connect(nats_url)
        await nc.jetstream().publish(queue.events_subject, b"not json")
        await nc.close()
        now = time.time()
        decoded = await queue.fetch("decoded", 10, now)
        stored = await queue.fetch_stored("stored", 10, now)
        assert len(stored) == len(decoded) == 3
        assert all(type(q) is StoredEvent for q in stored)
        assert [q.data for q in stored] == [orjson.dumps(q.event) for q in decoded]
        assert [q.message_id for q in stored] == ["m1", None, "m3"]
        assert [q.enqueued_at for q in stored] == [q.enqueued_at for q in decoded]
        assert not any(q.decoded for q in stored)
        await queue.settle("stored", [q.seq for q in stored])
        await queue.settle("decoded", [q.seq for q in decoded])
    finally:
        await queue.close()


async def test_nats_worker_sends_stored_bytes_through_retries(nats_url: str) -> None:
    from crossdock.queue.nats import NatsQueue

    queue = NatsQueue(nats_url, stream="sw" + uuid.uuid4().hex[:10])
    await queue.open(["stored"])
    try:
        sent = [event(i) for i in range(60)]
        async with FakeVendor() as fake:
            fake.script([503])
            dest = destination(fake.url, batch_size=60)
            _, deliverer, _ = await run_worker(queue, dest, sent, lambda m: delivered(m) >= 60)
            bodies = [r.json() for r in fake.requests]
        # Every body holds whole events as stored (however the pulls split them), the first
        # answer 503 brings them back as retries, and every event arrives.
        assert all(e in sent for body in bodies for e in body)
        assert {e["messageId"] for body in bodies[1:] for e in body} == {
            e["messageId"] for e in sent
        }
        assert any(type(item) is StoredItem for item in deliverer.items)
    finally:
        await queue.close()
