"""Throughput of the NATS JetStream queue alone: pipelined appends and fetch+settle.

The same measurements as ``bench/queue_sqlite.py`` (same ~600-byte events), against a local
``nats-server -js`` started for the run (file storage, a temporary directory), or the server
at ``$CROSSDOCK_TEST_NATS_URL``.

Usage: ``.venv/bin/python bench/queue_nats.py [--seconds 3]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from queue_sqlite import make_event

from crossdock.queue.nats import NatsQueue
from crossdock.queue.nats_server import local_nats, nats_unavailable


async def bench_appends(q: NatsQueue, *, tasks: int, size: int, seconds: float) -> dict:
    """``tasks`` concurrent callers each appending ``size``-event batches for ``seconds``."""
    stop = time.perf_counter() + seconds
    stored = 0

    async def caller() -> None:
        nonlocal stored
        while time.perf_counter() < stop:
            result = await q.append([make_event() for _ in range(size)])
            stored += result.stored

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(tasks)))
    elapsed = time.perf_counter() - start
    return {
        "tasks": tasks,
        "events_per_append": size,
        "events": stored,
        "events_per_s": round(stored / elapsed),
        "appends_per_s": round(stored / size / elapsed),
    }


async def bench_fetch_settle(q: NatsQueue, *, batch: int, total: int) -> dict:
    """Drain ``total`` events through one destination, ``batch`` at a time."""
    start = time.perf_counter()
    done = 0
    while done < total:
        got = await q.fetch("bench", batch, time.time())
        if not got:
            await q.wait("bench", 0.5)
            continue
        await q.settle("bench", [e.seq for e in got])
        done += len(got)
    elapsed = time.perf_counter() - start
    return {"batch": batch, "events": done, "events_per_s": round(done / elapsed)}


async def run(url: str, seconds: float) -> dict:
    q = NatsQueue(url, stream="bench" + uuid.uuid4().hex[:8])
    await q.open(["bench"])
    try:
        grouped = await bench_appends(q, tasks=50, size=100, seconds=seconds)
        single = await bench_appends(q, tasks=100, size=1, seconds=seconds)
        total = grouped["events"] + single["events"]
        drain = await bench_fetch_settle(q, batch=500, total=total)
    finally:
        await q.close()
    return {"append_100x50": grouped, "append_1x100": single, "fetch_settle_500": drain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    reason = nats_unavailable()
    if reason:
        raise SystemExit(reason)
    with local_nats() as url:
        result = asyncio.run(run(url, args.seconds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
