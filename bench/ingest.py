"""Durable ingest throughput: Crossdock's /v1/batch and /v1/track beside a bare aiohttp handler.

Both servers run as separate processes on this machine and get the same pre-built requests
from the same load generator in the same run; the result is reported as a ratio, because
absolute numbers on a shared 2-core machine are noisy. Crossdock runs with no destination, once
per variant (``--variants``, see ``_nats_variants.py``): the default ``sqlite`` queue (WAL,
synchronous=FULL, group commit), the ``nats`` queue (a local ``nats-server -js``), each with one
process and with ``--workers 2``; ratios against the bare handler and against ``sqlite``.

    .venv/bin/python bench/ingest.py [--batches 1500] [--tracks 15000] [--connections 64]
                                     [--variants sqlite,sqlite-w2,nats,nats-w2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _nats_variants as variants
from _common import AUTH, WRITE_KEY, batch_bodies, emit, reference_server, track_bodies
from loadgen import build_request, run_load

from crossdock.testing.daemon import Daemon

CONFIG = f"""
[[sources]]
id = "bench"
type = "segment"
write_keys = ["{WRITE_KEY}"]
"""


async def measure(port: int, path: str, bodies: list[bytes], connections: int) -> dict:
    """Send every body once; returns requests/s and error count."""
    requests = [build_request(path, body, auth=AUTH) for body in bodies]
    result = await run_load(
        port, requests.__getitem__, total=len(requests), connections=connections
    )
    return {"requests_per_s": round(result.rate, 1), "errors": result.errors,
            "seconds": round(result.seconds, 3)}  # fmt: skip


async def scenario(port: int, args: argparse.Namespace, run: str) -> dict:
    """Warm up, then the batch and the track measurements against one server."""
    await measure(port, "/v1/batch", batch_bodies(50, 100, run + "w"), args.connections)
    batch = await measure(port, "/v1/batch", batch_bodies(args.batches, 100, run + "b"),
                          args.connections)  # fmt: skip
    batch["events_per_s"] = round(batch["requests_per_s"] * 100, 1)
    track = await measure(port, "/v1/track", track_bodies(args.tracks, run + "t"), args.connections)
    return {"batch_100": batch, "track": track}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--tracks", type=int, default=15000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--variants", default=variants.DEFAULT_VARIANTS)
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    run = uuid.uuid4().hex[:8]
    with reference_server("baseline") as port:
        baseline = asyncio.run(scenario(port, args, run))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, variants.nats_for(names) as nats_url:
        for name in names:
            queue, workers = variants.parse(name)
            config = variants.queue_section(queue, nats_url) + CONFIG
            daemon = Daemon(config, Path(tmp) / name, extra_args=variants.extra_args(workers))
            daemon.start()
            try:
                results[name] = asyncio.run(scenario(daemon.port, args, run + name))
            finally:
                daemon.stop()
    first = results[names[0]]
    emit({
        "benchmark": "ingest",
        "connections": args.connections,
        "baseline_bare_aiohttp": baseline,
        "crossdock": results,
        "ratio_batch_events_vs_bare": {
            n: round(r["batch_100"]["events_per_s"] / baseline["batch_100"]["events_per_s"], 3)
            for n, r in results.items()
        },
        "ratio_track_requests_vs_bare": {
            n: round(r["track"]["requests_per_s"] / baseline["track"]["requests_per_s"], 3)
            for n, r in results.items()
        },
        f"ratio_batch_events_vs_{names[0]}": {
            n: round(r["batch_100"]["events_per_s"] / first["batch_100"]["events_per_s"], 3)
            for n, r in results.items()
        },
        f"ratio_track_requests_vs_{names[0]}": {
            n: round(r["track"]["requests_per_s"] / first["track"]["requests_per_s"], 3)
            for n, r in results.items()
        },
        "targets": {"batch_events_per_s": 50000, "track_requests_per_s": 5000},
    })  # fmt: skip


if __name__ == "__main__":
    main()
