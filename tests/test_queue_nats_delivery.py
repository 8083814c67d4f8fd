"""DestinationWorker end to end on the real NatsQueue and a webhook fake: batching, retries
(5xx, then delivered), per-user ordering holds, dead letters, and a second worker process
sharing the destination."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp

from crossdock import DeliverySettings, Destination
from crossdock.deliver.destinations.webhook import (
    DESTINATION_TYPE,
    WebhookDeliverer,
    WebhookSettings,
)
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue.nats import NatsQueue
from crossdock.testing.fakes import Answer, FakeVendor


def event(i: int) -> dict:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": f"u{i % 50}",
        "messageId": f"m{i}",
        "receivedAt": "2024-01-01T00:00:00.000Z",
        "context": {"crossdock": {"source": "web", "sources": ["web"]}},
    }


def worker(queue, fake, http, metrics, **delivery) -> DestinationWorker:
    settings = WebhookSettings(url=fake.url, batch=True)
    dest = Destination(
        id="hook", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
        mapping={".": "@"}, delivery=DeliverySettings(max_wait_ms=20, **delivery),
    )  # fmt: skip
    return DestinationWorker(
        dest, lambda e: e, WebhookDeliverer(settings, http), queue, metrics,
        rng=lambda: 0.0, idle_poll=0.05,
    )  # fmt: skip


async def test_two_workers_share_a_destination_through_retries(nats_url: str) -> None:
    stream = "dv" + uuid.uuid4().hex[:10]
    one = NatsQueue(nats_url, stream=stream)
    two = NatsQueue(nats_url, stream=stream)
    await one.open(["hook"])
    await two.open(["hook"])
    try:
        async with FakeVendor() as fake, aiohttp.ClientSession() as http:
            fake.script([500, 503])
            metrics = [Metrics(), Metrics()]
            workers = [
                worker(q, fake, http, m, batch_size=200)
                for q, m in zip((one, two), metrics, strict=True)
            ]
            for w in workers:
                await w.start()
            await one.append([event(i) for i in range(1000)])
            await two.append([event(i) for i in range(1000, 2000)])

            def delivered() -> int:
                return sum(m.get("crossdock_events_delivered_total", ("hook",)) for m in metrics)

            deadline = time.monotonic() + 30
            while delivered() < 2000:
                assert time.monotonic() < deadline, [w.status() for w in workers]
                await asyncio.sleep(0.02)
            for w in workers:
                await w.stop(5)
        received = [e["messageId"] for r in fake.requests for e in r.json()]
        assert set(received) >= {f"m{i}" for i in range(2000)}
        # Both took part: each delivered, or met the vendor's 500/503 and retried. (The one
        # that met them pauses as "down" for a second or two, and under load the other may
        # deliver everything meanwhile, so "both delivered" is not a given.)
        assert all(w.status()["delivered"] + w.status()["retried"] > 0 for w in workers)
        stats = await one.stats("hook")
        assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)
    finally:
        await one.close()
        await two.close()


async def test_rejected_events_are_dead_lettered_and_replayable(nats_url: str) -> None:
    stream = "dr" + uuid.uuid4().hex[:10]
    queue = NatsQueue(nats_url, stream=stream)
    await queue.open(["hook"])
    try:
        async with FakeVendor() as fake, aiohttp.ClientSession() as http:
            fake.script([Answer(400, body={"error": "bad event"})])
            metrics = Metrics()
            w = worker(queue, fake, http, metrics, batch_size=1)
            await w.start()
            await queue.append([event(1), event(2)])
            deadline = time.monotonic() + 20
            while metrics.get("crossdock_events_delivered_total", ("hook",)) < 1:
                assert time.monotonic() < deadline, w.status()
                await asyncio.sleep(0.02)
            (dead,) = await queue.dlq_list("hook")
            assert dead.status == 400
            assert await queue.dlq_replay("hook") == 1
            while metrics.get("crossdock_events_delivered_total", ("hook",)) < 2:
                assert time.monotonic() < deadline, w.status()
                await asyncio.sleep(0.02)
            await w.stop(5)
        stats = await queue.stats("hook")
        assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)
    finally:
        await queue.close()
