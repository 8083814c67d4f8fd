"""Pre-fill a SQLite queue file's dedupe table: the steady state of a full window.

A daemon that has run for a day holds ``dedupe_max`` (5 M by default) messageIds, inserted in
arrival order (``id`` grows) at random places of the ``message_id`` index. This writes the
same directly in the queue's schema (``crossdock.queue._sqlite_schema``), in SQLite's C code
(``randomblob``), in random key order so the index pages are as full as random inserts leave
them. ``seen_at`` spreads evenly over the window, oldest first, so the daemon's age pruning
removes about as many rows per minute as a real day would.

    .venv/bin/python bench/dedupe_fill.py PATH [--ids 5000000] [--window 86400]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from crossdock.queue._sqlite_schema import connect, ensure_schema

_CHUNK = 250_000

# 60 % analytics.js ids, 40 % UUID4s (the share a sender gives none of is made a UUID4 too).
_INSERT = """
WITH RECURSIVE n(i, h) AS (
    SELECT ?1, hex(randomblob(16)) UNION ALL SELECT i + 1, hex(randomblob(16)) FROM n WHERE i < ?2
)
INSERT INTO dedupe (message_id, seen_at)
SELECT CASE WHEN i % 5 < 3
    THEN 'ajs-next-' || lower(h)
    ELSE lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-'
        || substr('89ab', 1 + abs(random() % 4), 1) || substr(h, 18, 3) || '-' || substr(h, 21, 12))
    END,
    ?3 + ?4 * i
FROM n
"""


def fill(path: Path, ids: int, *, window: float = 86400.0, now: float | None = None) -> float:
    """Add ``ids`` random messageIds seen over the last ``window`` seconds; returns seconds."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    conn = connect(str(path), synchronous="off", writer=True)
    try:
        ensure_schema(conn, str(path))
        conn.execute("PRAGMA cache_size = -1048576")  # 1 GiB: the index fits while we build it
        oldest = now - window * 0.98  # leaves a margin before age pruning starts
        step = window * 0.97 / max(ids, 1)
        for low in range(0, ids, _CHUNK):
            high = min(ids, low + _CHUNK) - 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT, (low, high, oldest, step))
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--ids", type=int, default=5_000_000)
    parser.add_argument("--window", type=float, default=86400.0)
    args = parser.parse_args()
    seconds = fill(args.path, args.ids, window=args.window)
    sys.stdout.write(f"{args.ids} ids in {seconds:.1f} s\n")


if __name__ == "__main__":
    main()
