"""What the SQLite page size costs a queue file of realistic events, by group-commit size.

An SDK event is stored as a row of about 700 bytes (``sdk_events.py``: the ``shared/bench``
orders and product events, random ids, a tenth without). For each page size and each number
of events per commit, the daemon's own queue (``SqliteQueue``, ``synchronous = FULL``) stores
``--events`` of them on a fresh file created with that page size (as an older version's file
keeps its own), in groups of that size, one group per commit. Reported per event:

- ``stored_bytes``: the file's size after a final checkpoint;
- ``written_bytes``: what the process handed to ``write()`` (``/proc/self/io`` ``wchar``):
  WAL frames and checkpoints, the bytes each commit's fsync waits for;
- ``writer_cpu_us``: the SQLite writer thread's CPU (noisy; compare within one run).

``4096`` (SQLite's default, the queue's before the ninth session) is the baseline in the
same run: ``vs_4096`` divides each figure by its own at 4 KiB pages. The byte figures do not
depend on what else the machine runs.

    PYTHONPATH=core .venv/bin/python bench/page_size.py [--events 30000]
        [--page-sizes 4096,8192,16384] [--groups 1,30,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit
from sdk_events import batch_templates, fill

from crossdock.queue import EncodedEvent
from crossdock.queue._sqlite_schema import ensure_schema
from crossdock.queue.sqlite import SqliteQueue

WRITER_THREAD = "crossdock-sqlite-writer"


def realistic_rows(count: int, seed: int = 5) -> list[EncodedEvent]:
    """``count`` rows as the ingest handler hands them to the queue (the core gives an id
    where the SDK sent none)."""
    rng = random.Random(seed)
    templates = batch_templates(64, 100)
    rows: list[EncodedEvent] = []
    i = 0
    while len(rows) < count:
        for event in orjson.loads(fill(*templates[i % len(templates)], rng))["batch"]:
            event.setdefault("messageId", str(uuid.uuid4()))
            event["receivedAt"] = "2026-12-01T10:00:00.000Z"
            rows.append((event["messageId"], orjson.dumps(event)))
        i += 1
    return rows[:count]


def create_file(path: Path, page_size: int) -> None:
    """A queue file with ``page_size`` pages, as :mod:`crossdock.queue._sqlite_schema` makes
    one (incremental auto-vacuum, WAL); the queue keeps an existing file's page size."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        ensure_schema(conn, str(path))
    finally:
        conn.close()


def _written() -> int:
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def _writer_clock() -> int | None:
    for thread in threading.enumerate():
        if thread.name.startswith(WRITER_THREAD) and thread.ident is not None:
            return time.pthread_getcpuclockid(thread.ident)
    return None


def _file_facts(path: Path) -> tuple[int, int]:
    """The file's page size and its size in bytes."""
    with closing(sqlite3.connect(path)) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return page, path.stat().st_size


async def measure(path: Path, page_size: int, group: int, rows: list[EncodedEvent]) -> dict:
    """Store ``rows`` in groups of ``group`` on a new file of ``page_size`` pages."""
    create_file(path, page_size)
    queue = SqliteQueue(path, synchronous="full")
    await queue.open([])
    try:
        await queue.append_encoded(rows[:1])  # the first commit after opening takes the full path
        body = rows[1:]
        clock = _writer_clock()
        cpu0 = time.clock_gettime(clock) if clock is not None else 0.0
        written0 = _written()
        for start in range(0, len(body), group):
            await queue.append_encoded(body[start : start + group])
        written = _written() - written0
        cpu = time.clock_gettime(clock) - cpu0 if clock is not None else 0.0
    finally:
        await queue.close()  # checkpoints the WAL into the file
    actual, size = _file_facts(path)
    events = len(body)
    return {
        "page_size": actual,
        "events_per_commit": group,
        "stored_bytes": round(size / len(rows)),
        "written_bytes": round(written / events),
        "writer_cpu_us": round(cpu / events * 1e6, 2),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    rows = realistic_rows(args.events)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="crossdock-page-size-") as tmp:
        for group in args.groups:
            # A commit of one event is slow (an fsync each): store fewer of them.
            some = rows if group >= 30 else rows[: max(2, min(len(rows), 100 * group))]
            for page_size in args.page_sizes:
                path = Path(tmp) / f"{page_size}-{group}.db"
                results.append(await measure(path, page_size, group, some))
    base = {r["events_per_commit"]: r for r in results if r["page_size"] == 4096}
    for r in results:
        ref = base.get(r["events_per_commit"])
        if ref is not None:
            r["vs_4096"] = {
                key: round(r[key] / ref[key], 3) if ref[key] else None
                for key in ("stored_bytes", "written_bytes", "writer_cpu_us")
            }
    sizes = [len(row[1]) for row in rows]
    return {
        "benchmark": "page_size",
        "load": list(os.getloadavg()),
        "events": len(rows),
        "mean_row_bytes": round(sum(sizes) / len(sizes)),
        "results": results,
        "load_after": list(os.getloadavg()),
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--page-sizes", type=_ints, default=[4096, 8192, 16384])
    parser.add_argument("--groups", type=_ints, default=[1, 30, 100, 1000])
    emit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
