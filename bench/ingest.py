"""Durable ingest throughput: Crossdock's /v1/batch and /v1/track beside a bare aiohttp handler.

Both servers run as separate processes on this machine and get the same pre-built requests
from the same load generator in the same run; the result is reported as a ratio, because
absolute numbers on a shared 2-core machine are noisy. Crossdock runs with the default
``sqlite`` queue (WAL, synchronous=FULL, group commit) and no destination.

    .venv/bin/python bench/ingest.py [--batches 1500] [--tracks 15000] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    with reference_server("baseline") as port:
        baseline = asyncio.run(scenario(port, args, run))
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(CONFIG, Path(tmp), extra_args=())
        daemon.start()
        try:
            crossdock = asyncio.run(scenario(daemon.port, args, run))
        finally:
            daemon.stop()
    emit({
        "benchmark": "ingest",
        "queue": "sqlite",
        "connections": args.connections,
        "baseline_bare_aiohttp": baseline,
        "crossdock": crossdock,
        "ratio_batch_events": round(crossdock["batch_100"]["events_per_s"]
                                    / baseline["batch_100"]["events_per_s"], 3),
        "ratio_track_requests": round(crossdock["track"]["requests_per_s"]
                                      / baseline["track"]["requests_per_s"], 3),
        "targets": {"batch_events_per_s": 50000, "track_requests_per_s": 5000},
    })  # fmt: skip


if __name__ == "__main__":
    main()
