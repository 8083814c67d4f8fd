"""Append latency of the SQLite queue beside a busy event loop: one-statement commits against
the full five-statement transaction, in one process and one run.

CPython's ``sqlite3`` gives the GIL up around every statement, and a writer thread that gave it
up waits for the busy event loop to hand it back. A group commit in five statements
(``BEGIN IMMEDIATE``, catch-up, two ``INSERT``s, ``COMMIT``) waits up to five times per commit;
the one-statement commit of ``crossdock.queue._sqlite_onestep`` once. This measures what that
does to the latency of appends, with the daemon's own queue (``synchronous = FULL``, a real
file) and nothing else:

- the event loop appends ``--rate`` requests per second of ``--events`` realistic SDK events
  each (``sdk_events.py``: random ids, a tenth without), open loop (each request is due at its
  time, whatever the ones before it do); its latency runs from when it was due to when its
  commit is answered;
- meanwhile the loop stays busy as a daemon under load does: it runs Python for
  ``--busy-us`` microseconds (about what a 100-event ``/v1/batch`` request holds the GIL for:
  parse, normalize, serialize), then waits ``--idle-ms`` in the selector (a system call that
  lets the GIL go, as the daemon's socket reads and writes do), over and over;
- ``one_step`` is the queue as it is; ``full`` the same queue made to forget, before every
  commit, what its last commit left, so it takes the full transaction each time. They
  alternate ``--rounds`` times, ``--seconds`` each, on fresh files, after a one-second
  warm-up round that is not counted (the first round of a process runs slow).

Prints the p50, p99 and max append latency of each round, their medians, and the commits per
second (the same requests go into fewer, larger commits when commits are slow).

    PYTHONPATH=core .venv/bin/python bench/commit_steps.py [--rate 200] [--events 100]
        [--busy-us 2000] [--idle-ms 1] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit
from sdk_events import batch_templates, fill

from crossdock.queue import EncodedEvent
from crossdock.queue.sqlite import SqliteQueue


class FullPathQueue(SqliteQueue):
    """The queue, taking the full transaction for every group commit."""

    def _write_appends(self, batch: Any) -> None:
        self._known = None
        super()._write_appends(batch)


def _rows(bodies: list[bytes]) -> list[list[EncodedEvent]]:
    """The rows the ingest handler hands the queue (the core gives an id where none came)."""
    out = []
    for body in bodies:
        events = orjson.loads(body)["batch"]
        for event in events:
            event.setdefault("messageId", str(uuid.uuid4()))
        out.append([(e["messageId"], orjson.dumps(e)) for e in events])
    return out


def _bodies(count: int, events: int, rng: random.Random) -> list[bytes]:
    templates = batch_templates(64, events)
    return [fill(*templates[i % len(templates)], rng) for i in range(count)]


async def _round(kind: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    total = int(args.rate * args.seconds)
    requests = _rows(_bodies(total, args.events, rng))
    with tempfile.TemporaryDirectory(prefix="crossdock-commit-steps-") as tmp:
        cls = SqliteQueue if kind == "one_step" else FullPathQueue
        queue = cls(Path(tmp) / "q.db", synchronous="full")
        await queue.open([])
        stop = False

        async def busy() -> None:
            spin, idle = args.busy_us / 1e6, args.idle_ms / 1e3
            while not stop:
                end = time.perf_counter() + spin
                while time.perf_counter() < end:
                    pass
                await asyncio.sleep(idle)

        latencies: list[float] = []

        async def one(rows: list[EncodedEvent], due: float) -> None:
            await queue.append_encoded(rows)
            latencies.append(time.perf_counter() - due)

        busy_task = asyncio.create_task(busy())
        tasks = []
        start = time.perf_counter()
        commits_before = queue.commits
        for i, rows in enumerate(requests):
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(rows, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        stop = True
        await busy_task
        commits = queue.commits - commits_before
        await queue.close()
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "kind": kind,
        "requests": len(ms),
        "p50_ms": round(ms[len(ms) // 2], 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
        "commits_per_s": round(commits / elapsed, 1),
        "events_per_commit": round(len(ms) * args.events / max(commits, 1), 1),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    await _round("one_step", argparse.Namespace(**{**vars(args), "seconds": 1.0}), seed=99)
    for r in range(args.rounds):
        for kind in ("one_step", "full"):
            rounds.append(await _round(kind, args, seed=100 + r))
    medians = {}
    for kind in ("one_step", "full"):
        mine = [x for x in rounds if x["kind"] == kind]
        medians[kind] = {
            key: round(statistics.median(x[key] for x in mine), 2)
            for key in ("p50_ms", "p99_ms", "max_ms", "commits_per_s", "events_per_commit")
        }
    return {
        "benchmark": "commit_steps",
        "load": list(os.getloadavg()),
        "rate": args.rate,
        "events_per_request": args.events,
        "busy_us": args.busy_us,
        "idle_ms": args.idle_ms,
        "rounds": rounds,
        "median": medians,
        "p99_one_step_vs_full": round(medians["one_step"]["p99_ms"] / medians["full"]["p99_ms"], 3),
        "load_after": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="append requests per second")
    parser.add_argument("--events", type=int, default=100, help="events per request")
    parser.add_argument(
        "--busy-us", type=float, default=2000.0, help="the loop's Python between two waits"
    )
    parser.add_argument("--idle-ms", type=float, default=1.0, help="each wait in the selector")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    emit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
