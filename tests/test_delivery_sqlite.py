"""DestinationWorker end to end on the real SqliteQueue and a webhook fake (batched)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from crossdock import DeliverySettings, Destination
from crossdock.deliver.destinations.webhook import (
    DESTINATION_TYPE,
    WebhookDeliverer,
    WebhookSettings,
)
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue.sqlite import SqliteQueue
from crossdock.testing.fakes import FakeVendor


def event(i: int) -> dict:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": f"u{i % 50}",
        "messageId": f"m{i}",
        "receivedAt": "2024-01-01T00:00:00.000Z",
        "context": {"crossdock": {"source": "web", "sources": ["web"]}},
    }


async def test_sqlite_queue_through_webhook_with_retries(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["hook"])
    try:
        async with FakeVendor() as fake, aiohttp.ClientSession() as http:
            fake.script([500, 503])
            settings = WebhookSettings(url=fake.url, batch=True)
            dest = Destination(
                id="hook", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
                mapping={".": "@"}, delivery=DeliverySettings(batch_size=200, max_wait_ms=20),
            )  # fmt: skip
            metrics = Metrics()
            worker = DestinationWorker(
                dest, lambda e: e, WebhookDeliverer(settings, http), queue, metrics,
                rng=lambda: 0.0, idle_poll=0.05,
            )  # fmt: skip
            await worker.start()
            await queue.append([event(i) for i in range(2000)])
            deadline = time.monotonic() + 20
            while metrics.get("crossdock_events_delivered_total", ("hook",)) < 2000:
                assert time.monotonic() < deadline, worker.status()
                await asyncio.sleep(0.02)
            await worker.stop(5)
        received = [e["messageId"] for r in fake.requests for e in r.json()]
        assert set(received) >= {f"m{i}" for i in range(2000)}
        stats = await queue.stats("hook")
        assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)
        # one latency observation per delivered event, measured from the time it was stored
        text = metrics.render().decode()
        assert 'crossdock_end_to_end_latency_seconds_count{destination="hook"} 2000.0' in text
    finally:
        await queue.close()
