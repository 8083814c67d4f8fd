"""The SQLite queue's file shrinks after a drain (issue 15, defect 9): new files use
``auto_vacuum = INCREMENTAL`` and collection gives free pages back."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from crossdock.queue.sqlite import SqliteQueue


async def test_the_file_shrinks_after_a_drain(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = SqliteQueue(path)
    await queue.open(["d"])
    try:
        pad = "x" * 2000
        for start in range(0, 6000, 1000):
            await queue.append(
                [
                    {"type": "track", "messageId": f"m{i}", "pad": pad}
                    for i in range(start, start + 1000)
                ]
            )
        await queue._write(lambda: queue._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        full = path.stat().st_size
        assert full > 10_000_000
        while got := await queue.fetch("d", 1000, time.time()):
            await queue.settle("d", [q.seq for q in got])
        # Collection runs by itself after settles; several rounds give back all free pages.
        for _ in range(10):
            await queue.collect()
    finally:
        await queue.close()
    drained = path.stat().st_size
    assert drained < full / 5, (full, drained)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
