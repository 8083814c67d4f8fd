"""End to end: events/s from ingest to a local HTTP sink through one ``webhook`` destination.

Runs in one go: (1) Crossdock with no destination, to measure its solo ingest rate; (2) the
same load with a batching ``webhook`` destination pointed at a bare counting sink, measuring
the ingest rate under delivery and the time until the sink has every event. Reports both
rates and the ingest ratio (target: ingest stays ≥ 80 % of solo; end to end ≥ 20,000 events/s).
Once per variant (``--variants``, see ``_nats_variants.py``): ``sqlite`` and ``nats`` queues,
one process and ``--workers 2``; end-to-end ratios against the first variant.

    .venv/bin/python bench/e2e.py [--batches 1000] [--connections 32]
                                  [--variants sqlite,sqlite-w2,nats,nats-w2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _nats_variants as variants
from _common import AUTH, SOURCE, batch_bodies, emit, reference_server, sink_destination
from loadgen import build_request, run_load

from crossdock.testing.daemon import Daemon


def sink_count(port: int) -> int:
    """Events the sink has counted."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as answer:
        return int(orjson.loads(answer.read())["count"])


async def ingest(port: int, bodies: list[bytes], connections: int) -> float:
    """Send the batches; returns events/s accepted."""
    requests = [build_request("/v1/batch", body, auth=AUTH) for body in bodies]
    result = await run_load(
        port, requests.__getitem__, total=len(requests), connections=connections
    )
    if result.errors:
        msg = f"{result.errors} requests failed"
        raise RuntimeError(msg)
    return len(bodies) * 100 / result.seconds


def measure(args: argparse.Namespace, tmp: Path, name: str, nats_url: str | None, run: str) -> dict:
    """Solo ingest, then ingest with delivery and the time until the sink has everything."""
    queue, workers = variants.parse(name)
    extra = variants.extra_args(workers)
    total = args.batches * 100
    solo_config = variants.queue_section(queue, nats_url) + SOURCE
    solo = Daemon(solo_config, tmp / f"{name}-solo", extra_args=extra).start()
    try:
        asyncio.run(ingest(solo.port, batch_bodies(50, 100, run + "w"), args.connections))
        solo_rate = asyncio.run(
            ingest(solo.port, batch_bodies(args.batches, 100, run + "s"), args.connections)
        )
    finally:
        solo.stop()
    with reference_server("sink") as sink_port:
        config = (
            variants.queue_section(queue, nats_url)
            + SOURCE
            + sink_destination(sink_port, batch_size=args.batch_size, concurrency=args.concurrency)
        )
        daemon = Daemon(config, tmp / f"{name}-e2e", extra_args=extra).start()
        try:
            asyncio.run(ingest(daemon.port, batch_bodies(50, 100, run + "x"), args.connections))
            while sink_count(sink_port) < 5000:
                time.sleep(0.05)
            base = sink_count(sink_port)
            started = time.perf_counter()
            loaded_rate = asyncio.run(
                ingest(daemon.port, batch_bodies(args.batches, 100, run + "e"), args.connections)
            )
            deadline = time.monotonic() + 300
            while sink_count(sink_port) < base + total and time.monotonic() < deadline:
                time.sleep(0.02)
            delivered = sink_count(sink_port) - base
            seconds = time.perf_counter() - started
        finally:
            daemon.stop()
    return {
        "events": total,
        "delivered": delivered,
        "solo_ingest_events_per_s": round(solo_rate, 1),
        "ingest_with_delivery_events_per_s": round(loaded_rate, 1),
        "ingest_ratio_vs_solo": round(loaded_rate / solo_rate, 3),
        "end_to_end_events_per_s": round(delivered / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--variants", default=variants.DEFAULT_VARIANTS)
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    run = uuid.uuid4().hex[:8]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, variants.nats_for(names) as nats_url:
        for name in names:
            results[name] = measure(args, Path(tmp), name, nats_url, run + name)
    first = results[names[0]]["end_to_end_events_per_s"]
    emit({
        "benchmark": "end_to_end",
        "variants": results,
        f"end_to_end_ratio_vs_{names[0]}": {
            n: round(r["end_to_end_events_per_s"] / first, 3) for n, r in results.items()
        },
        "targets": {"end_to_end_events_per_s": 20000, "ingest_ratio_vs_solo": 0.8},
    })  # fmt: skip


if __name__ == "__main__":
    main()
