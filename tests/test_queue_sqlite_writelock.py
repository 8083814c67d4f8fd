"""The SQLite queue's cross-process write turn (``<queue>.writelock``, for ``--workers N``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from crossdock.queue import sqlite as sqlite_module
from crossdock.queue._sqlite_writelock import WriteLock
from crossdock.queue.sqlite import SqliteQueue


def test_one_holder_at_a_time_and_the_turn_passes_when_it_lets_go(tmp_path: Path) -> None:
    first, second = WriteLock(tmp_path / "q.db", 30.0), WriteLock(tmp_path / "q.db", 30.0)
    order: list[str] = []
    taken = threading.Event()

    def take_second() -> None:
        taken.set()
        with second:
            order.append("second")

    with first:
        thread = threading.Thread(target=take_second)
        thread.start()
        taken.wait()
        thread.join(0.2)  # it cannot have the turn while the first holds it
        order.append("first done")
    thread.join(10)
    assert order == ["first done", "second"]
    assert (tmp_path / "q.db.writelock").exists()
    first.close()
    second.close()


def test_a_holder_that_never_lets_go_ends_in_database_is_locked(tmp_path: Path) -> None:
    holder, waiter = WriteLock(tmp_path / "q.db", 30.0), WriteLock(tmp_path / "q.db", 0.05)
    with holder, pytest.raises(sqlite3.OperationalError, match="database is locked"), waiter:
        pass
    with waiter:  # free again
        pass
    holder.close()
    waiter.close()


async def test_two_queues_on_one_file_take_turns_and_keep_every_event(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    one, two = SqliteQueue(path), SqliteQueue(path)
    await one.open(["d"])
    await two.open(["d"])
    try:
        batches = [
            [{"messageId": f"m-{q}-{i}-{j}"} for j in range(50)] for q in (1, 2) for i in range(20)
        ]
        results = await asyncio.gather(
            *(queue.append(batch) for queue, batch in zip([one, two] * 20, batches, strict=True))
        )
        assert sum(r.stored for r in results) == 2000
        again = await one.append(batches[0] + batches[-1])  # each sees the other's ids
        assert again.duplicates == 100
    finally:
        await one.close()
        await two.close()


async def test_indexing_at_open_does_not_hold_the_turn_from_the_other_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process (re)starting under ``--workers`` indexes the whole dedupe window (seconds at
    5 M ids); the others go on storing meanwhile, and what they stored is known to it after."""
    path = tmp_path / "q.db"
    running = SqliteQueue(path)
    await running.open(["d"])
    starting = SqliteQueue(path)
    try:
        await running.append([{"messageId": f"m-{i}"} for i in range(500)])
        indexing, release = threading.Event(), threading.Event()

        class IndexBlockedWhileBuilding(sqlite_module.DedupeIndex):
            def add_rows(self, rowids: list[int], mids: list[str]) -> None:
                indexing.set()
                assert release.wait(30)
                super().add_rows(rowids, mids)

        monkeypatch.setattr(sqlite_module, "DedupeIndex", IndexBlockedWhileBuilding)
        opening = asyncio.create_task(starting.open(["d"]))
        assert await asyncio.to_thread(indexing.wait, 10)
        # Before: the rebuild held the write turn and this append waited for all of it.
        stored = await asyncio.wait_for(running.append([{"messageId": "while-indexing"}]), 10)
        assert stored.stored == 1
        release.set()
        await opening
        again = await starting.append([{"messageId": "while-indexing"}, {"messageId": "m-7"}])
        assert (again.stored, again.duplicates) == (0, 2)
    finally:
        release.set()
        await starting.close()
        await running.close()
