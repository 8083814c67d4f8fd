"""What a SQLite step per row costs a worker thread beside a busy one (the GIL hand-off).

CPython's ``sqlite3`` releases the GIL around every ``sqlite3_step``: each row a cursor
returns and each parameter set of ``executemany``. A thread that let the GIL go waits to get it
back until the holder lets go, at its next blocking call or after the switch interval (5 ms).
The SQLite queue's reader and writer threads run beside the event loop, so this measures, in
one process and one run, a delivery fetch of ``--rows`` events and the matching settle write:

- ``row_by_row``: the statements as they were (``fetchall`` of the rows; ``executemany`` of
  the out-of-order settled seqs);
- ``one_step``: the queue's statements now (``crossdock.queue._sqlite_steps``: the rows
  aggregated into JSON arrays inside SQLite, 512 per query; the seqs passed as one JSON
  array);

each ``alone`` and ``beside_busy_thread`` (a thread running Python all the time, as a loaded
event loop does). Milliseconds per operation, medians of the repetitions of ``--seconds``.

    PYTHONPATH=core .venv/bin/python bench/gil_steps.py [--rows 1000] [--seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from crossdock.queue import sqlite as queue_sqlite
from crossdock.queue._sqlite_steps import as_json_array, read_columns

EVENT = orjson.dumps(
    {
        "type": "track",
        "event": "Product Viewed",
        "userId": "user-1",
        "messageId": "0b5f9e6c-2f1e-4f4e-9a51-3f1c2d1e0a77",
        "properties": {"product_id": "sku-1", "name": "Running Shoes", "price": 89.0},
        "context": {"library": {"name": "analytics.js", "version": "next-1.70.0"}},
    }
)


def _make(path: Path, rows: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, enqueued_at REAL NOT NULL,"
        " data BLOB NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE settled (destination TEXT NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (destination, seq)) WITHOUT ROWID"
    )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (enqueued_at, data) VALUES (?, ?)", [(time.time(), EVENT)] * rows * 20
    )
    conn.execute("COMMIT")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    import sqlite3

    rows = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.db"
        _make(path, rows)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        counter = iter(range(10**9))

        def fetch_rows() -> None:
            start = rows * (next(counter) % 19)
            found = conn.execute(
                "SELECT seq, enqueued_at, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (start, rows),
            ).fetchall()
            [(seq, at, orjson.loads(data)) for seq, at, data in found]

        def fetch_one_step() -> None:
            # As the queue reads: aggregated rows, in chunks of _FETCH_CHUNK.
            start = rows * (next(counter) % 19)
            left = rows
            while left > 0:
                asked = min(left, queue_sqlite._FETCH_CHUNK)
                seqs, _, _ = read_columns(conn, queue_sqlite._FETCH_NEW, (start, asked), 3)
                start, left = seqs[-1], left - asked

        def settle_rows() -> None:
            base = rows * next(counter)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO settled (destination, seq) VALUES (?, ?)",
                [("d", base + i) for i in range(rows)],
            )
            conn.execute("DELETE FROM settled")
            conn.execute("COMMIT")

        def settle_one_step() -> None:
            base = rows * next(counter)
            conn.execute("BEGIN")
            conn.execute(
                "INSERT OR IGNORE INTO settled (destination, seq)"
                " SELECT ?1, value FROM json_each(?2)",
                ("d", as_json_array([base + i for i in range(rows)])),
            )
            conn.execute("DELETE FROM settled")
            conn.execute("COMMIT")

        cases: dict[str, Callable[[], None]] = {
            "fetch_row_by_row": fetch_rows,
            "fetch_one_step": fetch_one_step,
            "settle_row_by_row": settle_rows,
            "settle_one_step": settle_one_step,
        }
        results: dict[str, dict[str, float]] = {}
        for busy in (False, True):
            for name, fn in cases.items():
                results.setdefault(name, {})["beside_busy_thread_ms" if busy else "alone_ms"] = (
                    _measure(fn, args.seconds, busy)
                )
        conn.close()
    out = {
        "rows": rows,
        "ms_per_operation": results,
        "command": "PYTHONPATH=core .venv/bin/python bench/gil_steps.py",
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


def _measure(fn: Callable[[], None], seconds: float, busy: bool) -> float:
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    spinner = threading.Thread(target=spin) if busy else None
    if spinner is not None:
        spinner.start()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline or len(times) < 3:
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    finally:
        stop.set()
        if spinner is not None:
            spinner.join()
    return round(statistics.median(times) * 1000, 2)


if __name__ == "__main__":
    main()
