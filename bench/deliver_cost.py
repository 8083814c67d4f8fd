"""What delivering an event costs the daemon: CPU per event of fetch → prepare → send → settle.

In one process, as in the daemon: a SQLite queue (``synchronous=FULL``) holding ``--events``
SDK-shaped events (``sdk_events.py``: the product views and orders of ``shared/bench``, random
messageIds, normalised as ingest stores them), drained by one batching ``webhook`` destination
(batch 1,000, concurrency 4) whose deliverer joins each batch into its request body and answers
at once (no HTTP: this measures the daemon's own work per event, not a socket).

Variants, each on a fresh copy of the same queue file, in the same run:

- ``stored``: the webhook's default identity mapping; the worker fetches the events as the
  bytes SQLite stored (``StoredEvent``) and sends them without decoding;
- ``decoded``: the same mapping as a plain function (``lambda event: event``), which the
  worker cannot tell is the identity: every event is decoded into dicts in the reader thread
  and serialized again on the loop (the path of every destination before, and still of
  every mapping that changes the event);
- ``mapped``: a small real mapping (five fields), the path of vendor destinations.

For each: events/s from start to the last settle, process CPU per event, CPU per event of each
thread (``/proc/self/task``: the event loop, the SQLite writer, the readers) and the time spent
in garbage collection, with the collector set as ``crossdock run`` sets it
(:func:`crossdock.heap.prepare_for_serving`; ``--default-gc`` for CPython's thresholds). Only
the event loop and the Python parts of the other threads hold the GIL that ingest needs, so
``loop_us_per_event`` is the figure ingest-under-delivery follows.

``--queue nats`` runs the same on the NATS queue (a local ``nats-server -js``, a fresh stream
filled for each variant and round): there every step of delivery runs on the event loop.

    .venv/bin/python bench/deliver_cost.py [--events 100000] [--rounds 2] [--default-gc]
        [--queue sqlite|nats]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdk_events
from _common import emit

from crossdock import DELIVERED, BatchItem, DeliverySettings, Destination, Outcome, json_array
from crossdock.deliver.destinations.webhook import DESTINATION_TYPE, WebhookSettings
from crossdock.deliver.worker import DestinationWorker
from crossdock.heap import prepare_for_serving
from crossdock.ingest.normalize import normalize
from crossdock.metrics import Metrics
from crossdock.queue.nats import NatsQueue
from crossdock.queue.nats_server import local_nats
from crossdock.queue.sqlite import SqliteQueue
from crossdock.transform.mapping import compile_mapping
from crossdock.types import Ingested

MAPPED = {
    "event_name": "event",
    "user": "userId",
    "id": "messageId",
    "product": "properties.product_id",
    "price": "properties.price",
}


class JoiningSink:
    """A deliverer that builds the request body (as the webhook does) and accepts it."""

    def __init__(self) -> None:
        self.bytes = 0

    async def deliver(self, items: Sequence[BatchItem]) -> list[Outcome]:
        self.bytes += len(json_array(items))
        return [DELIVERED] * len(items)

    async def close(self) -> None:
        pass


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        name = names.get(int(tid), tid)
        name = "loop" if name == "MainThread" else name.removeprefix("crossdock-sqlite-")
        name = name.rsplit("_", 1)[0]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def fresh_copy(source: Path, copy: Path) -> Path:
    """``source`` copied to ``copy`` (a closed queue file: its WAL was checkpointed)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, copy)
    return copy


async def fill(path: Path, events: int) -> int:
    """Store ``events`` normalised SDK events (100 per append) at ``path``."""
    queue = SqliteQueue(path)
    await queue.open(["sink"])
    stored = await fill_queue(queue, events)
    await queue.close()
    return stored


