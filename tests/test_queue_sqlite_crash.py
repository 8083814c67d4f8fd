"""SIGKILL a process in the middle of appending (and settling): nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from crossdock.queue.sqlite import SqliteQueue

# The child appends from many tasks (group commits of varying size) while a worker fetches and
# settles for destination "w" (retries, dead letters, out-of-order settles), so the kill can hit
# any of the writer's transactions. After each append returns it prints the acknowledged ids.
CHILD = r"""
import asyncio, itertools, sys, time
from crossdock.queue import DeadLetter, Retry
from crossdock.queue.sqlite import SqliteQueue

def ev(i):
    return {"type": "track", "event": "E", "messageId": f"m{i}",
            "properties": {"i": i, "f": i / 7, "s": "x" * (i % 37), "u": "é\u2028"}}

async def main():
    q = SqliteQueue(sys.argv[1])
    await q.open(["d", "w"])
    counter = itertools.count()

    async def appender(w):
        for round in itertools.count():
            ids = [next(counter) for _ in range(1 + (w * 7 + round) % 25)]
            await q.append([ev(i) for i in ids] + [ev(ids[0])])  # plus a duplicate
            sys.stdout.write("".join(f"{i}\n" for i in ids))
            sys.stdout.flush()
            await asyncio.sleep(0.002)  # leave the worker room to settle

    async def worker():
        n = 0
        while True:
            got = await q.fetch("w", 50, time.time())
            if not got:
                await q.wait("w", 0.05)
                continue
            done, retries, dead = [], [], []
            for g in got:
                n += 1
                if n % 11 == 0:
                    retries.append(Retry(g.seq, g.event, time.time(), g.attempts + 1,
                                         time.time(), "t", "k"))
                elif n % 17 == 0:
                    dead.append(DeadLetter(g.seq, g.event, "bad", 1, 400, "no"))
                else:
                    done.append(g.seq)
            # Settle in two halves, the second first: out-of-order settles.
            half = len(done) // 2
            await q.settle("w", done[half:], retries, dead)
            await q.settle("w", done[:half])

    await asyncio.gather(worker(), *(appender(w) for w in range(30)))

asyncio.run(main())
"""


def ev(i: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "E",
        "messageId": f"m{i}",
        "properties": {"i": i, "f": i / 7, "s": "x" * (i % 37), "u": "é\u2028"},
    }


@pytest.mark.slow
def test_sigkill_mid_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Never hang the suite: kill the child after a generous deadline whatever happens.
    guard = threading.Timer(60, lambda: child.poll() is None and child.kill())
    guard.start()
    acked: set[int] = set()
    try:
        assert child.stdout is not None
        while len(acked) < 10_000:
            line = child.stdout.readline()
            if not line:
                break
            acked.add(int(line))
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    finally:
        guard.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    # Lines the child completed before dying count too; a torn last line does not.
    lines = rest.split("\n")
    acked.update(int(x) for x in lines[:-1] if x)
    assert len(acked) >= 10_000

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()

    async def check() -> None:
        q = SqliteQueue(db)
        await q.open(["d", "w"])
        try:
            stored: dict[str, dict[str, Any]] = {}
            while batch := await q.fetch("d", 5000, 0.0):
                for item in batch:
                    mid = item.event["messageId"]
                    assert mid not in stored, f"{mid} stored twice"
                    stored[mid] = item.event
            for i in acked:
                assert stored.get(f"m{i}") == ev(i), f"acknowledged m{i} lost or changed"
            # The worker's destination is consistent: its backlog adds up and can be drained.
            stats = await q.stats("w")
            assert stats.pending + stats.retrying <= len(stored)
            drained = 0
            while batch := await q.fetch("w", 5000, 2e9):
                drained += len(batch)
                await q.settle("w", [item.seq for item in batch])
            assert drained == stats.pending + stats.retrying
            assert len(await q.dlq_list("w", limit=10**6)) == stats.dead
            assert (await q.append([ev(10**9)])).stored == 1
        finally:
            await q.close()

    asyncio.run(check())


# Random SDK-like ids on a full window (the cap prunes every commit), two appenders sharing
# ids with a third that resends what others had acknowledged: after the kill every
# acknowledged id is stored once and is still refused as a duplicate.
CHILD_RANDOM = r"""
import asyncio, os, random, sys
from crossdock.queue.sqlite import SqliteQueue

def ev(mid):
    return {"type": "track", "event": "E", "messageId": mid, "properties": {"m": mid}}

async def main():
    q = SqliteQueue(sys.argv[1], dedupe_max=int(sys.argv[2]))
    await q.open(["d"])
    acked = []

    async def appender(w):
        rng = random.Random(w)
        while True:
            ids = [f"ajs-next-{os.urandom(16).hex()}" for _ in range(rng.randint(1, 60))]
            resend = [ev(m) for m in rng.sample(acked, min(len(acked), 3))]
            result = await q.append([ev(m) for m in ids] + resend + [ev(ids[0])])
            assert result.stored == len(ids), result
            acked.extend(ids)
            sys.stdout.write("".join(f"{m}\n" for m in ids))
            sys.stdout.flush()

    await asyncio.gather(*(appender(w) for w in range(20)))

asyncio.run(main())
"""

_FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO dedupe (message_id, seen_at) SELECT 'ajs-next-' || lower(hex(randomblob(16))), ?
FROM n
"""


@pytest.mark.slow
def test_sigkill_with_random_ids_and_a_full_window(tmp_path: Path) -> None:
    import time

    db = tmp_path / "crash-random.db"
    window = 50_000

    async def create() -> None:
        q = SqliteQueue(db)
        await q.open(["d"])
        await q.close()

    asyncio.run(create())
    conn = sqlite3.connect(db)
    conn.execute(_FILL, (window, time.time() - 60))
    conn.commit()
    conn.close()

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_RANDOM, str(db), str(window)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(60, lambda: child.poll() is None and child.kill())
    guard.start()
    acked: set[str] = set()
    try:
        assert child.stdout is not None
        while len(acked) < 20_000:
            line = child.stdout.readline()
            if not line:
                break
            acked.add(line.strip())
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        # Through the same buffered reader: communicate() would skip what readline() buffered.
        rest = child.stdout.read()
        child.wait(timeout=30)
    finally:
        guard.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    lines = rest.split("\n")
    acked.update(x for x in lines[:-1] if x)
    assert len(acked) >= 20_000

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (count,) = conn.execute("SELECT count(*) FROM dedupe").fetchone()
        assert count == window  # the window stayed full: the cap pruned as ids came
    finally:
        conn.close()

    async def check() -> None:
        q = SqliteQueue(db, dedupe_max=window)
        await q.open(["d"])
        try:
            stored: set[str] = set()
            while batch := await q.fetch("d", 5000, 0.0):
                for item in batch:
                    mid = item.event["messageId"]
                    assert mid not in stored, f"{mid} stored twice"
                    assert item.event == {
                        "type": "track",
                        "event": "E",
                        "messageId": mid,
                        "properties": {"m": mid},
                    }
                    stored.add(mid)
            assert acked <= stored, f"{len(acked - stored)} acknowledged ids lost"
            # Rebuilt from the log: every acknowledged id is refused again.
            result = await q.append([{"type": "track", "messageId": m} for m in sorted(acked)])
            assert (result.stored, result.duplicates) == (0, len(acked))
        finally:
            await q.close()

    asyncio.run(check())
