"""What a down destination costs: ingest rate and retry-record writes while its vendor refuses
every connection (issue 15, defect 8).

In one process, as in the daemon: 100-event appends to a SQLite queue (``synchronous=FULL``)
for ``--seconds``, once with no destination (baseline) and once with one destination whose
deliverer refuses every request at once. Prints the ingest ratio (target >= 0.8), the vendor
requests and the retry records written (O(probes), not O(events)).

    .venv/bin/python bench/retry_cost.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit

from crossdock import DeliverySettings, Destination
from crossdock.deliver.destinations.webhook import DESTINATION_TYPE, WebhookSettings
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue import DeadLetter, Retry
from crossdock.queue.sqlite import SqliteQueue
from crossdock.types import BatchItem, Outcome


class _Counting(SqliteQueue):
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


class _Refused:
    requests = 0

    async def deliver(self, items: Sequence[BatchItem]) -> list[Outcome]:
        self.requests += 1
        raise ConnectionRefusedError(111, "Connection refused")

    async def close(self) -> None:
        pass


async def _run(path: Path, seconds: float, down: bool) -> dict[str, Any]:
    queue = _Counting(path)
    await queue.open(["d"] if down else [])
    deliverer = _Refused()
    worker = None
    if down:
        settings = WebhookSettings(url="http://127.0.0.1:9/", batch=True)
        dest = Destination(
            id="d", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
            mapping={".": "@"}, delivery=DeliverySettings(batch_size=500, concurrency=4),
        )  # fmt: skip
        worker = DestinationWorker(dest, lambda e: e, deliverer, queue, Metrics())
        await worker.start()
    stored = 0
    n = 0
    started = time.monotonic()

    async def writer() -> None:
        nonlocal stored, n
        while time.monotonic() - started < seconds:
            batch = [{"type": "track", "event": "E", "messageId": f"{down}-{n}-{i}"}
                     for i in range(100)]  # fmt: skip
            n += 1
            stored += (await queue.append(batch)).stored

    await asyncio.gather(*(writer() for _ in range(16)))
    elapsed = time.monotonic() - started
    if worker is not None:
        await worker.stop(5)
    await queue.close()
    return {
        "events_per_s": round(stored / elapsed),
        "vendor_requests": deliverer.requests,
        "retry_records": queue.retry_records,
        "events": stored,
    }


def main() -> None:
    """Run the baseline and the down-destination case; print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        solo = asyncio.run(_run(Path(tmp) / "solo.db", args.seconds, down=False))
        down = asyncio.run(_run(Path(tmp) / "down.db", args.seconds, down=True))
    emit(
        {
            "bench": "retry_cost",
            "seconds": args.seconds,
            "solo": solo,
            "destination_down": down,
            "ingest_ratio": round(down["events_per_s"] / max(1, solo["events_per_s"]), 3),
        }
    )


if __name__ == "__main__":
    main()