async def fill_queue(queue: Any, events: int) -> int:
    """Append ``events`` normalised SDK events (100 per append) to an open queue."""
    rng = random.Random(7)
    templates = sdk_events.batch_templates(64, 100)
    stored = 0
    while stored < events:
        kind, template = templates[(stored // 100) % len(templates)]
        doc = orjson.loads(sdk_events.fill(kind, template, rng))
        ingested = Ingested(doc["batch"], sent_at=doc["sentAt"])
        batch = normalize(ingested, source_id="web", received_at=time.time()).events
        await queue.append(batch)
        stored += len(batch)
    return stored


async def drain(
    queue: Any, variant: str, events: int, *, default_gc: bool = False
) -> dict[str, Any]:
    """Deliver every event of the open ``queue``; the figures of one variant (with the
    collector set as ``crossdock run`` sets it, or with CPython's defaults)."""
    settings = WebhookSettings(url="http://127.0.0.1:9/", batch=True)
    dest = Destination(
        id="sink", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
        mapping={".": "@"}, delivery=DeliverySettings(batch_size=1000, max_wait_ms=20),
    )  # fmt: skip
    if variant == "stored":
        transformer: Any = compile_mapping({".": "@"})
    elif variant == "decoded":
        transformer = lambda event: event  # noqa: E731 - the identity, unrecognisable
    else:
        transformer = compile_mapping(MAPPED)
    metrics = Metrics()
    worker = DestinationWorker(dest, transformer, JoiningSink(), queue, metrics, idle_poll=0.05)
    gc_seconds = [0.0]
    started_at = [0.0]

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            started_at[0] = time.perf_counter()
        else:
            gc_seconds[0] += time.perf_counter() - started_at[0]

    threshold = gc.get_threshold()
    if default_gc:
        gc.collect()
        gc.freeze()
    else:
        prepare_for_serving()  # as ``crossdock run`` does after start-up
    gc.callbacks.append(on_gc)
    cpu0, threads0, t0 = time.process_time(), thread_cpu(), time.perf_counter()
    await worker.start()
    # Polled: the counter moves once a batch's settle is decided, which is the end of the work.
    while metrics.get("crossdock_events_delivered_total", ("sink",)) < events:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - t0
    cpu, threads1 = time.process_time() - cpu0, thread_cpu()
    gc.callbacks.remove(on_gc)
    gc.unfreeze()
    gc.set_threshold(*threshold)
    await worker.stop(5)
    per_thread = {
        name: round(1e6 * (seconds - threads0.get(name, 0.0)) / events, 2)
        for name, seconds in sorted(threads1.items())
        if seconds - threads0.get(name, 0.0) > 0.005
    }
    return {
        "events_per_s": round(events / elapsed),
        "cpu_us_per_event": round(1e6 * cpu / events, 2),
        "loop_us_per_event": per_thread.get("loop"),
        "thread_us_per_event": per_thread,
        "gc_us_per_event": round(1e6 * gc_seconds[0] / events, 2),
    }


VARIANTS = ("stored", "decoded", "mapped")


async def measure_sqlite(
    events: int, rounds: int, default_gc: bool
) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Every variant, ``rounds`` times, each on a fresh copy of one filled queue file."""
    work = Path(tempfile.mkdtemp(prefix="crossdock-deliver-cost-"))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        source = work / "filled.db"
        stored = await fill(source, events)
        for _ in range(rounds):
            for variant in VARIANTS:
                queue = SqliteQueue(fresh_copy(source, work / f"{variant}.db"))
                await queue.open(["sink"])
                try:
                    runs[variant].append(await drain(queue, variant, stored, default_gc=default_gc))
                finally:
                    await queue.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return stored, runs


async def measure_nats(
    url: str, events: int, rounds: int, default_gc: bool
) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Every variant, ``rounds`` times, each on a fresh stream filled the same way."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    stored = 0
    for _ in range(rounds):
        for variant in VARIANTS:
            queue = NatsQueue(url, stream=f"cost{uuid.uuid4().hex[:8]}")
            await queue.open(["sink"])
            try:
                stored = await fill_queue(queue, events)
                runs[variant].append(await drain(queue, variant, stored, default_gc=default_gc))
            finally:
                await queue.close()
    return stored, runs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="CPython's collector thresholds instead of crossdock run's (crossdock.heap)",
    )
    parser.add_argument("--queue", choices=("sqlite", "nats"), default="sqlite")
    args = parser.parse_args()
    load = os.getloadavg()
    if args.queue == "nats":
        with local_nats() as url:
            events, runs = await measure_nats(url, args.events, args.rounds, args.default_gc)
    else:
        events, runs = await measure_sqlite(args.events, args.rounds, args.default_gc)

    def best(variant: str, key: str) -> float:
        values = [r[key] for r in runs[variant]]
        return max(values) if key == "events_per_s" else min(values)

    emit(
        {
            "benchmark": "deliver_cost",
            "queue": args.queue,
            "events": events,
            "gc": "cpython defaults" if args.default_gc else "crossdock run (crossdock.heap)",
            "load": load,
            "runs": runs,
            "summary": {
                "stored_vs_decoded_rate": round(
                    best("stored", "events_per_s") / best("decoded", "events_per_s"), 2
                ),
                "stored_vs_decoded_loop_cpu": round(
                    best("stored", "loop_us_per_event") / best("decoded", "loop_us_per_event"), 2
                ),
                "stored_vs_decoded_cpu": round(
                    best("stored", "cpu_us_per_event") / best("decoded", "cpu_us_per_event"), 2
                ),
                "mapped_vs_decoded_cpu": round(
                    best("mapped", "cpu_us_per_event") / best("decoded", "cpu_us_per_event"), 2
                ),
            },
            "load_after": os.getloadavg(),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
