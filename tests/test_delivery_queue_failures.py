"""The queue under failure (issue 15, defects 3 and 8), on the real SqliteQueue.

- A settle that fails (the file unwritable: writes denied at the connection) is retried until
  it succeeds: every event settled exactly once, nothing sent again after a restart, the
  position moves on so collection resumes; ``/ready`` says 503 meanwhile.
- A down destination costs one batch of retry records per probe, not one per queued event,
  and its waiting retries are released at once when it recovers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from crossdock import DeliverySettings, Destination
from crossdock.deliver.destinations.webhook import DESTINATION_TYPE, WebhookSettings
from crossdock.deliver.pacing import Backoff
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue import DeadLetter, Retry
from crossdock.queue.sqlite import SqliteQueue
from crossdock.types import BatchItem, Delivered, Outcome, RetryLater
from crossdock.web import health, keys

FAST = Backoff(base=0.01, factor=2.0, cap=0.05, jitter=False)


def event(i: int) -> dict[str, Any]:
    return {"type": "track", "event": "E", "messageId": f"m{i}", "userId": f"u{i}"}


def destination(batch_size: int = 50) -> Destination:
    settings = WebhookSettings(url="http://127.0.0.1:9/unused", batch=True)
    return Destination(
        id="d", plugin="webhook", type=DESTINATION_TYPE, settings=settings, mapping={".": "@"},
        delivery=DeliverySettings(batch_size=batch_size, max_wait_ms=10, concurrency=1),
    )  # fmt: skip


class Recorder:
    """A deliverer that records what it was sent and answers with ``answer``."""

    def __init__(self, answer: Callable[[Sequence[BatchItem]], list[Outcome]] | None = None):
        self.sent: list[str] = []
        self.calls = 0
        self.answer = answer

    async def deliver(self, items: Sequence[BatchItem]) -> list[Outcome]:
        self.calls += 1
        if self.answer is not None:
            outcomes = self.answer(items)
            if all(isinstance(o, Delivered) for o in outcomes):
                self.sent += [i.event["messageId"] for i in items]
            return outcomes
        self.sent += [i.event["messageId"] for i in items]
        return [Delivered()] * len(items)

    async def close(self) -> None:
        pass


class CountingQueue(SqliteQueue):
    """Counts the retry records each settle writes."""

    retry_records = 0

    async def settle(
        self,
        destination: str,
        done: Sequence[int],
        retries: Sequence[Retry] = (),
        dead: Sequence[DeadLetter] = (),
    ) -> None:
        await super().settle(destination, done, retries, dead)
        self.retry_records += len(retries)


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def _deny_writes(action: int, *args: Any) -> int:
    writes = (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE)
    return sqlite3.SQLITE_DENY if action in writes else sqlite3.SQLITE_OK


async def unwritable(queue: SqliteQueue, on: bool) -> None:
    """Deny (or allow again) every write of the queue's writer connection, as an unwritable
    file would; set on the writer thread, between two transactions."""

    def switch() -> None:
        assert queue._wconn is not None
        queue._wconn.set_authorizer(_deny_writes if on else None)

    await queue._write(switch)


async def ready_status(queue: SqliteQueue, worker: DestinationWorker) -> int:
    app = web.Application()
    app[keys.QUEUE] = queue
    app[keys.WORKERS] = {"d": worker}
    app[keys.SHUTTING_DOWN] = [False]
    response = await health.ready(make_mocked_request("GET", "/ready", app=app))
    return response.status


async def test_a_failed_settle_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = SqliteQueue(path)
    await queue.open(["d"])
    await queue.append([event(i) for i in range(500)])
    await unwritable(queue, True)
    metrics = Metrics()
    deliverer = Recorder()
    worker = DestinationWorker(
        destination(), lambda e: e, deliverer, queue, metrics, idle_poll=0.02,
        write_backoff=FAST,
    )  # fmt: skip
    await worker.start()
    try:
        # Delivered, but its settle fails (more than 3 times: the old limit).
        await until(lambda: len(deliverer.sent) >= 50, "first batch delivered")
        retries = ("d", "settle")
        await until(
            lambda: metrics.get("crossdock_queue_write_retries_total", retries) >= 5,
            "settle retried",
        )
        assert worker.writes_failing
        assert worker.status()["writes_failing"] is True
        assert await ready_status(queue, worker) == 503
        # A batch frees its request slot once the vendor answered, but at most 2 x concurrency
        # batches may wait on their settles: nothing more is sent meanwhile.
        assert len(deliverer.sent) == 100
        await unwritable(queue, False)
        await until(lambda: len(deliverer.sent) == 500, "everything delivered")
        await until(lambda: not worker.writes_failing, "writes recovered")
        # (asked again each time: the last batch's settle may still be committing)
        deadline = time.monotonic() + 20
        while (await queue.stats("d")).pending:
            assert time.monotonic() < deadline, "settled"
            await asyncio.sleep(0.01)
        assert await ready_status(queue, worker) == 200
    finally:
        await worker.stop(5)
    assert sorted(deliverer.sent) == sorted(f"m{i}" for i in range(500))  # each exactly once
    assert metrics.get("crossdock_events_delivered_total", ("d",)) == 500
    stats = await queue.stats("d")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)
    await queue.collect()  # the position moved past every event: collection removes them all
    await queue.close()
    # After a restart nothing comes again, and the file holds no event any more.
    assert _rows(path, "events") == 0
    again = SqliteQueue(path)
    await again.open(["d"])
    try:
        assert await again.fetch("d", 1000, time.time()) == []
    finally:
        await again.close()


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def refused(items: Sequence[BatchItem]) -> list[Outcome]:
    raise ConnectionRefusedError(111, "Connection refused")


async def test_a_down_destination_costs_one_batch_of_retry_records_per_probe(
    tmp_path: Path,
) -> None:
    queue = CountingQueue(tmp_path / "q.db")
    await queue.open(["d"])
    await queue.append([event(i) for i in range(2000)])
    metrics = Metrics()
    deliverer = Recorder(refused)
    worker = DestinationWorker(
        destination(batch_size=50), lambda e: e, deliverer, queue, metrics, idle_poll=0.02,
        rng=lambda: 0.0, outage_backoff=Backoff(base=0.05, factor=1.0, cap=0.05, jitter=False),
    )  # fmt: skip
    await worker.start()
    try:
        await until(lambda: deliverer.calls >= 6, "probes sent")
        assert worker.status()["down"] is True
        assert metrics.get("crossdock_destination_down", ("d",)) == 1
    finally:
        await worker.stop(5)
    # One batch per request, however large the backlog (before: every queued event got a retry
    # record in a fraction of a second, over and over).
    assert queue.retry_records <= deliverer.calls * 50
    stats = await queue.stats("d")
    assert stats.retrying <= deliverer.calls * 50
    assert stats.pending + stats.retrying == 2000
    await queue.close()


async def test_a_recovered_destination_releases_its_waiting_retries_at_once(
    tmp_path: Path,
) -> None:
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["d"])
    await queue.append([event(i) for i in range(1000)])
    state = {"down": True}

    def answer(items: Sequence[BatchItem]) -> list[Outcome]:
        if state["down"]:
            return [RetryLater("HTTP 503", None, 503)] * len(items)
        return [Delivered()] * len(items)

    metrics = Metrics()
    deliverer = Recorder(answer)
    worker = DestinationWorker(
        destination(batch_size=50), lambda e: e, deliverer, queue, metrics, idle_poll=0.02,
        # An hour of backoff per failed event: only the release can bring them back in time.
        rng=lambda: 1.0, retry_backoff=Backoff(base=3600.0, cap=3600.0, jitter=False),
        outage_backoff=Backoff(base=0.05, factor=1.0, cap=0.05, jitter=False),
    )  # fmt: skip
    await worker.start()
    try:
        await until(lambda: deliverer.calls >= 4, "failed probes")
        # the fourth probe's settle may still be on its way to the file: wait for it
        for _ in range(250):
            if (await queue.stats("d")).retrying >= 4 * 50:
                break
            await asyncio.sleep(0.02)
        assert (await queue.stats("d")).retrying >= 4 * 50
        state["down"] = False
        await until(lambda: len(deliverer.sent) == 1000, "backlog drained")
        assert worker.status()["down"] is False
        assert metrics.get("crossdock_destination_down", ("d",)) == 0
    finally:
        await worker.stop(5)
    assert sorted(deliverer.sent) == sorted(f"m{i}" for i in range(1000))
    stats = await queue.stats("d")
    assert (stats.pending, stats.retrying) == (0, 0)
    await queue.close()


async def test_release_moves_only_later_retries_of_the_destination(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["d", "e"])
    await queue.append([event(i) for i in range(3)])
    now = time.time()
    for dest in ("d", "e"):
        got = await queue.fetch(dest, 3, now)
        await queue.settle(
            dest, [], [Retry(q.seq, q.event, now + 3600 * (q.seq - 1), 1, now, "x") for q in got]
        )
    assert await queue.release("d", now + 1) == 2
    assert [q.event["messageId"] for q in await queue.fetch("d", 10, now + 1)] == [
        "m0", "m1", "m2",
    ]  # fmt: skip
    # The other destination's retries keep their schedule: only the one due now comes.
    assert [q.event["messageId"] for q in await queue.fetch("e", 10, now + 1)] == ["m0"]
    assert (await queue.stats("e")).retrying == 3
    await queue.close()
