"""Throughput of the SQLite queue: group-committed appends and one destination's fetch+settle.

Usage: ``.venv/bin/python bench/queue_sqlite.py [--seconds 3] [--dir DIR]``. Prints one JSON
object with events/s (and commits, to see how much group commit gathered). The file lives in
a temporary directory on the same disk as the repository unless ``--dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from crossdock.queue.sqlite import SqliteQueue

_ids = itertools.count()


_TEMPLATE: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "anonymousId": "a5d6e1c2-7e55-4b1c-9c43-2d7d1c3f0a11",
    "timestamp": "2024-05-01T12:00:00.000Z",
    "receivedAt": "2024-05-01T12:00:00.123Z",
    "properties": {
        "order_id": "o-1",
        "total": 129.5,
        "currency": "EUR",
        "products": [{"sku": f"sku-{i}", "price": 25.9, "quantity": 1} for i in range(3)],
    },
    "context": {
        "library": {"name": "analytics.js", "version": "5.0.0"},
        "ip": "203.0.113.9",
        "crossdock": {"source": "web", "sources": ["web"]},
    },
}


def make_event() -> dict[str, Any]:
    """A ~600-byte track event with a random (uuid4-like, so index inserts are realistic)
    messageId; cheap to make so the benchmark measures the queue, not the generator."""
    n = next(_ids)
    return {**_TEMPLATE, "messageId": os.urandom(16).hex(), "userId": f"user-{n % 5000}"}


async def bench_appends(q: SqliteQueue, *, tasks: int, size: int, seconds: float) -> dict:
    """``tasks`` concurrent callers each appending ``size``-event batches for ``seconds``."""
    stop = time.perf_counter() + seconds
    stored = 0

    async def caller() -> None:
        nonlocal stored
        while time.perf_counter() < stop:
            batch = [make_event() for _ in range(size)]
            result = await q.append(batch)
            stored += result.stored

    commits0 = q.commits
    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(tasks)))
    elapsed = time.perf_counter() - start
    return {
        "tasks": tasks,
        "events_per_append": size,
        "events": stored,
        "events_per_s": round(stored / elapsed),
        "appends_per_s": round(stored / size / elapsed),
        "commits": q.commits - commits0,
    }


async def bench_fetch_settle(q: SqliteQueue, *, batch: int) -> dict:
    """Drain everything appended so far through one destination, ``batch`` events at a time."""
    start = time.perf_counter()
    total = 0
    while True:
        got = await q.fetch("bench", batch, time.time())
        if not got:
            break
        await q.settle("bench", [e.seq for e in got])
        total += len(got)
    elapsed = time.perf_counter() - start
    return {"batch": batch, "events": total, "events_per_s": round(total / elapsed)}


async def main() -> None:
    """Run the three measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir or Path(__file__).parent) as tmp:
        q = SqliteQueue(Path(tmp) / "bench.db")
        await q.open(["bench"])
        result = {
            "append_100x50": await bench_appends(q, tasks=50, size=100, seconds=args.seconds),
            "append_1x100": await bench_appends(q, tasks=100, size=1, seconds=args.seconds),
            "fetch_settle_500": await bench_fetch_settle(q, batch=500),
        }
        await q.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
