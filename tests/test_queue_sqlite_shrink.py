"""The SQLite queue's file: it shrinks after a drain (issue 15, defect 9): new files use
``auto_vacuum = INCREMENTAL`` and collection gives free pages back; and new files use pages
that fit realistic event rows (issue 12), while older files keep theirs."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from crossdock.queue._sqlite_schema import PAGE_SIZE, ensure_schema
from crossdock.queue.sqlite import SqliteQueue, _shrink


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


async def test_a_new_file_has_the_page_size_that_fits_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = SqliteQueue(path)
    await queue.open([])
    try:
        await queue.append([{"type": "track", "messageId": "m1", "event": "x"}])
    finally:
        await queue.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 8192


async def test_an_older_file_keeps_its_page_size_and_still_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with closing(sqlite3.connect(path)) as conn:  # what an older version made: 4 KiB pages
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        ensure_schema(conn, str(path))
    queue = SqliteQueue(path)
    await queue.open(["d"])
    try:
        pad = "x" * 2000
        await queue.append(
            [{"type": "track", "messageId": f"m{i}", "pad": pad} for i in range(3000)]
        )
        await queue._write(lambda: queue._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        full = path.stat().st_size
        got = []
        while batch := await queue.fetch("d", 1000, time.time()):
            got += batch
            await queue.settle("d", [q.seq for q in batch])
        assert len(got) == 3000
        for _ in range(10):
            await queue.collect()
    finally:
        await queue.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert path.stat().st_size < full / 5


@pytest.mark.parametrize("page_size", [4096, 8192, 16384])
def test_one_vacuum_step_gives_back_the_same_bytes_whatever_the_page_size(
    tmp_path: Path, page_size: int
) -> None:
    path = tmp_path / "q.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("CREATE TABLE t (data BLOB)")
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 3000,) for _ in range(4000)])
        conn.execute("DELETE FROM t")
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
        assert free > 8 * 1024 * 1024
        # Below the minimum nothing is given back.
        assert _shrink(conn, free + 1, 1024 * 1024) == 0
        given = _shrink(conn, 1024 * 1024, 1024 * 1024)
        assert given == 1024 * 1024
        left = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
        assert left == free - given
    finally:
        conn.close()
