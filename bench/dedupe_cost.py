"""What the dedupe index costs the SQLite queue: appends/s and bytes written per event.

In one process (no HTTP), ``--callers`` tasks append 100-event groups to a ``SqliteQueue``
(synchronous=FULL, the defaults) for ``--seconds``, three ways in the same run:

- ``sequential_ids_empty``: ids ``{run}-{n}`` (what the old benchmarks sent), empty table;
- ``random_ids_empty``: ``ajs-next-`` + 32 random hex digits, empty table;
- ``random_ids_full``: the same on a table pre-filled with ``--ids`` (default 5 M);
- ``raw_dedupe_log_full``: the append transaction alone (2,000 events per commit, no queue
  object) on an arrival-order log with no index on the id (the exact lookup is in memory and
  not part of this figure), full. Before schema version 2 the queue's own ``dedupe`` table had
  ``message_id UNIQUE`` and ``raw_dedupe_full`` measured it beside the log (13.5-14.1 K
  events/s, 24.7-24.9 KB written per event, bench/README.md); the queue's table is now that
  log itself (a lookup by id there would scan it), so only the log is measured.

``write_bytes_per_event`` is what the process handed to ``write()`` (``/proc/self/io``
``wchar``: WAL frames and checkpoints) divided by the events stored: with random keys every
row dirties its own index page, and each dirty page is a 4 KiB WAL frame at commit.

    .venv/bin/python bench/dedupe_cost.py [--seconds 8] [--ids 5000000] [--callers 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdk_events
from _common import emit
from dedupe_fill import fill

from crossdock.queue._sqlite_schema import connect
from crossdock.queue.sqlite import SqliteQueue

_EVENT = sdk_events.event_template(1, "ajs")  # a ~370-byte product event


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


async def _appends(path: Path, ids: str, seconds: float, callers: int) -> dict:
    counter = itertools.count()
    queue = SqliteQueue(path)
    await queue.open([])
    stop = time.perf_counter() + seconds
    stored = 0

    def next_id() -> str:
        if ids == "sequential":
            return f"run-{next(counter)}"
        return f"ajs-next-{os.urandom(16).hex()}"

    async def caller() -> None:
        nonlocal stored
        while time.perf_counter() < stop:
            result = await queue.append([{**_EVENT, "messageId": next_id()} for _ in range(100)])
            stored += result.stored

    written = _wchar()
    started = time.perf_counter()
    commits = queue.commits
    try:
        await asyncio.gather(*(caller() for _ in range(callers)))
        seconds = time.perf_counter() - started
        written = _wchar() - written
    finally:
        await queue.close()
    return {
        "events_per_s": round(stored / seconds, 1),
        "events_per_commit": round(stored / max(1, queue.commits - commits), 1),
        "write_bytes_per_event": round(written / max(1, stored)),
    }


_LOG_TABLE = """
CREATE TABLE IF NOT EXISTS dedupe_log (
    id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, seen_at REAL NOT NULL
)
"""


def _raw_commits(path: Path, table: str, seconds: float, keep: int) -> dict:
    """The queue's append transaction without the queue, 2,000 events per commit, on ``table``:
    ``dedupe`` (today's ``message_id UNIQUE``: look up, insert, cap) or ``dedupe_log`` (the
    proposed arrival-order log with no index on the id: insert, cap; the exact lookup would be
    in memory and is not part of this figure)."""
    conn = connect(str(path), synchronous="full", writer=True)
    data = orjson.dumps(_EVENT)
    stored = 0
    written = _wchar()
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            now = time.time()
            ids = orjson.dumps(sorted(f"ajs-next-{os.urandom(16).hex()}" for _ in range(2000)))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events (enqueued_at, data) VALUES (?, ?)", [(now, data)] * 2000
            )
            if table == "dedupe":
                conn.execute(
                    "SELECT json_group_array(message_id) FROM dedupe"
                    " WHERE message_id IN (SELECT value FROM json_each(?))",
                    (ids.decode(),),
                ).fetchone()
            conn.execute(
                f"INSERT INTO {table} (message_id, seen_at) SELECT value, ? FROM json_each(?)",
                (now, ids.decode()),
            )
            (high,) = conn.execute(f"SELECT max(id) FROM {table}").fetchone()
            conn.execute(f"DELETE FROM {table} WHERE id <= ?", (high - keep,))
            conn.execute("COMMIT")
            stored += 2000
        seconds = time.perf_counter() - started
        written = _wchar() - written
    finally:
        conn.close()
    return {
        "events_per_s": round(stored / seconds, 1),
        "write_bytes_per_event": round(written / max(1, stored)),
    }


def _copy_to_log(path: Path) -> None:
    conn = connect(str(path), synchronous="off", writer=True)
    try:
        conn.execute(_LOG_TABLE)
        conn.execute(
            "INSERT INTO dedupe_log SELECT id, message_id, seen_at FROM dedupe ORDER BY id"
        )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--ids", type=int, default=5_000_000)
    parser.add_argument("--callers", type=int, default=20)
    args = parser.parse_args()
    out: dict = {"benchmark": "dedupe_cost", "load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name, ids in (("sequential_ids_empty", "sequential"), ("random_ids_empty", "random")):
            out[name] = asyncio.run(_appends(base / f"{name}.db", ids, args.seconds, args.callers))
        full = base / "full.db"
        out["prefill_seconds"] = round(fill(full, args.ids), 1)
        out["random_ids_full"] = asyncio.run(_appends(full, "random", args.seconds, args.callers))
        # The log alone, same transaction shape, full.
        _copy_to_log(full)
        for table in ("dedupe_log",):
            out[f"raw_{table}_full"] = _raw_commits(full, table, args.seconds, args.ids)
    out["full_vs_empty_random"] = round(
        out["random_ids_full"]["events_per_s"] / out["random_ids_empty"]["events_per_s"], 3
    )
    emit(out)


if __name__ == "__main__":
    main()
